/**
 * The admin API reports a tenant store that refuses or cannot answer as 503 store_unavailable: the
 * stores turn every Redis failure into that typed error, whatever ioredis's message says.
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { startTestRelay } from '../helpers/relay.js';

const ADMIN = 'admin-token-0123456789';

let redis: RedisServer | undefined;
let relay: Relay | undefined;
let probe: Redis | undefined;
afterEach(async () => {
  await relay?.close();
  probe?.disconnect();
  await redis?.stop();
  relay = redis = probe = undefined;
});

describe('admin API when the tenant store refuses writes', () => {
  it('answers 503 store_unavailable for a write Redis refuses (OOM), and serves again once it accepts', async () => {
    redis = await startRedisServer();
    relay = await startTestRelay({ REDIS_URL: redis.url, ADMIN_TOKEN: ADMIN, TENANT_ACME_TWILIO_AUTH_TOKEN: 'acme-oom-auth-token-0123456789' });
    probe = new Redis(redis.url);
    const tenant = {
      id: 'acme-oom',
      displayName: 'Acme',
      phoneNumbers: ['+14155550166'],
      twilio: { accountSid: 'AC' + 'a'.repeat(32), authToken: { env: 'TENANT_ACME_TWILIO_AUTH_TOKEN' } },
    };
    const post = () =>
      fetch(`${relay!.url}/v1/tenants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify(tenant),
      });

    // Redis answers writes with "OOM command not allowed when used memory > 'maxmemory'".
    await probe.config('SET', 'maxmemory-policy', 'noeviction');
    await probe.config('SET', 'maxmemory', '1');
    const refused = await post();
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ error: { code: 'store_unavailable' } });

    await probe.config('SET', 'maxmemory', '0');
    expect((await post()).status).toBe(201);
  });
});
