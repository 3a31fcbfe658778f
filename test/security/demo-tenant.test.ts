/**
 * The demo tenant's token is published in the docs: with a real model provider it must not exist,
 * must never reach a shared store, and a store that still holds it (or any inline token) must not
 * serve it. Real relay, real fake-model socket, real redis-server.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall } from '../../src/sim/sim-caller.js';
import { RedisTenantStore } from '../../src/store/redis-tenant-store.js';
import { createLogger } from '../../src/telemetry/index.js';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_TENANT, TenantSchema } from '../../src/tenants/index.js';
import { startFaultModel, type FaultModel } from '../helpers/fault-model.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { builtinDemo, eventually, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
let model: FaultModel | undefined;
let redis: RedisServer | undefined;
afterEach(async () => {
  await relay?.close();
  await model?.close();
  await redis?.stop();
  relay = model = redis = undefined;
});

const hello = { turns: [{ say: 'Hello' }], maxCallMs: 8000, hangupAfterMs: 300, replyTimeoutMs: 4000 };
const publishedDemo = builtinDemo;
const realModel = (url: string) => ({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-operator-key', OPENAI_REALTIME_URL: url });

function logSink(): { lines: Record<string, unknown>[]; log: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { lines, log };
}

function tenantsFile(body: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sb-demo-')), 'tenants.yaml');
  writeFileSync(file, body);
  return file;
}

describe('the demo tenant exists only with MODEL_PROVIDER=sim', () => {
  it('with a real provider and no TENANTS_FILE, the published demo token gets no stream and the model key is never used', async () => {
    model = await startFaultModel();
    relay = await startTestRelay({ ...realModel(model.url), TENANTS_FILE: '' });
    const report = await placeCall({ baseUrl: relay.url, ...publishedDemo, script: hello });
    expect(report.stage).toBe('not-connected');
    expect(report.spoken).toMatch(/not in service/i);
    expect(model.attempts).toBe(0);
  });

  it('with the simulated model and Redis, the demo tenant is served but never written to Redis', async () => {
    redis = await startRedisServer();
    relay = await startTestRelay({ REDIS_URL: redis.url, TENANTS_FILE: '' });
    const report = await placeCall({ baseUrl: relay.url, ...publishedDemo, script: hello });
    expect(report.stage).toBe('connected');
    const r = new Redis(redis.url);
    try {
      const keys = await r.keys('*');
      for (const k of keys) {
        const type = await r.type(k);
        const dump = type === 'hash' ? JSON.stringify(await r.hgetall(k)) : type === 'string' ? ((await r.get(k)) ?? '') : '';
        expect(dump, `key ${k}`).not.toContain(DEMO_AUTH_TOKEN);
        expect(dump, `key ${k}`).not.toContain(DEMO_ACCOUNT_SID);
      }
      expect(await r.hexists('sb:tenants', 'demo')).toBe(0);
    } finally {
      r.disconnect();
    }
  });

  it('a real-provider pod refuses a stored demo tenant or inline token, with a log line, and serves the rest', async () => {
    redis = await startRedisServer();
    // What an older pod (or a sim pod sharing this Redis) left behind.
    const r = new Redis(redis.url, { keyPrefix: 'sb:' });
    const store = new RedisTenantStore(r);
    await store.put(TenantSchema.parse(DEMO_TENANT), 'create');
    await store.put(
      TenantSchema.parse({
        id: 'inline-co',
        displayName: 'Inline Co',
        phoneNumbers: ['+14155550170'],
        twilio: { accountSid: 'AC' + 'b'.repeat(32), authToken: { value: 'inline-token-in-redis' } },
      }),
      'create',
    );
    await store.markInitialised();
    await store.close();
    r.disconnect();

    model = await startFaultModel();
    const { lines, log } = logSink();
    const acme = { to: '+14155550100', accountSid: 'AC' + 'e'.repeat(32), authToken: 'acme-auth-token-by-reference' };
    const file = tenantsFile(`tenants:
  - id: acme
    displayName: Acme
    phoneNumbers: ['${acme.to}']
    twilio: {accountSid: ${acme.accountSid}, authToken: {env: ACME_TOKEN}}
`);
    relay = await startTestRelay({ ...realModel(model.url), REDIS_URL: redis.url, TENANTS_FILE: file, ACME_TOKEN: acme.authToken }, { log });
    const refused = await placeCall({ baseUrl: relay.url, ...publishedDemo, script: hello });
    expect(refused.stage).toBe('not-connected');
    const inline = await placeCall({
      baseUrl: relay.url,
      to: '+14155550170',
      accountSid: 'AC' + 'b'.repeat(32),
      authToken: 'inline-token-in-redis',
      script: hello,
    });
    expect(inline.stage).toBe('not-connected');
    expect(model.attempts).toBe(0);
    await eventually(() => lines.filter((l) => l['msg'] === 'tenant refused: not served with a real model provider').length === 2, 2000, 'two refusal lines');
    const why = lines.filter((l) => l['code'] === 'config_invalid').map((l) => `${String(l['tenant'])}: ${String(l['problem'])}`);
    expect(why).toEqual(
      expect.arrayContaining([
        'demo: uses the demo account (allowed only with MODEL_PROVIDER=sim)',
        'inline-co: twilio.authToken is given inline (use an {env} or {file} reference)',
      ]),
    );
    // The TENANTS_FILE tenant on the same pod is served.
    const ok = await placeCall({ baseUrl: relay.url, ...acme, script: hello });
    expect(ok.stage).toBe('connected');
  });

  it('a real provider refuses a TENANTS_FILE with the demo account or an inline token at start', async () => {
    model = await startFaultModel();
    const file = tenantsFile(`tenants:
  - id: inline-co
    displayName: Inline Co
    phoneNumbers: ['+14155550171']
    twilio: {accountSid: AC${'c'.repeat(32)}, authToken: {value: inline-in-file}}
  - id: demo-copy
    displayName: Demo copy
    phoneNumbers: ['+14155550172']
    twilio: {accountSid: ${DEMO_ACCOUNT_SID}, authToken: {env: SOME_TOKEN}}
`);
    await expect(startTestRelay({ ...realModel(model.url), TENANTS_FILE: file, SOME_TOKEN: 'x'.repeat(20) })).rejects.toThrow(
      /tenant inline-co twilio.authToken is given inline[\s\S]*tenant demo-copy uses the demo account/,
    );
  });
});
