/**
 * Concurrency leases end to end below the routes: a webhook lease that never becomes a stream
 * expires, a live call's lease is renewed by the pod's one heartbeat, and a crashed pod's leases
 * (no more heartbeats) stop counting after their TTL, on a real Redis shared by two "pods".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis } from '../../src/store/redis-connection.js';
import { RedisLeaseStore } from '../../src/store/redis-lease-store.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { TenantLeases, TenantSchema, resolveTenant } from '../../src/tenants/index.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { ManualClock } from '../helpers/manual-clock.js';

const acme = resolveTenant(
  TenantSchema.parse({
    id: 'acme',
    displayName: 'Acme',
    phoneNumbers: ['+14155550100'],
    maxConcurrentCalls: 1,
    twilio: { accountSid: 'AC' + 'a'.repeat(32), authToken: { value: 'x' } },
  }),
  {},
);

let server: RedisServer;
let n = 0;
beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server.stop();
});

function pods(): { a: TenantLeases; b: TenantLeases; clock: ManualClock; close(): void } {
  const clock = new ManualClock();
  const prefix = `k${++n}:`;
  const ra = createRedis(server.url, { keyPrefix: prefix });
  const rb = createRedis(server.url, { keyPrefix: prefix });
  const opts = { log: silentLogger(), clock, pendingTtlMs: 45_000, liveTtlMs: 60_000, heartbeatMs: 20_000 };
  const a = new TenantLeases({ ...opts, store: new RedisLeaseStore(ra, () => clock.now()) });
  const b = new TenantLeases({ ...opts, store: new RedisLeaseStore(rb, () => clock.now()) });
  return {
    a,
    b,
    clock,
    close() {
      a.close();
      b.close();
      ra.disconnect();
      rb.disconnect();
    },
  };
}

describe('TenantLeases', () => {
  it('frees a webhook lease whose stream never started after the short TTL', async () => {
    const p = pods();
    expect((await p.a.admit(acme, 'CA1')).admitted).toBe(true);
    expect(await p.b.admit(acme, 'CA2')).toEqual({ admitted: false, active: 1 });
    p.clock.advance(46_000);
    expect((await p.b.admit(acme, 'CA2')).admitted).toBe(true);
    p.close();
  });

  it('keeps a live call counted through heartbeats, and frees it at call end', async () => {
    const p = pods();
    p.a.start();
    await p.a.admit(acme, 'CA1');
    p.a.callStarted({ callSid: 'CA1', tenant: acme });
    for (let i = 0; i < 6; i++) {
      p.clock.advance(20_000); // fires the shared heartbeat
      await p.a.heartbeat(); // and waits for a renewal round trip to land before checking
      expect((await p.b.admit(acme, `CA-other-${i}`)).admitted).toBe(false);
    }
    expect(p.a.liveCalls()).toBe(1);
    p.a.callEnded({ callSid: 'CA1', tenant: acme });
    expect(p.a.liveCalls()).toBe(0);
    await expectEventually(async () => (await p.b.admit(acme, 'CA3')).admitted);
    p.close();
  });

  it('lets a crashed pod\'s live leases expire (no heartbeat) so survivors admit calls again', async () => {
    const p = pods();
    await p.a.admit(acme, 'CA1');
    p.a.callStarted({ callSid: 'CA1', tenant: acme });
    await p.a.heartbeat();
    p.a.close(); // the pod dies: no callEnded, no more heartbeats
    p.clock.advance(59_000);
    expect((await p.b.admit(acme, 'CA2')).admitted).toBe(false);
    p.clock.advance(2_000);
    expect((await p.b.admit(acme, 'CA2')).admitted).toBe(true);
    p.close();
  });

  it('releases on a status callback for a call live on another pod', async () => {
    const p = pods();
    await p.a.admit(acme, 'CA1');
    p.a.callStarted({ callSid: 'CA1', tenant: acme });
    expect(await p.b.release('acme', 'CA1')).toBe(true);
    expect((await p.b.admit(acme, 'CA2')).admitted).toBe(true);
    p.close();
  });
});

async function expectEventually(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('condition never held');
}
