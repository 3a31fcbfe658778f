/**
 * Tenant webhook tools answering badly, end to end: the simulated caller asks for the tool, the
 * simulated model calls it, the relay POSTs to a local tenant server that is slow, huge, not JSON,
 * failing, redirecting or resetting, and to targets the SSRF guard must refuse. The model gets a tool
 * error it can apologise with, and the call goes on.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';

const NUMBER = '+15005550177';
const ACCOUNT_SID = 'AC' + '7'.repeat(32);
const AUTH_TOKEN = 'hooks-co-auth-token-not-secret';
const caller = { to: NUMBER, accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN };

/** The tenant's own endpoint, misbehaving per path; counts what reaches it. */
interface TenantServer {
  url: string;
  hits: Map<string, number>;
  close(): Promise<void>;
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

let trap: TenantServer;
let tenantApi: TenantServer;

async function startTenantServer(redirectTo: string): Promise<TenantServer> {
  const hits = new Map<string, number>();
  const held: ServerResponse[] = [];
  const { server, port } = await listen((req, res) => {
    const path = req.url ?? '';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    req.resume();
    switch (path) {
      case '/slow':
        held.push(res); // never answered: the tool's 300 ms deadline must fire
        return;
      case '/huge':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true, blob: 'x'.repeat(256 * 1024) }));
        return;
      case '/badjson':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok": tru');
        return;
      case '/error':
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end('{"error":"database on fire","secret":"tenant-internal-detail"}');
        return;
      case '/redirect':
        res.writeHead(302, { location: redirectTo });
        res.end();
        return;
      case '/reset':
        req.socket.destroy();
        return;
      default:
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true,"order":"shipped"}');
    }
  });
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    close: async () => {
      for (const r of held) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const hook = (name: string, url: string, extra: Record<string, unknown> = {}) => ({
  name,
  description: `The ${name} webhook`,
  url,
  secret: { value: 'whsec_' + Buffer.from('tenant-webhook-signing-key').toString('base64') },
  timeoutMs: 300,
  maxResponseBytes: 1024,
  ...extra,
});

let dir: string;
let relay: Relay | undefined;

function tenantsFile(name: string, webhookTools: unknown[]): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify([
      {
        id: 'hooks-co',
        displayName: 'Hooks Co',
        phoneNumbers: [NUMBER],
        twilio: { accountSid: ACCOUNT_SID, authToken: { value: AUTH_TOKEN } },
        tools: ['end_call'],
        webhookTools,
      },
    ]),
  );
  return file;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sb-webhook-tools-'));
  trap = await startTenantServer('unused');
  // The redirect points at a private address (the trap): it must never be followed.
  tenantApi = await startTenantServer(`${trap.url}/latest/meta-data/iam/security-credentials/`);
});
afterAll(async () => {
  await tenantApi.close();
  await trap.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

interface Heard {
  said: string;
  heard: string;
}

/** One call asking for each tool in turn, then a plain question; returns the turns and the record's tool outcomes. */
async function callEach(tools: readonly string[]): Promise<{ turns: Heard[]; outcomes: string[] }> {
  const r = relay!;
  const callSid = randomSid('CA');
  const report = await placeCall({
    baseUrl: r.url,
    ...caller,
    callSid,
    script: {
      turns: [...tools.map((t) => ({ say: `call tool ${t} {}` })), { say: 'Are you still there' }],
      maxCallMs: 60_000,
      hangupAfterMs: 300,
      replyTimeoutMs: 5000,
    },
  });
  expect(report.stage).toBe('connected');
  expect(report.errors).toEqual([]);
  expect(report.turns).toHaveLength(tools.length + 1);
  expect(report.turns.at(-1)!.heard).toBe('You said: Are you still there. Anything else?');
  expect(report.endedBy).toBe('caller');
  await eventually(async () => (await r.store.getCall(callSid))?.outcome === 'caller_hung_up', 5000, 'record finished');
  const rec = (await r.store.getCall(callSid))!;
  return { turns: report.turns, outcomes: rec.tools.map((t) => t.outcome) };
}

const toolError = (heard: string, tool: string): void => {
  expect(heard, heard).toMatch(new RegExp(`^Tool ${tool} answered: \\{"ok":false,"error":"The ${tool} tool `));
};

describe('tenant webhook tools answering badly (WEBHOOK_TOOLS_ALLOW_PRIVATE=true for the loopback tenant server)', () => {
  it('slow, huge, failing, redirecting and resetting endpoints: a tool error each, the call goes on', async () => {
    const names = ['slow_tool', 'huge_tool', 'error_tool', 'redirect_tool', 'reset_tool', 'badjson_tool', 'ok_tool'];
    const paths = ['/slow', '/huge', '/error', '/redirect', '/reset', '/badjson', '/ok'];
    relay = await startTestRelay({
      WEBHOOK_TOOLS_ALLOW_PRIVATE: 'true',
      TENANTS_FILE: tenantsFile('loopback', names.map((n, i) => hook(n, tenantApi.url + paths[i]!))),
    });
    const trapBefore = [...trap.hits.values()].reduce((a, b) => a + b, 0);
    const t0 = Date.now();
    const { turns, outcomes } = await callEach(names);
    const [slow, huge, error, redirect, reset, badjson, ok] = turns.map((t) => t.heard);
    toolError(slow!, 'slow_tool');
    expect(slow).toMatch(/did not answer in time/);
    toolError(huge!, 'huge_tool');
    toolError(error!, 'error_tool');
    expect(error).toMatch(/HTTP 500/);
    expect(error).not.toMatch(/database on fire|tenant-internal-detail/);
    toolError(redirect!, 'redirect_tool');
    expect(redirect).toMatch(/HTTP 302/);
    toolError(reset!, 'reset_tool');
    // Not JSON but 2xx: the tenant answered; the text reaches the model wrapped as a JSON string.
    expect(badjson).toBe('Tool badjson_tool answered: {"ok":true,"result":"{\\"ok\\": tru"}');
    expect(ok).toBe('Tool ok_tool answered: {"ok":true,"order":"shipped"}');
    expect(outcomes).toEqual(['timeout', 'error', 'error', 'error', 'error', 'ok', 'ok']);
    for (const p of paths) expect(tenantApi.hits.get(p), p).toBeGreaterThanOrEqual(1);
    // The redirect to the private address was never followed.
    expect([...trap.hits.values()].reduce((a, b) => a + b, 0)).toBe(trapBefore);
    // The slow tool cost its 300 ms deadline, not the call.
    expect(Date.now() - t0).toBeLessThan(30_000);
    const m = await scrape(relay);
    // Tenant tools share one bounded label value.
    expect(metricValue(m, 'switchboard_tool_call_seconds_count', { tool: 'webhook', outcome: 'timeout' })).toBe(1);
    expect(metricValue(m, 'switchboard_tool_call_seconds_count', { tool: 'webhook', outcome: 'error' })).toBe(4);
    expect(metricValue(m, 'switchboard_active_calls')).toBe(0);
  });
});

describe('SSRF guard (WEBHOOK_TOOLS_ALLOW_PRIVATE unset)', () => {
  it('a TENANTS_FILE aiming tools at loopback, metadata, private, IPv4-mapped or localhost targets, or with userinfo, stops the relay at start', async () => {
    const port = new URL(tenantApi.url).port;
    const targets: [string, string][] = [
      ['loopback_tool', `https://127.0.0.1:${port}/ok`],
      ['metadata_tool', 'https://169.254.169.254/latest/meta-data/'],
      ['private_tool', 'https://10.0.0.1/ok'],
      ['mapped_tool', `https://[::ffff:127.0.0.1]:${port}/ok`],
      ['ipv6_tool', `https://[::1]:${port}/ok`],
      ['localhost_tool', `https://localhost:${port}/ok`],
      ['zero_tool', `https://0.0.0.0:${port}/ok`],
      ['creds_tool', 'https://user:pw@tools.example.com/ok'],
    ];
    const err = await startTestRelay({ TENANTS_FILE: tenantsFile('private-at-save', targets.map(([n, u]) => hook(n, u))) }).then(
      (r) => {
        relay = r;
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'config_invalid' });
    targets.forEach((_, i) => expect((err as Error).message).toMatch(new RegExp(`tenant hooks-co: webhookTools\\.${i}\\.url: `)));
    expect((err as Error).message).not.toContain('pw@');
  });

  it('what passes the save-time check is still refused at call time without a request (plain http)', async () => {
    const port = new URL(tenantApi.url).port;
    const targets: [string, string][] = [['plainhttp_tool', `http://tools.example.invalid:${port}/ok`]];
    relay = await startTestRelay({ TENANTS_FILE: tenantsFile('public-only', targets.map(([n, u]) => hook(n, u))) });
    const before = tenantApi.hits.get('/ok') ?? 0;
    const { turns, outcomes } = await callEach(targets.map(([n]) => n));
    targets.forEach(([name], i) => {
      toolError(turns[i]!.heard, name);
      expect(turns[i]!.heard).toMatch(/unavailable right now/);
    });
    expect(outcomes).toEqual(targets.map(() => 'error'));
    expect(tenantApi.hits.get('/ok') ?? 0).toBe(before);
  });
});
