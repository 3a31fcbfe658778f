/**
 * Drain by migration inside one test process: two real relays on one real Redis behind the
 * loopback service, the fake Twilio REST API as TWILIO_API_BASE_URL, the simulated caller. Draining
 * relay A moves its call to B through a call update; a refused update (bad credentials, a 429 storm)
 * leaves the call on A, which then waits for it as in `wait` mode. (The process-level SIGTERM and
 * SIGKILL runs are in test/e2e/migration-processes.test.ts.)
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseTwiml } from '../../src/sim/portable/twilio-http.js';
import type { Relay } from '../../src/server/index.js';
import { startFakeTwilioApi, type FakeTwilioApi } from '../../src/sim/fake-twilio-api.js';
import { startLoopbackService, type LoopbackService } from '../../src/sim/loopback-service.js';
import { placeCall, randomSid, type CallScript } from '../../src/sim/sim-caller.js';
import { RedisCallStore } from '../../src/store/index.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { demo, eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';

let redis: RedisServer;
let svc: LoopbackService;
let api: FakeTwilioApi;
let relays: Relay[] = [];
let reader: RedisCallStore;

beforeAll(async () => {
  redis = await startRedisServer();
  svc = await startLoopbackService({ pollMs: 1000 });
  reader = RedisCallStore.connect(redis.url);
});
afterAll(async () => {
  await reader.close();
  await svc.close();
  await redis.stop();
});
afterEach(async () => {
  await Promise.all(relays.map((r) => r.close()));
  for (const r of relays) svc.remove(r.url);
  relays = [];
  await api.close();
});

/** Relays A and B behind the service, moving calls through this fake Twilio API. */
async function setUp(apiOpts: Parameters<typeof startFakeTwilioApi>[0], env: Record<string, string> = {}): Promise<[Relay, Relay]> {
  api = await startFakeTwilioApi(apiOpts);
  const common = {
    PUBLIC_URL: svc.url,
    REDIS_URL: redis.url,
    DRAIN_MODE: 'migrate',
    TWILIO_API_BASE_URL: api.url,
    // The service polls /readyz every second (slow answers on a busy machine): let it take A out before a call moves.
    MIGRATION_START_DELAY_MS: '2500',
    ...env,
  };
  relays = [await startTestRelay(common, { pod: 'relay-a' }), await startTestRelay(common, { pod: 'relay-b' })];
  const [a, b] = relays as [Relay, Relay];
  svc.add(a.url);
  await svc.waitFor((bs) => bs.length === 1 && bs[0]!.ready, 5000, 'A ready');
  return [a, b];
}

const script: CallScript = {
  turns: [{ say: 'Hi, do you serve postcode 10001?' }, { say: 'What does drain cleaning cost?' }, { say: 'Can you book me in?' }],
  hangupAfterMs: 300,
  maxCallMs: 40_000,
  replyTimeoutMs: 6000,
};

describe('drain by migration', () => {
  it('draining A moves its call to B with a resume token: A is empty at once, the call record stays live', async () => {
    const [a, b] = await setUp({ accounts: { [demo.accountSid]: demo.authToken } });
    const callSid = randomSid('CA');
    let drained: Promise<{ remaining: number }> | undefined;
    let drainStarted = 0;
    const report = await placeCall({
      baseUrl: svc.url,
      ...demo,
      callSid,
      twilioApi: api,
      script,
      hooks: {
        onTurn: (i) => {
          if (i !== 0 || drained) return;
          // B joins the service as A starts draining (a rollout's new pod).
          svc.add(b.url);
          drainStarted = Date.now();
          drained = a.drain(30_000);
        },
      },
    });
    expect(report.errors, JSON.stringify(report.legs)).toEqual([]);
    expect(report.legs.map((l) => [l.via, l.end])).toEqual([
      ['webhook', 'stop-by-twilio-update'],
      ['update', 'caller-hangup'],
    ]);
    expect(report.turns.map((t) => t.said)).toEqual(script.turns.map((t) => t.say));
    for (const t of report.turns) expect(t.heard).not.toBe('');
    // A let go as soon as the stream moved: nothing left to wait for.
    expect(await drained).toEqual({ remaining: 0 });
    expect(a.activeCalls()).toBe(0);
    // Stop on A -> start on B: the gap the caller hears (with no preStop sleep, the start delay comes first).
    expect(report.legs[1]!.gapMs).not.toBeNull();
    expect(report.legs[1]!.gapMs!).toBeLessThan(3000);
    expect(Date.now() - drainStarted).toBeGreaterThan(0);
    // One call update, for this call, to the service's media URL with a resume token.
    const updates = api.requests.filter((r) => r.callSid === callSid);
    expect(updates.map((r) => r.status)).toEqual([200]);
    const t = parseTwiml(updates[0]!.form['Twiml']!);
    expect(t.kind).toBe('stream');
    if (t.kind === 'stream') {
      expect(t.streamUrl).toBe(`${svc.url.replace('http', 'ws')}/twilio/media`);
      expect(t.parameters['resume']).toMatch(/^r1\./);
      expect(t.parameters['tenant']).toBe('demo');
      expect(t.parameters['to']).toBe(demo.to);
    }
    const ma = await scrape(a);
    expect(metricValue(ma, 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'migrated' })).toBe(1);
    // A counted no ending: the call did not end there.
    for (const outcome of ['caller_hung_up', 'drained']) expect(metricValue(ma, 'switchboard_calls_total', { outcome })).toBe(0);
    // The call ended on B, once.
    await eventually(async () => (await reader.getCall(callSid))?.outcome === 'caller_hung_up', 5000, 'ended on B');
    const mb = await scrape(b);
    expect(metricValue(mb, 'switchboard_calls_total', { outcome: 'caller_hung_up' })).toBe(1);
    expect(metricValue(mb, 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'resumed' })).toBe(1);
    // B's model session got the conversation so far and was not asked to greet again.
    const session = b.sim!.sessions[0]!;
    const sent = session.received.map((e) => JSON.stringify(e));
    expect(sent.some((e) => e.includes('"conversation.item.create"') && e.includes('check_service_area'))).toBe(true);
    expect(sent.some((e) => e.includes('"response.create"') && e.includes('Greet the caller'))).toBe(false);
    // Each tool ran once across both pods; the record lists both pods and the move.
    const rec = (await reader.getCall(callSid))!;
    const runs = (name: string): number => rec.tools.filter((t) => t.name === name).length;
    expect(runs('check_service_area')).toBe(1);
    expect(runs('quote_price')).toBe(1);
    expect(metricValue(mb, 'switchboard_tool_call_seconds_count', { tool: 'check_service_area' })).toBe(0);
    expect(rec.pods).toEqual(['relay-a', 'relay-b']);
    expect(rec.migrations).toMatchObject([{ from: 'relay-a', to: 'relay-b', reason: 'drain' }]);
  });

  it('a refused update (bad credentials) leaves the call on A, which waits for it to end', async () => {
    const [a, b] = await setUp({ accounts: { [demo.accountSid]: 'not-the-tenant-token' } });
    const callSid = randomSid('CA');
    let drained: Promise<{ remaining: number }> | undefined;
    const report = await placeCall({
      baseUrl: svc.url,
      ...demo,
      callSid,
      twilioApi: api,
      script,
      hooks: {
        onTurn: (i) => {
          if (i !== 0 || drained) return;
          svc.add(b.url);
          drained = a.drain(30_000);
        },
      },
    });
    expect(report.errors).toEqual([]);
    expect(report.legs.map((l) => l.end)).toEqual(['caller-hangup']);
    expect(report.turns.map((t) => t.said)).toEqual(script.turns.map((t) => t.say));
    expect(await drained).toEqual({ remaining: 0 });
    expect(api.requests.filter((r) => r.callSid === callSid).map((r) => r.status)).toEqual([401]);
    const ma = await scrape(a);
    expect(metricValue(ma, 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'refused' })).toBe(1);
    expect(metricValue(ma, 'switchboard_calls_total', { outcome: 'caller_hung_up' })).toBe(1);
    await eventually(async () => (await reader.getCall(callSid))?.outcome === 'caller_hung_up', 5000, 'ended on A');
    expect((await reader.getCall(callSid))?.pod).toBe('relay-a');
  });

  it('a 429 storm: bounded attempts honouring Retry-After, then the call stays and drains', async () => {
    const [a, b] = await setUp({ accounts: { [demo.accountSid]: demo.authToken } }, { MIGRATION_MAX_ATTEMPTS: '2' });
    api.rateLimit(1000, 1);
    const callSid = randomSid('CA');
    let drained: Promise<{ remaining: number }> | undefined;
    const report = await placeCall({
      baseUrl: svc.url,
      ...demo,
      callSid,
      twilioApi: api,
      // Long enough to outlive the start delay, both attempts and the Retry-After pause between them.
      script: { ...script, turns: [...script.turns, ...script.turns, ...script.turns] },
      hooks: {
        onTurn: (i) => {
          if (i !== 0 || drained) return;
          svc.add(b.url);
          drained = a.drain(30_000);
        },
      },
    });
    expect(report.errors).toEqual([]);
    expect(report.legs.map((l) => l.end)).toEqual(['caller-hangup']);
    expect(await drained).toEqual({ remaining: 0 });
    const tries = api.requests.filter((r) => r.callSid === callSid);
    expect(tries.map((r) => r.status)).toEqual([429, 429]);
    // The second attempt waited out Retry-After: 1 s (jittered to no less than 0.75 s).
    expect(tries[1]!.receivedAt - tries[0]!.answeredAt).toBeGreaterThanOrEqual(700);
    await eventually(
      async () => metricValue(await scrape(a), 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'rate_limited' }) === 1,
      5000,
      'counted rate_limited',
    );
  });
});
