import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_TENANT, resolveTenant, TenantSchema, type TenantInput } from '../../src/tenants/index.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { BuiltinToolRunner, isBlockedAddress, vetTarget, webhookUrlProblem } from '../../src/tools/index.js';

const SECRET = 'whsec_' + Buffer.from('a-very-secret-key-for-tests-0123').toString('base64');

interface Seen {
  headers: IncomingHttpHeaders;
  body: string;
}
let server: Server;
let base = '';
const seen: Seen[] = [];
const held: ServerResponse[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      if (req.url === '/slow') return void held.push(res);
      if (req.url === '/big') return void res.end('x'.repeat(100_000));
      if (req.url === '/fail') {
        res.statusCode = 500;
        return void res.end('{"error":"boom"}');
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, balance: 42 }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
});
afterAll(async () => {
  for (const r of held) r.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function tenantWith(path: string, over: Record<string, unknown> = {}) {
  const input: TenantInput = {
    ...DEMO_TENANT,
    webhookTools: [
      {
        name: 'account_balance',
        description: 'Look up the balance of a customer account',
        url: `${base}${path}`,
        parameters: { type: 'object', properties: { accountNumber: { type: 'string', minLength: 4 } }, required: ['accountNumber'] },
        secret: { value: SECRET },
        timeoutMs: 300,
        maxResponseBytes: 1024,
        ...over,
      },
    ],
  };
  return resolveTenant(TenantSchema.parse(input), {});
}

let n = 0;
const ctx = (tenant: ReturnType<typeof tenantWith>, extra: { traceparent?: string } = {}) => ({
  callSid: 'CA' + 'c'.repeat(32),
  callId: `call_w${++n}`,
  tenant,
  log: silentLogger(),
  signal: new AbortController().signal,
  ...extra,
});

const dev = new BuiltinToolRunner({ webhooks: { allowPrivateNetworks: true } });

describe('tenant webhook tools', () => {
  it('offers the tenant tool to the model with its JSON schema', () => {
    const defs = dev.definitions(tenantWith('/ok'));
    expect(defs.find((d) => d.name === 'account_balance')).toMatchObject({ type: 'function', parameters: { required: ['accountNumber'] } });
  });

  it('POSTs a Standard Webhooks signed request the receiver can verify, with traceparent', async () => {
    seen.length = 0;
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const r = await dev.run(ctx(tenantWith('/ok'), { traceparent }), 'account_balance', '{"accountNumber":"12345"}');
    expect(r).toEqual({ outcome: 'ok', output: '{"ok":true,"balance":42}' });
    const [req] = seen;
    const id = String(req?.headers['webhook-id']);
    const ts = String(req?.headers['webhook-timestamp']);
    expect(id).toMatch(/^msg_/);
    expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(60);
    // Verify exactly as a Standard Webhooks receiver does.
    const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
    const expected = createHmac('sha256', key).update(`${id}.${ts}.${req?.body ?? ''}`).digest('base64');
    expect(req?.headers['webhook-signature']).toBe(`v1,${expected}`);
    expect(req?.headers['traceparent']).toBe(traceparent);
    expect(req?.headers['idempotency-key']).toMatch(/^CAc{32}:call_w\d+$/);
    expect(JSON.parse(req?.body ?? '')).toMatchObject({ tool: 'account_balance', tenantId: 'demo', arguments: { accountNumber: '12345' } });
  });

  it('validates arguments against the declared JSON schema before calling', async () => {
    seen.length = 0;
    const r = await dev.run(ctx(tenantWith('/ok')), 'account_balance', '{"accountNumber":"1"}');
    expect(r.outcome).toBe('invalid_arguments');
    expect(seen).toHaveLength(0);
  });

  it('turns a slow endpoint into a timeout, an oversize or failing answer into a tool error', async () => {
    const slow = await dev.run(ctx(tenantWith('/slow')), 'account_balance', '{"accountNumber":"12345"}');
    expect(slow.outcome).toBe('timeout');
    const big = await dev.run(ctx(tenantWith('/big')), 'account_balance', '{"accountNumber":"12345"}');
    expect(big.outcome).toBe('error');
    const fail = await dev.run(ctx(tenantWith('/fail')), 'account_balance', '{"accountNumber":"12345"}');
    expect(fail.outcome).toBe('error');
    expect(fail.output).toContain('HTTP 500');
  });

  it('refuses loopback, private and link-local targets without the dev flag (no request sent)', async () => {
    const prod = new BuiltinToolRunner();
    seen.length = 0;
    for (const url of [`${base}/ok`, 'https://127.0.0.1:9/x', 'https://10.1.2.3/x', 'https://169.254.169.254/latest', 'https://[::1]:9/x', 'https://localhost:9/x', 'https://[::ffff:10.0.0.1]/x', 'https://[::7f00:1]:9/x', 'https://[::ffff:0:7f00:1]:9/x', 'https://[64:ff9b:1::7f00:1]/x', 'https://[2002:7f00:1::1]:9/x']) {
      const r = await prod.run(ctx(tenantWith('', { url })), 'account_balance', '{"accountNumber":"12345"}');
      expect(r.outcome, url).toBe('error');
    }
    expect(seen).toHaveLength(0);
    await expect(vetTarget(new URL('https://10.0.0.7/'), false)).rejects.toMatchObject({ code: 'forbidden' });
    await expect(vetTarget(new URL('https://[fd00::1]/'), false)).rejects.toThrow(/not a public address/);
    await expect(vetTarget(new URL('http://203.0.113.9/'), false)).rejects.toThrow(/must use https/);
  });

  it('classifies addresses', () => {
    for (const a of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fe80::1', 'fd12::1', '::ffff:127.0.0.1', 'nonsense']) {
      expect(isBlockedAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '93.184.216.34', '2606:4700::1111']) expect(isBlockedAddress(a), a).toBe(false);
  });

  it('blocks every range IANA lists as not globally reachable (documentation, benchmarking, ORCHID, SRv6, site-local)', () => {
    for (const a of [
      '192.0.2.1', // TEST-NET-1
      '198.51.100.7', // TEST-NET-2
      '203.0.113.9', // TEST-NET-3
      '192.88.99.1', // 6to4 relay anycast (deprecated)
      '255.255.255.255',
      'fec0::1', // site-local (deprecated)
      'feff:ffff::1',
      '100::1', // discard-only
      '100:0:0:1::1', // dummy prefix
      '2001:db8::1', // documentation
      '3fff::1', // documentation
      '3fff:fff::1',
      '2001:2::1', // benchmarking
      '2001:20::1', // ORCHIDv2
      '2001:10::1', // ORCHID (deprecated)
      '5f00::1', // SRv6 SIDs
      '4000::1', // outside global unicast 2000::/3
      '::ffff:203.0.113.5',
    ]) {
      expect(isBlockedAddress(a), a).toBe(true);
    }
    for (const a of ['2001:4860:4860::8888', '2a00:1450:4009::200e', '3ffe::1', '198.51.101.1', '203.0.114.1']) expect(isBlockedAddress(a), a).toBe(false);
  });

  it('refuses at save time an IP-literal host in a blocked range, localhost or userinfo (unless the dev flag)', () => {
    for (const url of ['https://[fec0::1]/x', 'https://192.0.2.1/x', 'https://localhost/x', 'https://LOCALHOST./x', 'https://api.localhost/x', 'https://10.0.0.1/x', 'https://[::ffff:127.0.0.1]/x', 'https://0x7f000001/x']) {
      expect(webhookUrlProblem(url, false), url).toMatch(/not a public address|localhost/);
    }
    expect(webhookUrlProblem('https://user:pw@tools.example.com/x', false)).toMatch(/user name or password/);
    expect(webhookUrlProblem('https://user@tools.example.com/x', true)).toMatch(/user name or password/);
    for (const url of ['https://tools.example.com/x', 'https://93.184.216.34/x', 'https://[2606:4700::1111]/x']) expect(webhookUrlProblem(url, false), url).toBeUndefined();
    for (const url of ['http://127.0.0.1:9/x', 'https://localhost/x', 'https://[fec0::1]/x']) expect(webhookUrlProblem(url, true), url).toBeUndefined();
  });

  it('judges IPv6 addresses that embed an IPv4 address by that address, or blocks the prefix', () => {
    for (const a of [
      '::7f00:1', // IPv4-compatible 127.0.0.1
      '::127.0.0.1',
      '::a9fe:a9fe', // 169.254.169.254
      '::ffff:0:7f00:1', // IPv4-translated (::ffff:0:0:0/96) 127.0.0.1
      '::ffff:0:10.0.0.1',
      '::ffff:7f00:1', // IPv4-mapped, hex form
      '0:0:0:0:0:ffff:a00:1',
      '64:ff9b::7f00:1', // NAT64 well-known prefix
      '64:ff9b:1::a00:1', // NAT64 local-use /48: blocked whatever it embeds
      '64:ff9b:1:ffff::808:808',
      '2002:7f00:1::', // 6to4 of 127.0.0.1
      '2002:a00:1::1', // 6to4 of 10.0.0.1
      '2002:a9fe:a9fe::1',
      '2001:0:4136:e378:8000:63bf:3fff:fdd2', // Teredo (2001::/32): the client address is obfuscated
    ]) {
      expect(isBlockedAddress(a), a).toBe(true);
    }
    // Embedding a public IPv4 address is as public as that address.
    for (const a of ['2002:808:808::1', '::ffff:8.8.8.8', '2001:4860:4860::8888']) expect(isBlockedAddress(a), a).toBe(false);
  });
});
