/**
 * Crash resume: relay A, a real process, is SIGKILLed mid-call. Twilio (the simulated caller) sees
 * the stream cut and follows the after-stream `<Redirect>`; relay B, behind the same loopback service
 * and on the same Redis, finds a call that did not end and answers with a resume `<Connect><Stream>`.
 * The caller's next stream lands on B, which adopts the call and carries on with its context: the
 * earlier turns and the booking re-created, no second greeting, the booking not run again. Also with
 * A killed while still in the service's rotation: its refused connects go to B, as through an ingress.
 */
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { randomSid, type CallReport } from '../../src/sim/sim-caller.js';
import { startTestDeployment, type TestDeployment } from '../helpers/deployment.js';
import { killProcess, startRelayProcess, type ProcessRelay } from '../helpers/process-relay.js';
import { metricValue, scrape, startTestRelay } from '../helpers/relay.js';

let d: TestDeployment;
/** Relay A: a real process on the shared Redis, behind the service, as killable as a pod. */
let a: ProcessRelay | undefined;
let b: Relay;

beforeAll(async () => {
  d = await startTestDeployment();
  a = await startRelayProcess(d.relayEnv());
  b = await startTestRelay(d.relayEnv(), { pod: 'pod-b' });
}, 40_000);
afterAll(async () => {
  if (a) await killProcess(a.child);
  await b.close();
  await d.close();
});

/**
 * A call through the service that starts on A; after turn `killAfterTurn` the service routes to
 * `routeAfter` and A is SIGKILLed. Resolves once the call is over and A is gone.
 */
async function callKillingA(callSid: string, says: string[], killAfterTurn: number, routeAfter: string[]): Promise<CallReport> {
  const dead = a!;
  await d.routeTo(dead.url);
  let killed: Promise<void> | undefined;
  const report = await d.placeCall({
    callSid,
    script: { turns: says.map((say) => ({ say })), hangupAfterMs: 300, maxCallMs: 40_000, replyTimeoutMs: 8000 },
    hooks: {
      onTurn: (i) => {
        if (i === killAfterTurn) killed = d.routeTo(...routeAfter).then(() => killProcess(dead.child));
      },
    },
  });
  await killed;
  return report;
}

describe('a call whose pod dies', () => {
  it('resumes on a ready pod through the after-stream redirect, with its context', async () => {
    const callSid = randomSid('CA');
    // After the booking's answer: B takes new connections, A dies (no drain, no end, no goodbye).
    const report = await callKillingA(callSid, ['Hello, my kitchen sink is leaking', 'Please book me in for 2030-01-07T09:00', 'Thanks, what happens next?'], 1, [b.url]);
    expect(report.errors).toEqual([]);
    expect(report.legs.map((l) => [l.via, l.end])).toEqual([
      ['webhook', 'abnormal'],
      ['redirect', 'caller-hangup'],
    ]);
    expect(report.turns.map((t) => t.said)).toEqual(['Hello, my kitchen sink is leaking', 'Please book me in for 2030-01-07T09:00', 'Thanks, what happens next?']);
    expect(report.turns[2]?.heard).toBe('You said: Thanks, what happens next. Anything else?');

    // B's model session: the conversation and the booking re-created, no greeting asked for.
    const s = b.sim!.sessions[0]!;
    const items = s.received.filter((e) => e.type === 'conversation.item.create').map((e) => e['item'] as Record<string, unknown>);
    expect(items.filter((i) => i['type'] === 'function_call')).toMatchObject([{ name: 'book_appointment' }]);
    expect(items.filter((i) => i['type'] === 'function_call_output')).toHaveLength(1);
    expect(JSON.stringify(items)).toContain('Hello, my kitchen sink is leaking');
    expect(s.received.some((e) => e.type === 'response.create' && JSON.stringify(e).includes('Greet the caller'))).toBe(false);
    expect(s.errors).toEqual([]);

    const rec = await b.store.getCall(callSid);
    expect(rec).toMatchObject({ phase: 'ended', outcome: 'caller_hung_up', pod: 'pod-b', pods: [hostname(), 'pod-b'] });
    expect(rec?.tools.map((t) => t.name)).toEqual(['book_appointment']);
    expect(rec?.migrations).toMatchObject([{ from: hostname(), to: 'pod-b', reason: 'crash' }]);
    expect(rec?.migrations[0]?.gapMs).toBeLessThan(3000);
    const m = await scrape(b);
    expect(metricValue(m, 'switchboard_tool_call_seconds_count', { tool: 'book_appointment' })).toBe(0);
    expect(metricValue(m, 'switchboard_call_migrations_total', { reason: 'crash', outcome: 'resumed' })).toBe(1);
    expect(metricValue(m, 'switchboard_migration_gap_seconds_count', { reason: 'crash' })).toBe(1);
  }, 60_000);

  it('resumes when the dead pod is still in the service\'s rotation (killed between two readiness polls)', async () => {
    // A fresh A: the first test killed it. The call starts on A; then B joins the rotation and A dies
    // without leaving it, so the redirect or the resume stream may be sent to A's closed port until
    // the next poll, which an ingress answers by trying the next ready pod.
    a = await startRelayProcess(d.relayEnv());
    const callSid = randomSid('CA');
    const report = await callKillingA(callSid, ['Hello, my kitchen sink is leaking', 'Thanks, what happens next?'], 0, [a.url, b.url]);
    expect(report.errors).toEqual([]);
    // What the redirect answered when it did not resume the call (a failed fetch, an apology).
    expect(report.afterStream).toBeUndefined();
    expect(report.legs.map((l) => [l.via, l.end])).toEqual([
      ['webhook', 'abnormal'],
      ['redirect', 'caller-hangup'],
    ]);
    expect(report.turns[1]?.heard).toBe('You said: Thanks, what happens next. Anything else?');
    expect(await b.store.getCall(callSid)).toMatchObject({ outcome: 'caller_hung_up', pod: 'pod-b' });
  }, 60_000);
});
