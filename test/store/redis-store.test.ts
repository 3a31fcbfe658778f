import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisCallStore } from '../../src/store/index.js';
import { listIndexed } from '../../src/store/redis-call-index.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { callStoreContract, sid } from './call-store.contract.js';

let server: RedisServer;
beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server.stop();
});

callStoreContract('redis', async () => {
  const a = RedisCallStore.connect(server.url);
  const b = RedisCallStore.connect(server.url);
  await a.redis.flushall();
  return {
    a,
    b,
    close: async () => {
      await a.close();
      await b.close();
    },
  };
});

describe('RedisCallStore specifics', () => {
  it('keeps an ended call for its retention, prefixes keys, and expires claims', async () => {
    const store = RedisCallStore.connect(server.url, { keyPrefix: 'test1:' });
    try {
      const s = sid();
      await store.startCall({ callSid: s, tenantId: 'demo', pod: 'p', startedAt: Date.now() });
      await store.appendTranscript(s, { role: 'caller', text: 'hi', at: 1 });
      await store.recordToolCall(s, { callId: 'c', name: 'n', arguments: '{}', output: '{}', outcome: 'ok', startedAt: 1, durationMs: 1 });
      const liveTtl = await store.redis.ttl(`call:{${s}}`);
      expect(liveTtl).toBeGreaterThan(3600);
      await store.endCall(s, 'completed', 600);
      for (const suffix of ['', ':transcript', ':tools']) {
        const ttl = await store.redis.ttl(`call:{${s}}${suffix}`);
        expect(ttl, suffix).toBeGreaterThan(590);
        expect(ttl, suffix).toBeLessThanOrEqual(600);
      }
      // A summary written after the end keeps the retention TTL.
      await store.setSummary(s, { reason: 'x' });
      expect(await store.redis.ttl(`call:{${s}}`)).toBeLessThanOrEqual(600);
      expect((await store.getCall(s))?.summary).toEqual({ reason: 'x' });
      await store.claim({ tenantId: 'demo', key: 'slot:1', owner: 'o', ttlSeconds: 90 });
      const ttl = await store.redis.ttl('t:demo:claim:slot:1');
      expect(ttl).toBeGreaterThan(80);
      // keyPrefix is applied by the connection: the raw key carries it.
      expect(await store.redis.call('EXISTS', 'test1:test1:t:demo:claim:slot:1')).toBe(0);
      expect(await store.redis.exists('t:demo:claim:slot:1')).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('keeps the start-time indexes of the call listing bounded: cut at retention, expired calls dropped', async () => {
    let now = Date.now() - 100_000;
    const store = RedisCallStore.connect(server.url, { keyPrefix: 'idx:', liveTtlSeconds: 60, now: () => now });
    try {
      const [old, gone, fresh] = [sid(), sid(), sid()];
      await store.startCall({ callSid: old, tenantId: 'acme', pod: 'p', startedAt: now, retentionSeconds: 10 });
      // Later than retention (10 s) plus the live TTL (60 s): the tenant's next call cuts the old one.
      now += 71_000;
      await store.startCall({ callSid: gone, tenantId: 'demo', pod: 'p', startedAt: now - 1000 });
      await store.endCall(gone, 'completed', 3600);
      expect(await store.redis.zscore('t:acme:calls', old)).not.toBeNull();
      // Past its retention the call's keys expire; here they are deleted to stand for that.
      await store.redis.del(`call:{${gone}}`, `call:{${gone}}:transcript`, `call:{${gone}}:tools`);
      await store.startCall({ callSid: fresh, tenantId: 'acme', pod: 'p', startedAt: now, retentionSeconds: 10 });
      expect(await store.redis.zscore('t:acme:calls', old)).toBeNull();
      expect(await store.redis.zscore('t:acme:calls', fresh)).not.toBeNull();
      expect(await store.redis.zscore('calls', gone)).toBeNull();
      // A listing drops the entries of expired calls it meets.
      await store.redis.del(`call:{${old}}`);
      expect((await store.listCalls({ state: 'all', limit: 10 })).calls.map((c) => c.callSid)).toEqual([fresh]);
      expect(await store.redis.zrange('calls', '0', '-1')).toEqual([fresh]);
    } finally {
      await store.redis.flushall();
      await store.close();
    }
  });

  it('bounds the index entries one listing page reads: a short page with a cursor, then the rest', async () => {
    const store = RedisCallStore.connect(server.url, { keyPrefix: 'scan:' });
    try {
      const t0 = Date.now() - 10_000;
      const s = Array.from({ length: 6 }, () => sid());
      for (const [i, c] of s.entries()) await store.startCall({ callSid: c, tenantId: 'demo', pod: 'p', startedAt: t0 + i });
      await store.endCall(s[0]!, 'completed', 600);
      // Only the oldest call matches; 4 entries per page are read, so the first page is empty.
      const q = { state: 'ended', limit: 10 } as const;
      const first = await listIndexed(store.redis, q, 4);
      expect(first.calls).toEqual([]);
      expect(first.next).toEqual({ callSid: s[2], startedAt: t0 + 2 });
      const second = await listIndexed(store.redis, { ...q, cursor: first.next! }, 4);
      expect(second.calls.map((c) => c.callSid)).toEqual([s[0]]);
      expect(second.next).toBeUndefined();
    } finally {
      await store.redis.flushall();
      await store.close();
    }
  });

  it('fails fast with store_unavailable when Redis is frozen, and ping says false', async () => {
    const store = RedisCallStore.connect(server.url, { commandTimeoutMs: 200 });
    try {
      expect(await store.ping()).toBe(true);
      server.pause();
      try {
        await expect(store.consumeOnce('x', 10)).rejects.toMatchObject({ code: 'store_unavailable', retryable: true });
        await expect(store.claim({ tenantId: 'demo', key: 'k', owner: 'o', ttlSeconds: 10 })).rejects.toMatchObject({ code: 'store_unavailable' });
        expect(await store.ping()).toBe(false);
      } finally {
        server.resume();
      }
    } finally {
      await store.close();
    }
  });
});
