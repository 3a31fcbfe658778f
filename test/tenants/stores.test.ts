/**
 * TenantStore and LeaseStore contracts, run once per implementation: in memory and on a real
 * redis-server. Lease time comes from a manual clock, so expiry is tested without waiting.
 */
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LeaseStore } from '../../src/tenants/lease-store.js';
import { MemoryLeaseStore } from '../../src/store/memory-lease-store.js';
import { MemoryTenantStore } from '../../src/store/memory-tenant-store.js';
import { createRedis } from '../../src/store/redis-connection.js';
import { RedisLeaseStore } from '../../src/store/redis-lease-store.js';
import { RedisTenantStore } from '../../src/store/redis-tenant-store.js';
import type { TenantStore } from '../../src/tenants/tenant-store.js';
import { TenantSchema, type TenantConfig } from '../../src/tenants/index.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

function tenant(id: string, numbers: string[], extra: Partial<TenantConfig> = {}): TenantConfig {
  return TenantSchema.parse({
    id,
    displayName: `Tenant ${id}`,
    phoneNumbers: numbers,
    twilio: { accountSid: 'AC' + 'a'.repeat(32), authToken: { env: 'TOKEN_' + id.toUpperCase().replace(/-/g, '_') } },
    ...extra,
  });
}

let server: RedisServer;
const conns: Redis[] = [];
let db = 0;
beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server.stop();
});
afterEach(() => {
  for (const c of conns.splice(0)) c.disconnect();
});
/** A fresh key prefix per test: each test sees an empty Redis. */
function redis(prefix: string): Redis {
  const r = createRedis(server.url, { keyPrefix: prefix });
  conns.push(r);
  return r;
}

function tenantStoreContract(name: string, open: () => { a: TenantStore; b: TenantStore }): void {
  describe(`TenantStore: ${name}`, () => {
    let a: TenantStore;
    let b: TenantStore;
    beforeEach(() => {
      ({ a, b } = open());
    });
    afterEach(async () => {
      await a.close();
      await b.close();
    });

    it('creates, refuses a second create, replaces, upserts and deletes', async () => {
      expect(await a.put(tenant('acme', ['+14155550100']), 'create')).toEqual({ ok: true, created: true });
      expect(await a.put(tenant('acme', ['+14155550100']), 'create')).toEqual({ ok: false, reason: 'exists' });
      expect(await a.put(tenant('zeta', ['+14155550199']), 'replace')).toEqual({ ok: false, reason: 'not_found' });
      expect(await a.put(tenant('acme', ['+14155550101'], { maxConcurrentCalls: 3 }), 'replace')).toEqual({ ok: true, created: false });
      expect(await a.put(tenant('beta', ['+14155550200']), 'upsert')).toEqual({ ok: true, created: true });
      const got = await b.get('acme');
      expect(got?.maxConcurrentCalls).toBe(3);
      expect(got?.twilio.authToken).toEqual({ env: 'TOKEN_ACME' });
      expect((await b.list()).map((t) => t.id)).toEqual(['acme', 'beta']);
      expect(await a.delete('acme')).toBe(true);
      expect(await a.delete('acme')).toBe(false);
      expect(await b.get('acme')).toBeUndefined();
    });

    it('keeps phone numbers unique across tenants, and frees numbers a tenant gave up', async () => {
      await a.put(tenant('acme', ['+14155550100', '+14155550101']), 'create');
      expect(await a.put(tenant('beta', ['+14155550101']), 'create')).toEqual({
        ok: false,
        reason: 'number_taken',
        number: '+14155550101',
        owner: 'acme',
      });
      expect(await b.get('beta')).toBeUndefined();
      await a.put(tenant('acme', ['+14155550100']), 'replace');
      expect(await a.put(tenant('beta', ['+14155550101']), 'create')).toEqual({ ok: true, created: true });
      await a.delete('acme');
      expect(await a.put(tenant('gamma', ['+14155550100']), 'create')).toEqual({ ok: true, created: true });
    });

    it('tells subscribers (on another connection) about every write', async () => {
      let notices = 0;
      let wake: () => void = () => undefined;
      const unsubscribe = await b.subscribe(() => {
        notices++;
        wake();
      });
      const next = (): Promise<void> => new Promise((r) => (wake = r));
      let p = next();
      await a.put(tenant('acme', ['+14155550100']), 'create');
      await p;
      p = next();
      await a.delete('acme');
      await p;
      expect(notices).toBe(2);
      unsubscribe();
    });
  });
}

tenantStoreContract('memory', () => {
  const s = new MemoryTenantStore();
  return { a: s, b: s };
});
tenantStoreContract('redis', () => {
  const prefix = `t${++db}:`;
  const channel = `${prefix}tenants-changed`;
  return { a: new RedisTenantStore(redis(prefix), { channel }), b: new RedisTenantStore(redis(prefix), { channel }) };
});

function leaseStoreContract(name: string, open: (now: () => number) => { a: LeaseStore; b: LeaseStore }): void {
  describe(`LeaseStore: ${name}`, () => {
    let t = 1_000_000;
    let a: LeaseStore;
    let b: LeaseStore;
    beforeEach(() => {
      t = 1_000_000;
      ({ a, b } = open(() => t));
    });

    it('grants up to the limit across pods, again to a holder, and again after a release', async () => {
      expect(await a.acquire('acme', 'CA1', 2, 30_000)).toEqual({ granted: true, active: 1 });
      expect(await b.acquire('acme', 'CA2', 2, 30_000)).toEqual({ granted: true, active: 2 });
      expect(await b.acquire('acme', 'CA3', 2, 30_000)).toEqual({ granted: false, active: 2 });
      expect(await a.acquire('acme', 'CA2', 2, 30_000)).toEqual({ granted: true, active: 2 });
      expect(await b.acquire('other', 'CA9', 1, 30_000)).toEqual({ granted: true, active: 1 });
      expect(await a.release('acme', 'CA1')).toBe(true);
      expect(await a.release('acme', 'CA1')).toBe(false);
      expect(await b.acquire('acme', 'CA3', 2, 30_000)).toEqual({ granted: true, active: 2 });
      expect(await a.count('acme')).toBe(2);
    });

    it('lets leases expire without renewal, and renewal keeps them', async () => {
      await a.acquire('acme', 'CA1', 2, 10_000);
      await a.acquire('acme', 'CA2', 2, 10_000);
      t += 8_000;
      await a.renew('acme', ['CA1'], 10_000);
      t += 3_000; // CA2 expired at +10 s; CA1 now lives to +18 s
      expect(await b.count('acme')).toBe(1);
      expect(await b.acquire('acme', 'CA3', 2, 10_000)).toEqual({ granted: true, active: 2 });
      t += 8_000;
      expect(await b.count('acme')).toBe(1);
    });

    it('does not bring back a released lease on renewal', async () => {
      await a.acquire('acme', 'CA1', 1, 10_000);
      await b.release('acme', 'CA1');
      await a.renew('acme', ['CA1'], 10_000);
      expect(await a.count('acme')).toBe(0);
    });

    it('admits exactly `limit` of many simultaneous attempts', async () => {
      const tries = Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).acquire('acme', `CA${i}`, 5, 30_000));
      const granted = (await Promise.all(tries)).filter((g) => g.granted).length;
      expect(granted).toBe(5);
    });
  });
}

leaseStoreContract('memory', (now) => {
  const s = new MemoryLeaseStore(now);
  return { a: s, b: s };
});
leaseStoreContract('redis', (now) => {
  const prefix = `l${++db}:`;
  return { a: new RedisLeaseStore(redis(prefix), now), b: new RedisLeaseStore(redis(prefix), now) };
});

describe('Redis stores send their Lua scripts by SHA', () => {
  it('the script text crosses the wire at most once per script, not on every call', async () => {
    const conn = redis(`s${++db}:`);
    const tenants = new RedisTenantStore(conn);
    const leases = new RedisLeaseStore(conn, () => 1_000);
    const monitor = await createRedis(server.url).monitor();
    const commands: string[] = [];
    // MONITOR reports a command after it ran: a last PING marks the end of ours.
    const sawPing = new Promise<void>((resolve) =>
      monitor.on('monitor', (_time: string, args: string[]) => {
        const name = String(args[0]).toLowerCase();
        commands.push(name);
        if (name === 'ping') resolve();
      }),
    );
    try {
      for (let i = 0; i < 3; i++) {
        expect((await tenants.put(tenant('sha-test', ['+14155550177']), 'upsert')).ok).toBe(true);
        expect((await leases.acquire('sha-test', `CA${i}`, 10, 60_000)).granted).toBe(true);
      }
      expect(await tenants.delete('sha-test')).toBe(true);
      await conn.ping('sha-test-done');
      await sawPing;
    } finally {
      monitor.disconnect();
    }
    // 7 script runs: each of the 3 scripts sends its text once (EVAL), the rest go by SHA.
    expect(commands.filter((c) => c === 'evalsha').length).toBeGreaterThanOrEqual(4);
    expect(commands.filter((c) => c === 'eval').length).toBeLessThanOrEqual(3);
  });
});
