/**
 * Redis faults under a live call on a real relay wired from REDIS_URL: killed, restarted empty,
 * frozen (commands time out), and down while a new call arrives. What the caller hears, what
 * /readyz says, and what Redis holds afterwards (read through a fresh connection, as another pod would).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallReport, type CallScript } from '../../src/sim/sim-caller.js';
import { RedisCallStore } from '../../src/store/index.js';
import { demo, eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

const ADMIN_TOKEN = 'admin-token-for-redis-faults-0123';

let redis: RedisServer;
let relay: Relay;
let reader: RedisCallStore | undefined;

// A fresh Redis and relay per test: a restart without persistence also empties the tenant
// registry, which the pods do not re-seed today (pending-redis-restart-tenants.test.ts).
beforeEach(async () => {
  redis = await startRedisServer();
  relay = await startTestRelay({ REDIS_URL: redis.url, ADMIN_TOKEN });
});
afterEach(async () => {
  await reader?.close();
  reader = undefined;
  await relay.close();
  await redis.stop();
});

async function readyz(): Promise<number> {
  return (await fetch(`${relay.url}/readyz`)).status;
}

type Item = { type?: string; output?: string };

const script = (slot: string): CallScript => ({
  turns: [
    { say: `call tool book_appointment {"service":"leak_repair","slot":"${slot}","customerName":"Ada Lovelace","customerPhone":"+14155550123"}` },
    { say: 'call tool quote_price {"service":"drain_cleaning"}' },
    { say: 'Are you still there' },
    { say: 'call tool end_call {"reason":"done"}' },
  ],
  maxCallMs: 40_000,
  hangupAfterMs: 10_000,
  replyTimeoutMs: 8000,
});

/** The four turns were all answered: the booking confirmed, the quote given, the echo heard, goodbye. */
function expectCallWentOn(report: CallReport): string {
  expect(report.stage).toBe('connected');
  expect(report.errors).toEqual([]);
  expect(report.turns).toHaveLength(4);
  const [book, quote, still, bye] = report.turns;
  expect(book!.heard).toMatch(/^Tool book_appointment answered: \{"ok":true/);
  expect(quote!.heard).toMatch(/^Tool quote_price answered: \{"ok":true/);
  expect(still!.heard).toBe('You said: Are you still there. Anything else?');
  expect(bye!.heard).toBe('Goodbye, have a good day.');
  expect(report.endedBy).toBe('relay');
  const id = /BK-[0-9A-F]{8}/.exec(book!.heard)?.[0];
  expect(id).toBeDefined();
  return id!;
}

/** Everything acknowledged on the call is in Redis, read by a fresh connection (another pod's view). */
async function expectAllKept(callSid: string, confirmationId: string, slot: string): Promise<void> {
  reader = RedisCallStore.connect(redis.url);
  const r = reader;
  await eventually(async () => (await r.getCall(callSid))?.phase === 'ended', 15_000, 'the ended record rewritten to Redis');
  const rec = (await r.getCall(callSid))!;
  expect(rec).toMatchObject({ callSid, tenantId: 'demo', phase: 'ended', outcome: 'ended_by_assistant' });
  expect(rec.tools.map((t) => [t.name, t.outcome])).toEqual([
    ['book_appointment', 'ok'],
    ['quote_price', 'ok'],
    ['end_call', 'ok'],
  ]);
  const booking = rec.tools[0]!;
  expect(booking.output).toContain(confirmationId);
  // The idempotency record (what a replayed call_id is answered with) and the slot claim survive too.
  expect((await r.getToolResult(callSid, booking.callId))?.output).toContain(confirmationId);
  expect(await r.redis.get(`t:demo:claim:slot:${slot}`)).toBe(`${callSid}:${booking.callId}`);
  const said = rec.transcript.filter((t) => t.role === 'caller').map((t) => t.text);
  expect(said).toHaveLength(4);
  expect(said[2]).toBe('Are you still there');
  expect((await r.listActive()).map((c) => c.callSid)).not.toContain(callSid);
}

describe('Redis faults under a live call', () => {
  it('killed mid-call and restarted empty: the caller keeps hearing replies, /readyz goes 503 then 200, nothing acknowledged is lost', async () => {
    const slot = '2030-01-07T09:00';
    const callSid = randomSid('CA');
    const sessionIndex = relay.sim!.sessions.length;
    const call = placeCall({ baseUrl: relay.url, ...demo, callSid, from: '+14155550123', script: script(slot) });
    // The booking was confirmed to the model (acknowledged): now Redis dies.
    await relay.sim!.waitForEvent(
      await relay.sim!.waitForSession((s) => relay.sim!.sessions.indexOf(s) === sessionIndex, 10_000),
      (e) => e.type === 'conversation.item.create' && ((e['item'] as Item).output ?? '').includes('BK-'),
      15_000,
    );
    await redis.kill();
    await eventually(async () => (await readyz()) === 503, 5000, '/readyz 503 with Redis dead');
    // The caller goes on asking: the quote is answered while Redis is gone.
    const s = relay.sim!.sessions[sessionIndex]!;
    await relay.sim!.waitForEvent(s, (e) => e.type === 'conversation.item.create' && ((e['item'] as Item).output ?? '').includes('"currency"'), 15_000);
    expect(await readyz()).toBe(503);
    await redis.restart();
    await eventually(async () => (await readyz()) === 200, 10_000, '/readyz 200 after Redis came back');

    const report = await call;
    const confirmationId = expectCallWentOn(report);
    await expectAllKept(callSid, confirmationId, slot);
  });

  it('frozen (SIGSTOP) mid-call: commands time out instead of hanging the call, /readyz 503, after resume everything is written', async () => {
    const slot = '2030-01-07T11:00';
    const callSid = randomSid('CA');
    const sessionIndex = relay.sim!.sessions.length;
    const call = placeCall({ baseUrl: relay.url, ...demo, callSid, from: '+14155550123', script: script(slot) });
    const s = await relay.sim!.waitForSession((x) => relay.sim!.sessions.indexOf(x) === sessionIndex, 10_000);
    await relay.sim!.waitForEvent(s, (e) => e.type === 'conversation.item.create' && ((e['item'] as Item).output ?? '').includes('BK-'), 15_000);
    redis.pause();
    try {
      await eventually(async () => (await readyz()) === 503, 5000, '/readyz 503 with Redis frozen');
      await relay.sim!.waitForEvent(s, (e) => e.type === 'conversation.item.create' && ((e['item'] as Item).output ?? '').includes('"currency"'), 15_000);
      expect(await readyz()).toBe(503);
    } finally {
      redis.resume();
    }
    await eventually(async () => (await readyz()) === 200, 10_000, '/readyz 200 after resume');
    const report = await call;
    const confirmationId = expectCallWentOn(report);
    await expectAllKept(callSid, confirmationId, slot);
  });

  it('a new call while Redis is down: the stream is refused (1011) before the model is reached, the webhook still answers', async () => {
    const before = relay.sim!.sessions.length;
    await redis.kill();
    try {
      await eventually(async () => (await readyz()) === 503, 5000, '/readyz 503');
      const report = await placeCall({
        baseUrl: relay.url,
        ...demo,
        script: { turns: [{ say: 'Hello' }], maxCallMs: 10_000, hangupAfterMs: 500, replyTimeoutMs: 3000 },
      });
      // The one-time stream token cannot be consumed without Redis (it is what stops replays on
      // every pod), so the stream is refused and Twilio runs the fallback after </Connect>.
      expect(report.webhookStatus).toBe(200);
      expect(report.stage).toBe('connected');
      expect(report.closeCode).toBe(1011);
      expect(report.twiml?.kind === 'stream' ? report.twiml.after.length : 0).toBeGreaterThan(0);
      expect(relay.sim!.sessions.length).toBe(before);
    } finally {
      await redis.restart();
    }
    await eventually(async () => (await readyz()) === 200, 10_000, '/readyz 200 again');
    const m = await scrape(relay);
    expect(metricValue(m, 'switchboard_active_calls')).toBe(0);
  });
});

