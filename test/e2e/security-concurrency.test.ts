/**
 * Per-tenant concurrency across two relay instances sharing one real Redis (two pods): with a limit
 * of 1, a second call on the other pod hears the busy message and is counted; after the first call
 * ends a new call is admitted; a status callback frees the slot of a webhook whose stream never came.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { ACME, eventually, metricValue, signed, startTenantRelay, TENANT_ENV, type TenantRelay, voiceFields, writeTenantsFile } from '../helpers/relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

let redis: RedisServer;
let a: TenantRelay;
let b: TenantRelay;
beforeAll(async () => {
  redis = await startRedisServer();
  const tenantsFile = writeTenantsFile({ acmeMaxConcurrentCalls: 1 });
  const shared = { tenantsFile, tenantEnv: TENANT_ENV, redisUrl: redis.url, keyPrefix: 'conc:' };
  a = await startTenantRelay(shared);
  b = await startTenantRelay(shared);
});
afterAll(async () => {
  await a.close();
  await b.close();
  await redis.stop();
});

const call = (sr: TenantRelay, o: { signal?: AbortSignal; callSid?: string } = {}) =>
  placeCall({
    baseUrl: sr.relay.url,
    publicUrl: sr.relay.url,
    ...ACME,
    ...(o.callSid ? { callSid: o.callSid } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    script: o.signal ? { turns: [], maxCallMs: 20_000 } : { turns: [], hangupAfterMs: 0, maxCallMs: 10_000 },
  });

describe('tenant concurrency limit across pods', () => {
  it('turns the second call away politely on the other pod, and admits a new one after the first ends', async () => {
    const hangUp = new AbortController();
    const first = call(a, { signal: hangUp.signal });
    await eventually(() => a.relay.activeCalls() === 1, 5000, 'first call live on pod a');

    const second = await call(b);
    expect(second.stage).toBe('not-connected');
    expect(second.spoken).toContain('All our lines are busy');
    expect(second.twiml?.kind === 'other' && second.twiml.verbs.map((v) => v.verb)).toEqual(['Say', 'Hangup']);
    const text = await (await fetch(`${b.relay.url}/metrics`)).text();
    expect(metricValue(text, 'switchboard_tenant_busy_total', { tenant: 'acme' })).toBe(1);
    expect(metricValue(text, 'switchboard_calls_total', { outcome: 'rejected_capacity', tenant: 'acme' })).toBe(1);

    hangUp.abort();
    const done = await first;
    expect(done.stage).toBe('connected');
    // The lease is released by the call-ended listener on pod a.
    await eventually(async () => (await a.runtime.leaseStore.count('acme')) === 0, 5000, 'lease released');
    const third = await call(b);
    expect(third.stage).toBe('connected');
    expect(third.errors).toEqual([]);
  });

  it('frees the slot of a webhook whose stream never opened when Twilio reports the call completed', async () => {
    await eventually(async () => (await a.runtime.leaseStore.count('acme')) === 0, 5000, 'no leases held');
    const callSid = randomSid('CA');
    expect((await signed(a, '/twilio/voice', voiceFields(callSid))).body).toContain('<Stream');
    expect((await signed(b, '/twilio/voice', voiceFields(randomSid('CA')))).body).toContain('All our lines are busy');
    const status = await signed(b, '/twilio/status', { AccountSid: ACME.accountSid, CallSid: callSid, CallStatus: 'completed', CallDuration: '3' });
    expect(status.status).toBe(204);
    expect((await signed(b, '/twilio/voice', voiceFields(randomSid('CA')))).body).toContain('<Stream');
  });
});
