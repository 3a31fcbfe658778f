/**
 * A start that fails after it opened something closes what it opened: here the tenants file is
 * refused after the Redis connection is up, and that connection must not outlive the failed start.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { startTestRelay } from '../helpers/relay.js';

let redis: RedisServer | undefined;
let probe: Redis | undefined;
afterEach(async () => {
  probe?.disconnect();
  await redis?.stop();
  redis = probe = undefined;
});

/** Clients connected to the server besides the probe itself. */
async function otherClients(r: Redis): Promise<number> {
  const list = (await r.call('CLIENT', 'LIST')) as string;
  return list.split('\n').filter((l) => l.trim() !== '').length - 1;
}

describe('a relay start that fails half-way', () => {
  it('closes the Redis connection it opened before the tenants file was refused', async () => {
    redis = await startRedisServer();
    probe = new Redis(redis.url, { lazyConnect: true });
    await probe.connect();
    const dir = mkdtempSync(join(tmpdir(), 'sb-start-failure-'));
    const file = join(dir, 'tenants.json');
    writeFileSync(file, JSON.stringify({ tenants: [{ id: 'Not A Valid Id!' }] }));

    await expect(startTestRelay({ REDIS_URL: redis.url, TENANTS_FILE: file })).rejects.toMatchObject({ code: 'config_invalid' });
    // A leaked client connects (and reconnects forever) within milliseconds on loopback: watch a
    // second for any connection besides the probe.
    const seen: number[] = [];
    for (const until = Date.now() + 1000; Date.now() < until; ) {
      seen.push(await otherClients(probe));
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(Math.max(...seen)).toBe(0);
  });
});
