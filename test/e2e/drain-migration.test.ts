/**
 * Drain by migration inside one test process: two real relays on one real Redis behind the
 * loopback service, the fake Twilio REST API as TWILIO_API_BASE_URL, the simulated caller. Draining
 * relay A moves its call to B through a call update; a refused update (bad credentials, a 429 storm)
 * leaves the call on A, which then waits for it as in `wait` mode. (The process-level SIGTERM and
 * SIGKILL runs are in test/e2e/migration-processes.test.ts.)
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import type { FakeTwilioApiOptions } from '../helpers/fake-twilio-api.js';
import { randomSid, type CallReport, type CallScript } from '../../src/sim/sim-caller.js';
import { parseTwiml } from '../../src/sim/portable/twilio-http.js';
import { startTestDeployment, type TestDeployment } from '../helpers/deployment.js';
import { demo, eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';

let d: TestDeployment;
let relays: Relay[] = [];

beforeAll(async () => {
  d = await startTestDeployment();
});
afterAll(async () => {
  await d.close();
});
afterEach(async () => {
  await Promise.all(relays.map((r) => r.close()));
  for (const r of relays) d.svc.remove(r.url);
  relays = [];
});

/** Relays A and B, A alone behind the service, moving calls through a fake Twilio API of these options. */
async function setUp(apiOpts: FakeTwilioApiOptions, env: Record<string, string> = {}): Promise<[Relay, Relay]> {
  await d.startApi(apiOpts);
  const common = {
    ...d.relayEnv(),
    DRAIN_MODE: 'migrate',
    // The service polls /readyz every second (slow answers on a busy machine): let it take A out before a call moves.
    MIGRATION_START_DELAY_MS: '2500',
    ...env,
  };
  relays = [await startTestRelay(common, { pod: 'relay-a' }), await startTestRelay(common, { pod: 'relay-b' })];
  const [a, b] = relays as [Relay, Relay];
  await d.routeTo(a.url);
  return [a, b];
}

const script: CallScript = {
  turns: [{ say: 'Hi, do you serve postcode 10001?' }, { say: 'What does drain cleaning cost?' }, { say: 'Can you book me in?' }],
  hangupAfterMs: 300,
  maxCallMs: 40_000,
  replyTimeoutMs: 6000,
};

/**
 * A call through the service; once its first turn is answered, B joins the service as A starts
 * draining (a rollout's new pod). Resolves with the call's report and what A's drain resolved to.
 */
async function callDrainingA(a: Relay, b: Relay, callSid: string, s = script): Promise<{ report: CallReport; drained: { remaining: number } | undefined }> {
  let drained: Promise<{ remaining: number }> | undefined;
  const report = await d.placeCall({
    callSid,
    script: s,
    hooks: {
      onTurn: (i) => {
        if (i !== 0 || drained) return;
        d.svc.add(b.url);
        drained = a.drain(30_000);
      },
    },
  });
  return { report, drained: await drained };
}

describe('drain by migration', () => {
  it('draining A moves its call to B with a resume token: A is empty at once, the call record stays live', async () => {
    const [a, b] = await setUp({ accounts: { [demo.accountSid]: demo.authToken } });
    const callSid = randomSid('CA');
    const { report, drained } = await callDrainingA(a, b, callSid);
    expect(report.errors, JSON.stringify(report.legs)).toEqual([]);
    expect(report.legs.map((l) => [l.via, l.end])).toEqual([
      ['webhook', 'stop-by-twilio-update'],
      ['update', 'caller-hangup'],
    ]);
    expect(report.turns.map((t) => t.said)).toEqual(script.turns.map((t) => t.say));
    for (const t of report.turns) expect(t.heard).not.toBe('');
    // A let go as soon as the stream moved: nothing left to wait for.
    expect(drained).toEqual({ remaining: 0 });
    expect(a.activeCalls()).toBe(0);
    // Stop on A -> start on B: the gap the caller hears (with no preStop sleep, the start delay comes first).
    expect(report.legs[1]!.gapMs).not.toBeNull();
    expect(report.legs[1]!.gapMs!).toBeLessThan(3000);
    // One call update, for this call, to the service's media URL with a resume token.
    const updates = d.api.requests.filter((r) => r.callSid === callSid);
    expect(updates.map((r) => r.status)).toEqual([200]);
    const t = parseTwiml(updates[0]!.form['Twiml']!);
    expect(t.kind).toBe('stream');
    if (t.kind === 'stream') {
      expect(t.streamUrl).toBe(`${d.svc.url.replace('http', 'ws')}/twilio/media`);
      expect(t.parameters['resume']).toMatch(/^r1\./);
      expect(t.parameters['tenant']).toBe('demo');
      expect(t.parameters['to']).toBe(demo.to);
    }
    const ma = await scrape(a);
    expect(metricValue(ma, 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'migrated' })).toBe(1);
    // A counted no ending: the call did not end there.
    for (const outcome of ['caller_hung_up', 'drained']) expect(metricValue(ma, 'switchboard_calls_total', { outcome })).toBe(0);
    // The call ended on B, once.
    await eventually(async () => (await d.calls.getCall(callSid))?.outcome === 'caller_hung_up', 5000, 'ended on B');
    const mb = await scrape(b);
    expect(metricValue(mb, 'switchboard_calls_total', { outcome: 'caller_hung_up' })).toBe(1);
    expect(metricValue(mb, 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'resumed' })).toBe(1);
    // B's model session got the conversation so far and was not asked to greet again.
    const session = b.sim!.sessions[0]!;
    const sent = session.received.map((e) => JSON.stringify(e));
    expect(sent.some((e) => e.includes('"conversation.item.create"') && e.includes('check_service_area'))).toBe(true);
    expect(sent.some((e) => e.includes('"response.create"') && e.includes('Greet the caller'))).toBe(false);
    // Each tool ran once across both pods; the record lists both pods and the move.
    const rec = (await d.calls.getCall(callSid))!;
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
    const { report, drained } = await callDrainingA(a, b, callSid);
    expect(report.errors).toEqual([]);
    expect(report.legs.map((l) => l.end)).toEqual(['caller-hangup']);
    expect(report.turns.map((t) => t.said)).toEqual(script.turns.map((t) => t.say));
    expect(drained).toEqual({ remaining: 0 });
    expect(d.api.requests.filter((r) => r.callSid === callSid).map((r) => r.status)).toEqual([401]);
    const ma = await scrape(a);
    expect(metricValue(ma, 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'refused' })).toBe(1);
    expect(metricValue(ma, 'switchboard_calls_total', { outcome: 'caller_hung_up' })).toBe(1);
    await eventually(async () => (await d.calls.getCall(callSid))?.outcome === 'caller_hung_up', 5000, 'ended on A');
    expect((await d.calls.getCall(callSid))?.pod).toBe('relay-a');
  });

  it('a 429 storm: bounded attempts honouring Retry-After, then the call stays and drains', async () => {
    const [a, b] = await setUp({ accounts: { [demo.accountSid]: demo.authToken } }, { MIGRATION_MAX_ATTEMPTS: '2' });
    d.api.rateLimit(1000, 1);
    const callSid = randomSid('CA');
    // Long enough to outlive the start delay, both attempts and the Retry-After pause between them.
    const { report, drained } = await callDrainingA(a, b, callSid, { ...script, turns: [...script.turns, ...script.turns, ...script.turns] });
    expect(report.errors).toEqual([]);
    expect(report.legs.map((l) => l.end)).toEqual(['caller-hangup']);
    expect(drained).toEqual({ remaining: 0 });
    const tries = d.api.requests.filter((r) => r.callSid === callSid);
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
