/**
 * The UsageStore contract, run once per implementation: two handles (two pods) on one store add to
 * the same buckets exactly once per unit; replays add nothing; hour/day/month buckets split in UTC.
 */
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  MemoryUsageStore,
  RedisUsageStore,
  bucketId,
  createRedis,
  emptyUsage,
  type UsageStore,
  type UsageTotals,
} from '../../src/store/index.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 11, 31, 22, 30); // 22:30 on 31 Dec: the next hours cross a day and a month
const totals = (o: Partial<UsageTotals>): UsageTotals => ({ ...emptyUsage(), ...o });
const ref = (callSid: string, tenantId = 'acme') => ({ callSid, tenantId, retentionSeconds: 86_400 });

function usageStoreContract(name: string, open: () => Promise<{ a: UsageStore; b: UsageStore; close(): Promise<void> }>): void {
  describe(`UsageStore: ${name}`, () => {
    let a: UsageStore;
    let b: UsageStore;
    let opened: { a: UsageStore; b: UsageStore; close(): Promise<void> };
    beforeEach(async () => {
      opened = await open();
      ({ a, b } = opened);
    });
    afterEach(async () => {
      await opened.close();
    });

    it('adds what each write of a call exceeds its recorded totals by; replays and stale writes add nothing', async () => {
      await a.record(ref('CA1'), totals({ calls: 1, callMs: 30_000, inputAudio: 300, costNanoUsd: 9_600_000 }), T0);
      await a.record(ref('CA1'), totals({ calls: 1, callMs: 30_000, inputAudio: 300, costNanoUsd: 9_600_000 }), T0 + 1000);
      await a.record(ref('CA1'), totals({ calls: 1, callMs: 60_000, inputAudio: 450, outputAudio: 80, costNanoUsd: 19_520_000 }), T0 + 2000);
      // A write from before (a retry that arrives late) lowers nothing and adds nothing.
      await a.record(ref('CA1'), totals({ calls: 1, callMs: 30_000, inputAudio: 300, costNanoUsd: 9_600_000 }), T0 + 3000);
      expect(await b.callUsage('acme', 'CA1')).toEqual(totals({ calls: 1, callMs: 60_000, inputAudio: 450, outputAudio: 80, costNanoUsd: 19_520_000 }));
      expect(await b.bucket('acme', 'month', T0)).toEqual(totals({ calls: 1, callMs: 60_000, inputAudio: 450, outputAudio: 80, costNanoUsd: 19_520_000 }));
      expect(await b.callUsage('acme', 'CA-unknown')).toBeUndefined();
    });

    it('sums calls of one tenant written by two pods, per hour, day and month (UTC), tenants apart', async () => {
      await a.record(ref('CA1'), totals({ calls: 1, callMs: 1000, outputText: 5 }), T0); // Dec 31, 22h
      await b.record(ref('CA2'), totals({ calls: 1, callMs: 2000, outputText: 7 }), T0 + 10 * 60_000); // 22h
      await a.record(ref('CA1'), totals({ calls: 1, callMs: 4000, outputText: 5, toolCalls: 1 }), T0 + H); // 23h
      await b.record(ref('CA3'), totals({ calls: 1, callMs: 8000, inputTextCached: 64 }), T0 + 2 * H); // Jan 1, 00h
      await b.record(ref('CA9', 'other'), totals({ calls: 1, callMs: 16_000 }), T0);

      const hours = await a.buckets('acme', 'hour', T0 - H, T0 + 3 * H);
      expect(hours.map((x) => [new Date(x.start).toISOString(), x.totals.calls, x.totals.callMs, x.totals.outputText])).toEqual([
        ['2026-12-31T22:00:00.000Z', 2, 3000, 12],
        ['2026-12-31T23:00:00.000Z', 0, 3000, 0],
        ['2027-01-01T00:00:00.000Z', 1, 8000, 0],
      ]);
      const days = await b.buckets('acme', 'day', Date.UTC(2026, 11, 1), Date.UTC(2027, 0, 5));
      expect(days.map((x) => [new Date(x.start).toISOString(), x.totals.callMs, x.totals.toolCalls])).toEqual([
        ['2026-12-31T00:00:00.000Z', 6000, 1],
        ['2027-01-01T00:00:00.000Z', 8000, 0],
      ]);
      expect((await a.bucket('acme', 'month', T0)).callMs).toBe(6000);
      expect((await a.bucket('acme', 'month', T0 + 2 * H)).inputTextCached).toBe(64);
      expect((await a.bucket('other', 'day', T0)).callMs).toBe(16_000);
      // [from, to): a bucket starting at `to` is not included.
      expect(await a.buckets('acme', 'hour', T0 - H, Date.UTC(2026, 11, 31, 23))).toHaveLength(1);
      expect(await b.tenants()).toEqual(['acme', 'other']);
    });

    it('stays exact with many concurrent writers', async () => {
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 50; i++) {
        const store = i % 2 ? a : b;
        for (let k = 1; k <= 4; k++) writes.push(store.record(ref(`CA${i}`), totals({ calls: 1, callMs: k * 1000, costNanoUsd: k * 123_456_789 }), T0));
      }
      await Promise.all(writes);
      expect(await a.bucket('acme', 'day', T0)).toEqual(totals({ calls: 50, callMs: 50 * 4000, costNanoUsd: 50 * 4 * 123_456_789 }));
    });
  });
}

usageStoreContract('memory', () => {
  const s = new MemoryUsageStore();
  return Promise.resolve({ a: s, b: s, close: () => s.close() });
});

let server: RedisServer;
const conns: Redis[] = [];
beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  for (const c of conns) c.disconnect();
  await server.stop();
});

usageStoreContract('redis', async () => {
  const ra = createRedis(server.url);
  const rb = createRedis(server.url);
  conns.push(ra, rb);
  await ra.flushall();
  return {
    a: new RedisUsageStore(ra),
    b: new RedisUsageStore(rb),
    close: async () => {
      await ra.quit();
      await rb.quit();
    },
  };
});

describe('RedisUsageStore specifics', () => {
  it('keeps a tenant in one cluster slot, the call for its retention and buckets for the usage retention', async () => {
    const r = createRedis(server.url, { keyPrefix: 'ut:' });
    conns.push(r);
    const s = new RedisUsageStore(r, { retentionDays: 2 });
    await s.record({ callSid: 'CAx', tenantId: 'acme', retentionSeconds: 600 }, totals({ calls: 1 }), T0);
    expect(await r.ttl('usage:{acme}:call:CAx')).toBeLessThanOrEqual(600);
    expect(await r.ttl('usage:{acme}:call:CAx')).toBeGreaterThan(500);
    const day = await r.ttl(`usage:{acme}:d:${bucketId('day', T0)}`);
    expect(day).toBeGreaterThan(86_400);
    expect(day).toBeLessThanOrEqual(2 * 86_400);
    expect(await r.hget(`usage:{acme}:h:2026123122`, 'calls')).toBe('1');
    expect(await r.hget(`usage:{acme}:m:202612`, 'calls')).toBe('1');
  });
});

describe('MemoryUsageStore specifics', () => {
  it("forgets a call's totals after its retention, keeps the buckets", async () => {
    let now = T0;
    const s = new MemoryUsageStore(() => now);
    await s.record({ callSid: 'CAold', tenantId: 'acme', retentionSeconds: 60 }, totals({ calls: 1, callMs: 5000 }), T0);
    expect(await s.callUsage('acme', 'CAold')).toMatchObject({ callMs: 5000 });
    now += 61_000;
    expect(await s.callUsage('acme', 'CAold')).toBeUndefined();
    expect((await s.bucket('acme', 'day', T0)).callMs).toBe(5000);
  });
});
