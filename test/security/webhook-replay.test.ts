/**
 * Twilio signatures carry no timestamp: a captured voice webhook can be replayed at will, and each
 * replay yields a fresh stream token. One CallSid must still get one authorised stream, across pods
 * sharing Redis, however often its webhook is replayed. Two real relays, real redis-server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { randomSid } from '../../src/sim/sim-caller.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { eventually, mediaFrame, rawStream, startTestRelay } from '../helpers/relay.js';

let pods: Relay[] = [];
let redis: RedisServer | undefined;
afterEach(async () => {
  for (const p of pods) await p.close();
  await redis?.stop();
  pods = [];
  redis = undefined;
});

/** The close the relay sent within `ms`, or 'still open'. */
function closedWithin(s: { closed: Promise<{ code: number }> }, ms = 5000): Promise<{ code: number } | 'still open'> {
  return Promise.race([s.closed, new Promise<'still open'>((res) => setTimeout(() => res('still open'), ms))]);
}

describe('a replayed voice webhook', () => {
  it('gets no second stream for its CallSid, on the same pod or another, during or after the call', async () => {
    redis = await startRedisServer();
    const [a, b] = (pods = [await startTestRelay({ REDIS_URL: redis.url }), await startTestRelay({ REDIS_URL: redis.url })]) as [Relay, Relay];
    const callSid = randomSid('CA');

    const first = await rawStream(a, callSid);
    first.start();
    first.ws.send(mediaFrame(callSid, 2));
    await eventually(() => a.activeCalls() === 1, 5000, 'first stream live');

    // The same signed webhook, replayed to both pods: each answer carries a fresh, valid token.
    const replays = [await rawStream(a, callSid), await rawStream(b, callSid), await rawStream(b, callSid)];
    expect(new Set([first.params['token'], ...replays.map((r) => r.params['token'])]).size).toBe(4);
    for (const r of replays) r.start();
    for (const r of replays) expect(await closedWithin(r)).toMatchObject({ code: 4003 });
    expect(a.activeCalls() + b.activeCalls()).toBe(1);
    expect((a.sim?.stats().openSessions ?? 0) + (b.sim?.stats().openSessions ?? 0)).toBeLessThanOrEqual(1);

    // After the call ended, a replay still gets nothing.
    first.ws.close();
    await first.closed;
    await eventually(() => a.activeCalls() === 0, 5000, 'first call ended');
    const late = await rawStream(b, callSid);
    late.start();
    expect(await closedWithin(late)).toMatchObject({ code: 4003 });
    expect(b.activeCalls()).toBe(0);
  });
});
