/**
 * A relay whose Redis is unreachable at start must start, answer /healthz, hold /readyz at 503 and
 * turn ready once Redis answers (it used to reject and crash-loop the pod).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall } from '../../src/sim/sim-caller.js';
import { demo, eventually, startTestRelay } from '../helpers/relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

let redis: RedisServer | undefined;
let relay: Relay | undefined;
afterEach(async () => {
  await relay?.close();
  await redis?.stop();
  relay = redis = undefined;
});

describe('Redis unreachable when the pod starts', () => {
  it('the relay starts unready, and turns ready and serves calls once Redis is up on that port', async () => {
    redis = await startRedisServer();
    await redis.kill(); // a known port with nothing listening; restart() brings Redis up there
    relay = await startTestRelay({ REDIS_URL: redis.url });
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
    const res = await fetch(`${relay.url}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { code: 'store_unavailable' } });

    await redis.restart();
    const r = relay;
    await eventually(async () => (await fetch(`${r.url}/readyz`)).status === 200, 15_000, '/readyz 200 once Redis is up');
    const report = await placeCall({
      baseUrl: r.url,
      ...demo,
      script: { turns: [{ say: 'Hello' }], maxCallMs: 10_000, hangupAfterMs: 300, replyTimeoutMs: 5000 },
    });
    expect(report.stage).toBe('connected');
    expect(report.turns[0]?.heard).toBe('You said: Hello. Anything else?');
  });
});
