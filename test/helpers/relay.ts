/**
 * Starts a real relay (native uWS, real sockets) on a free loopback port for a test, with
 * PUBLIC_URL pointing at it so signatures and TwiML URLs are what Twilio would use.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { parseTwiml } from '../../src/sim/portable/twilio-http.js';
import { loadConfig } from '../../src/config.js';
import { metricSum } from '../../src/sim/prom-text.js';
import { openTenants, type TenantRuntime } from '../../src/server/open-tenants.js';
import { startRelay, type Relay, type RelayOptions } from '../../src/server/index.js';
import { createRedis } from '../../src/store/redis-connection.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER, DEMO_TENANT } from '../../src/tenants/index.js';
import { computeTwilioSignature } from '../../src/twilio/index.js';
import { onFreshPort } from './redis-server.js';

export const TEST_SECRET = 'test-stream-token-secret-0123456789abcdef';

/**
 * The tenant test relays serve: the demo tenant's business on the demo number, but on its own
 * account with its auth token by reference, as a real deployment's TENANTS_FILE would have it (the
 * built-in demo tenant exists only with the simulated model and never beside a real provider).
 */
export const demo = {
  to: DEMO_NUMBER,
  accountSid: 'AC' + 'd'.repeat(32),
  authToken: 'test-tenant-auth-token-0123456789',
};
/** The built-in demo tenant's published credentials (a relay started without TENANTS_FILE, simulated model). */
export const builtinDemo = { to: DEMO_NUMBER, accountSid: DEMO_ACCOUNT_SID, authToken: DEMO_AUTH_TOKEN };
const TEST_TENANT_TOKEN_VAR = 'SB_TEST_TENANT_AUTH_TOKEN';
let writtenTenantFile: string | undefined;

/** The test tenant's configuration (its token resolves from the variable testTenantEnv() sets). */
export function testTenant(): typeof DEMO_TENANT {
  return { ...DEMO_TENANT, twilio: { accountSid: demo.accountSid, authToken: { env: TEST_TENANT_TOKEN_VAR } } };
}

/** TENANTS_FILE (written once per test process) and the variable its token resolves from. */
export function testTenantEnv(): Record<string, string> {
  if (!writtenTenantFile) {
    writtenTenantFile = join(mkdtempSync(join(tmpdir(), 'sb-test-tenant-')), 'tenants.json');
    writeFileSync(writtenTenantFile, JSON.stringify({ tenants: [testTenant()] }));
  }
  return { TENANTS_FILE: writtenTenantFile, [TEST_TENANT_TOKEN_VAR]: demo.authToken };
}

export async function startTestRelay(env: Record<string, string> = {}, opts: RelayOptions = {}): Promise<Relay> {
  // PUBLIC_URL must name the port before the relay listens, so the port is picked first; another
  // test worker can take it in between. Lose that race and try a fresh port (bounded).
  return onFreshPort((port) => {
    const config = loadConfig({
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      SIM_MODEL_MODE: 'loadtest',
      STREAM_TOKEN_SECRET: TEST_SECRET,
      LOG_LEVEL: 'silent',
      // The test tenant, unless the test brings its own tenants (TENANTS_FILE: '' = none at all).
      ...testTenantEnv(),
      ...(opts.tenants || 'TENANTS_FILE' in env ? { TENANTS_FILE: '' } : {}),
      ...env,
    });
    return startRelay(config, { log: silentLogger(), ...opts });
  });
}

/** POST a signed Twilio form webhook to the relay, as Twilio would. */
export async function signedPost(
  relay: Relay,
  path: string,
  fields: Record<string, string>,
  authToken = demo.authToken,
): Promise<{ status: number; body: string }> {
  const url = relay.url + path;
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': computeTwilioSignature(authToken, url, fields),
    },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: res.status, body: await res.text() };
}

/** The sum of the matching samples of a counter, gauge or histogram series in /metrics text (0: none). */
export const metricValue = metricSum;

export async function scrape(relay: Relay): Promise<string> {
  return (await fetch(`${relay.url}/metrics`)).text();
}

/** Poll `check` until it returns true (bounded). For state with no event to await. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Twilio's first two media-socket messages, `connected` then `start`, exactly as Twilio sends them. */
export function streamOpening(o: {
  streamSid: string;
  callSid: string;
  accountSid: string;
  customParameters: Record<string, string>;
}): [string, string] {
  return [
    JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }),
    JSON.stringify({
      event: 'start',
      sequenceNumber: '1',
      streamSid: o.streamSid,
      start: {
        accountSid: o.accountSid,
        streamSid: o.streamSid,
        callSid: o.callSid,
        tracks: ['inbound'],
        customParameters: o.customParameters,
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    }),
  ];
}

/**
 * A raw Twilio-like media socket for abuse and slow-peer tests: fetches TwiML through the signed
 * webhook and opens the stream with its parameters; the test then sends whatever it likes.
 */
export async function rawStream(
  relay: Relay,
  callSid: string,
): Promise<{ ws: WebSocket; params: Record<string, string>; start: (params?: Record<string, string>) => void; closed: Promise<{ code: number; reason: string }> }> {
  const res = await signedPost(relay, '/twilio/voice', { CallSid: callSid, AccountSid: demo.accountSid, To: demo.to, From: '+15550001111' });
  const twiml = parseTwiml(res.body);
  if (twiml.kind !== 'stream') throw new Error(`no stream in TwiML: ${res.body}`);
  const ws = new WebSocket(twiml.streamUrl);
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const streamSid = 'MZ' + callSid.slice(2);
  return {
    ws,
    params: twiml.parameters,
    closed,
    start(params = twiml.parameters) {
      for (const m of streamOpening({ streamSid, callSid, accountSid: demo.accountSid, customParameters: params })) ws.send(m);
    },
  };
}

export function mediaFrame(callSid: string, seq: number, bytes = 160, fill = 0xff): string {
  const streamSid = 'MZ' + callSid.slice(2);
  const payload = Buffer.alloc(bytes, fill).toString('base64');
  return `{"event":"media","sequenceNumber":"${seq}","streamSid":"${streamSid}","media":{"track":"inbound","chunk":"${seq}","timestamp":"${seq * 20}","payload":"${payload}"}}`;
}

// --- a relay whose tenants the test holds: two tenants on one account, leases, the admin API --------

/** A relay serving tenants from its own TENANTS_FILE, with the tenant runtime in the test's hands. */
export interface TenantRelay {
  readonly relay: Relay;
  /** Registry, leases and their stores, as the relay uses them (assert on them, change them). */
  readonly runtime: TenantRuntime;
  close(): Promise<void>;
}

export interface TenantRelayOptions {
  /** Relay environment on top of the test defaults (ADMIN_TOKEN, …). */
  env?: Record<string, string>;
  /** Where tenant secret references resolve. */
  tenantEnv?: NodeJS.ProcessEnv;
  tenantsFile?: string;
  /** Calls, tenants, leases and one-time tokens in this Redis (two relays = two pods). */
  redisUrl?: string;
  /** Key prefix of the tenant and lease keys (the relay's own keys are its defaults). */
  keyPrefix?: string;
  log?: Logger;
}

/**
 * startTestRelay with the tenant side opened here (as the composition root does from config) and
 * handed to the relay, which registers the webhooks, leases and admin routes itself.
 */
export async function startTenantRelay(o: TenantRelayOptions = {}): Promise<TenantRelay> {
  const log = o.log ?? silentLogger();
  const prefix = o.keyPrefix ?? 'sb:';
  const redis = o.redisUrl ? createRedis(o.redisUrl, { keyPrefix: prefix }) : undefined;
  const runtime = await openTenants({
    tenantsFile: o.tenantsFile,
    provider: 'sim',
    env: o.tenantEnv ?? {},
    log,
    ...(redis ? { redis, channel: `${prefix}tenants-changed` } : {}),
  });
  try {
    const relay = await startTestRelay(
      { ...(o.redisUrl ? { REDIS_URL: o.redisUrl } : {}), ...o.env },
      { log, tenants: runtime.registry, leases: runtime.leases, adminTenants: runtime.registry, listeners: [runtime.leases] },
    );
    return {
      relay,
      runtime,
      async close() {
        await relay.close();
        await runtime.close();
        redis?.disconnect();
      },
    };
  } catch (err) {
    await runtime.close();
    redis?.disconnect();
    throw err;
  }
}

export const ACME = { to: '+14155550100', accountSid: 'AC' + 'a'.repeat(32), authToken: 'acme-auth-token-value-123' };
export const BETA = { to: '+14155550200', accountSid: 'AC' + 'a'.repeat(32), authToken: 'beta-auth-token-value-456' };

/** A TENANTS_FILE with acme and beta (same account, auth tokens by env reference). */
export function writeTenantsFile(o: { acmeMaxConcurrentCalls?: number } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'sb-sec-'));
  const file = join(dir, 'tenants.yaml');
  writeFileSync(
    file,
    `tenants:
  - id: acme
    displayName: Acme
    phoneNumbers: ['${ACME.to}']
    maxConcurrentCalls: ${o.acmeMaxConcurrentCalls ?? 50}
    twilio: {accountSid: ${ACME.accountSid}, authToken: {env: ACME_TOKEN}}
  - id: beta
    displayName: Beta
    phoneNumbers: ['${BETA.to}']
    twilio: {accountSid: ${BETA.accountSid}, authToken: {env: BETA_TOKEN}}
`,
  );
  return file;
}
export const TENANT_ENV = { ACME_TOKEN: ACME.authToken, BETA_TOKEN: BETA.authToken };

/** POST a form webhook signed over the relay's PUBLIC_URL as Twilio would (or with the given signature; null: none). */
export async function signed(
  tr: TenantRelay,
  path: string,
  fields: Record<string, string>,
  o: { authToken?: string; signature?: string | null } = {},
): Promise<{ status: number; body: string }> {
  const url = tr.relay.url + path;
  const sig = o.signature === undefined ? computeTwilioSignature(o.authToken ?? ACME.authToken, url, fields) : o.signature;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (sig !== null) headers['x-twilio-signature'] = sig;
  const res = await fetch(url, { method: 'POST', headers, body: new URLSearchParams(fields).toString() });
  return { status: res.status, body: await res.text() };
}

export const voiceFields = (callSid: string, to = ACME.to, accountSid = ACME.accountSid): Record<string, string> => ({
  AccountSid: accountSid,
  ApiVersion: '2010-04-01',
  CallSid: callSid,
  CallStatus: 'ringing',
  Direction: 'inbound',
  From: '+15005550100',
  To: to,
});
