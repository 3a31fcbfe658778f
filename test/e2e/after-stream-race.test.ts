/**
 * Twilio runs the TwiML after `</Connect>` (the after-stream `<Redirect>`) the moment the media
 * socket closes, and a load balancer may send that request to another pod. Two relays on one real
 * redis-server; the call's pod writes its outcome slowly (a store answering late, as Redis under
 * load or mid-failover does); the simulated caller follows the redirect at once, on the other pod.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { createRedis, RedisCallStore, type CallStore } from '../../src/store/index.js';
import { DEMO_TENANT } from '../../src/tenants/index.js';
import { demo, startTestRelay } from '../helpers/relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

let redis: RedisServer;
const relays: Relay[] = [];
const stores: CallStore[] = [];
beforeAll(async () => {
  redis = await startRedisServer();
}, 30_000);
afterAll(async () => {
  await redis.stop();
});
afterEach(async () => {
  for (const r of relays.splice(0)) await r.close();
  for (const s of stores.splice(0)) await s.close();
});

/** The Redis call store, with `endCall` reaching Redis only after `delayMs`. */
function slowEndingStore(delayMs: number): CallStore {
  const inner = new RedisCallStore(createRedis(redis.url));
  stores.push(inner);
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'endCall') {
        return async (...args: Parameters<CallStore['endCall']>) => {
          await new Promise((r) => setTimeout(r, delayMs));
          return target.endCall(...args);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Pod A holds the call (slow store); pod B, behind the same PUBLIC_URL, answers the redirect. */
async function twoPods(endCallDelayMs: number): Promise<{ a: Relay; b: Relay }> {
  const a = await startTestRelay({ REDIS_URL: redis.url }, { pod: 'pod-a', store: slowEndingStore(endCallDelayMs) });
  relays.push(a);
  const b = await startTestRelay({ REDIS_URL: redis.url, PUBLIC_URL: a.url }, { pod: 'pod-b' });
  relays.push(b);
  return { a, b };
}

const APOLOGY = 'Sorry, our assistant is unavailable. Connecting you to a person.';

async function goodbyeCall(a: Relay, b: Relay, turns: string[]): Promise<Awaited<ReturnType<typeof placeCall>>> {
  return placeCall({
    baseUrl: a.url,
    afterStreamBaseUrl: b.url,
    ...demo,
    callSid: randomSid('CA'),
    script: { turns: turns.map((say) => ({ say })), maxCallMs: 20_000, hangupAfterMs: 10_000, replyTimeoutMs: 4000 },
  });
}

describe('the after-stream answer does not depend on which pod answers first', () => {
  it('end_call goodbye, outcome written 0.8 s late: the other pod hangs up (not "assistant unavailable")', async () => {
    const { a, b } = await twoPods(800);
    const report = await goodbyeCall(a, b, ['call tool end_call {"reason":"caller is done"}']);
    expect(report.turns[0]?.heard).toBe('Goodbye, have a good day.');
    expect(report.closeCode).toBe(4011);
    expect(report.afterStream).toBe('<Hangup/>');
  });

  it('outcome written 3 s late (past the 2 s the pod holds the line for it): the other pod waits for it and hangs up', async () => {
    const { a, b } = await twoPods(3000);
    const report = await goodbyeCall(a, b, ['call tool end_call {"reason":"caller is done"}']);
    expect(report.closeCode).toBe(4011);
    expect(report.afterStream).toBe('<Hangup/>');
  });

  it('a hand-off to a person is dialled, not apologised for', async () => {
    const { a, b } = await twoPods(800);
    const report = await goodbyeCall(a, b, ['I want to talk to a person']);
    expect(report.closeCode).toBe(4012);
    expect(report.afterStream).toBe(`Connecting you now. <Dial>${DEMO_TENANT.humanFallbackNumber}</Dial>`);
    expect(report.afterStream).not.toContain(APOLOGY);
  });
});
