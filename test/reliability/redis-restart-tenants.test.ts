/**
 * Redis restarting empty (no persistence) must not take every tenant offline: the registry used to
 * reload the empty store and answer "not in service" for every number until a pod restarted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { demo, eventually, signedPost, startTestRelay } from '../helpers/relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

let redis: RedisServer | undefined;
let relay: Relay | undefined;
afterEach(async () => {
  await relay?.close();
  await redis?.stop();
  relay = redis = undefined;
});

const hello = { turns: [{ say: 'Hello' }], maxCallMs: 10_000, hangupAfterMs: 300, replyTimeoutMs: 5000 };

describe('Redis restarts empty', () => {
  it('the seeded tenants are still served afterwards', async () => {
    redis = await startRedisServer();
    relay = await startTestRelay({ REDIS_URL: redis.url });
    const r = relay;
    expect((await placeCall({ baseUrl: r.url, ...demo, script: hello })).stage).toBe('connected');

    await redis.kill();
    await eventually(async () => (await fetch(`${r.url}/readyz`)).status === 503, 5000, '/readyz 503');
    await redis.restart();
    await eventually(async () => (await fetch(`${r.url}/readyz`)).status === 200, 10_000, '/readyz 200');
    // The registry reloads on the subscriber's reconnect notice (milliseconds after): for 3 s, every
    // voice webhook must still connect the demo number to a stream.
    for (let i = 0; i < 15; i++) {
      const hook = await signedPost(r, '/twilio/voice', { CallSid: randomSid('CA'), AccountSid: demo.accountSid, To: demo.to, From: '+15550001111' });
      expect(hook.body, `webhook ${i} after the restart`).toContain('<Stream');
      await new Promise((res) => setTimeout(res, 200));
    }
    const report = await placeCall({ baseUrl: r.url, ...demo, script: hello });
    expect(report.spoken).not.toMatch(/not in service/i);
    expect(report.stage).toBe('connected');
    expect(report.turns[0]?.heard).toBe('You said: Hello. Anything else?');
  });
});
