/**
 * Two relays sharing one real Redis: calls book appointments through the simulated caller and
 * model, one call on each relay races for the same slot, and the second relay reads the first
 * relay's call back through GET /v1/calls/{callSid}.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallScript } from '../../src/sim/sim-caller.js';
import { demo, eventually, startTestRelay } from '../helpers/relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

const ADMIN_TOKEN = 'admin-token-for-state-tests-0123';
const SLOT = '2030-01-08T09:00';

let redis: RedisServer;
let relayA: Relay;
let relayB: Relay;

/** A relay wired from configuration alone: Redis call store, store-backed tenants, tools, admin API. */
function startPod(pod: string): Promise<Relay> {
  return startTestRelay({ ADMIN_TOKEN, REDIS_URL: redis.url }, { pod });
}

/** GET from relay B's own admin API. */
async function getJson(path: string, token = ADMIN_TOKEN): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(relayB.url + path, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const bookingScript = (name: string): CallScript => ({
  turns: [
    { say: `call tool book_appointment {"service":"drain_cleaning","slot":"${SLOT}","customerName":"${name}","customerPhone":"+14155550123"}` },
    { say: 'call tool end_call {"reason":"booked"}' },
  ],
  maxCallMs: 30_000,
  hangupAfterMs: 10_000,
});

beforeAll(async () => {
  redis = await startRedisServer();
  relayA = await startPod('pod-a');
  relayB = await startPod('pod-b');
});
afterAll(async () => {
  await relayA.close();
  await relayB.close();
  await redis.stop();
});

interface ToolView {
  name: string;
  outcome: string;
  arguments: Record<string, unknown>;
  result: Record<string, unknown>;
}

describe('call state shared through Redis', () => {
  it('two calls on two relays race for one slot: one books, the other is refused; relay B reads both', async () => {
    const sidA = randomSid('CA');
    const sidB = randomSid('CA');
    const [ra, rb] = await Promise.all([
      placeCall({ baseUrl: relayA.url, ...demo, callSid: sidA, from: '+14155550100', script: bookingScript('Ann') }),
      placeCall({ baseUrl: relayB.url, ...demo, callSid: sidB, from: '+14155550199', script: bookingScript('Bob') }),
    ]);
    expect(ra.stage).toBe('connected');
    expect(rb.stage).toBe('connected');

    const ended = async (sid: string) => (await getJson(`/v1/calls/${sid}`)).body['phase'] === 'ended';
    await eventually(async () => (await ended(sidA)) && (await ended(sidB)), 10_000, 'both calls ended in Redis');
    const a = (await getJson(`/v1/calls/${sidA}`)).body;
    const b = (await getJson(`/v1/calls/${sidB}`)).body;
    expect(a).toMatchObject({ callSid: sidA, tenantId: 'demo', pod: 'pod-a', phase: 'ended', outcome: 'ended_by_assistant' });
    expect(b).toMatchObject({ pod: 'pod-b', outcome: 'ended_by_assistant' });

    const booking = (call: Record<string, unknown>) => (call['tools'] as ToolView[]).find((t) => t.name === 'book_appointment');
    const outcomes = [booking(a)?.outcome, booking(b)?.outcome].sort();
    expect(outcomes).toEqual(['ok', 'rejected']);
    const winner = booking(a)?.outcome === 'ok' ? a : b;
    const won = booking(winner)!;
    expect(won.result).toMatchObject({ ok: true, booked: true, slot: SLOT });
    expect(String(won.result['confirmationId'])).toMatch(/^BK-[0-9A-F]{8}$/);
    // Numbers are masked in what the admin API shows (arguments included); transcripts are there.
    expect(won.arguments['customerPhone']).toBe('+*******0123');
    expect(JSON.stringify(winner)).not.toContain('4155550123');
    expect((winner['transcript'] as { role: string; text: string }[]).some((t) => t.role === 'assistant')).toBe(true);
    // The summary written at call end carries the booking.
    await eventually(async () => ((await getJson(`/v1/calls/${winner['callSid'] as string}`)).body['summary'] ?? null) !== null, 5000, 'summary');
    const summary = (await getJson(`/v1/calls/${winner['callSid'] as string}`)).body['summary'] as Record<string, unknown>;
    expect(summary).toMatchObject({ outcome: 'booked', bookings: [{ confirmationId: won.result['confirmationId'], slot: SLOT }], callOutcome: 'ended_by_assistant' });

    // Nothing live any more, on any pod.
    expect((await getJson('/v1/calls')).body).toMatchObject({ count: 0, calls: [] });
  });

  it('answers admin errors as JSON with stable codes', async () => {
    expect(await getJson(`/v1/calls/${randomSid('CA')}`, 'wrong-token')).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    expect(await getJson(`/v1/calls/${randomSid('CA')}`)).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect(await getJson('/v1/calls/not-a-sid')).toMatchObject({ status: 400, body: { error: { code: 'bad_request' } } });
    expect(await getJson('/v1/calls?limit=0')).toMatchObject({ status: 400, body: { error: { code: 'bad_request' } } });
  });
});
