import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisCallStore } from '../../src/store/index.js';
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
