/**
 * A live call moved to another pod and resumed there with its context: two real relays on one real
 * Redis behind the loopback service (one PUBLIC_URL, as a Kubernetes Service), the fake Twilio REST
 * API, the simulated caller following Twilio's moves. Relay A drains by migration after two turns and
 * a booking; relay B adopts the call from its resume token, re-creates the conversation in its model
 * session (the earlier turns and the booking's call and result), does not greet again, never runs
 * the booking again, and answers the caller's next turn.
 */
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { callDetailView } from '../../src/server/routes/admin-calls.js';
import { randomSid } from '../../src/sim/sim-caller.js';
import type { SimSession } from '../../src/sim/sim-model.js';
import { startTracing, type Tracing } from '../../src/telemetry/otel.js';
import { ATTR, SPAN } from '../../src/telemetry/index.js';
import { startTestDeployment, type TestDeployment } from '../helpers/deployment.js';
import { eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';

let d: TestDeployment;
let a: Relay;
let b: Relay;
const spans = new InMemorySpanExporter();
let tracing: Tracing | undefined;

beforeAll(async () => {
  tracing = startTracing({ serviceName: 'switchboard-test', otlpEndpoint: undefined, spanProcessors: [new SimpleSpanProcessor(spans)] });
  d = await startTestDeployment();
  const env = { ...d.relayEnv(), DRAIN_MODE: 'migrate' };
  a = await startTestRelay(env, { pod: 'pod-a' });
  b = await startTestRelay(env, { pod: 'pod-b' });
}, 30_000);
afterAll(async () => {
  await Promise.allSettled([a.close(), b.close()]);
  await d.close();
  await tracing?.shutdown();
});

const itemsOf = (s: SimSession, type: string): Record<string, unknown>[] =>
  s.received.filter((e) => e.type === 'conversation.item.create').map((e) => e['item'] as Record<string, unknown>).filter((i) => i['type'] === type);

function texts(items: Record<string, unknown>[]): string[] {
  return items.map((i) => ((i['content'] as { text?: string }[] | undefined) ?? []).map((c) => c.text ?? '').join(''));
}

describe('a call moved by a drain resumes on another pod with its context', () => {
  it('B re-creates the conversation and the booking, does not greet again, does not book again, and answers the next turn', async () => {
    const callSid = randomSid('CA');
    await d.routeTo(a.url);
    let drained: Promise<{ remaining: number }> | undefined;
    const report = await d.placeCall({
      callSid,
      script: {
        turns: [{ say: 'Hello, my kitchen sink is leaking' }, { say: 'Please book me in for 2030-01-07T11:00' }, { say: 'Thank you, what happens next?' }],
        hangupAfterMs: 300,
        maxCallMs: 40_000,
        replyTimeoutMs: 8000,
      },
      hooks: {
        onTurn: (i) => {
          // After the booking's answer: B takes new streams, A drains by migration.
          if (i === 1) drained = d.routeTo(b.url).then(() => a.drain(20_000));
        },
      },
    });
    expect(report.errors).toEqual([]);
    expect(report.legs.map((l) => [l.via, l.end])).toEqual([
      ['webhook', 'stop-by-twilio-update'],
      ['update', 'caller-hangup'],
    ]);
    expect(report.turns.map((t) => t.said)).toEqual([
      'Hello, my kitchen sink is leaking',
      'Please book me in for 2030-01-07T11:00',
      'Thank you, what happens next?',
    ]);
    expect(report.turns[2]?.heard).toBe('You said: Thank you, what happens next. Anything else?');
    expect(await drained).toEqual({ remaining: 0 });

    // B's model session: the earlier turns and the booking re-created as items, no greeting asked for.
    const sessions = b.sim!.sessions;
    expect(sessions).toHaveLength(1);
    const s = sessions[0]!;
    expect(texts(itemsOf(s, 'message'))).toEqual(
      expect.arrayContaining(['Hello, my kitchen sink is leaking', 'Please book me in for 2030-01-07T11:00']),
    );
    const calls = itemsOf(s, 'function_call');
    expect(calls).toMatchObject([{ name: 'book_appointment' }]);
    const outputs = itemsOf(s, 'function_call_output');
    expect(outputs).toHaveLength(1);
    expect(outputs[0]!['call_id']).toBe(calls[0]!['call_id']);
    expect(String(outputs[0]!['output'])).toContain('"ok":true');
    expect(s.errors).toEqual([]);
    const creates = s.received.filter((e) => e.type === 'response.create');
    expect(creates.some((e) => JSON.stringify(e).includes('Greet the caller'))).toBe(false);
    // A greeted once; the booking ran once, on A.
    expect(a.sim!.sessions[0]!.received.filter((e) => JSON.stringify(e).includes('Greet the caller'))).toHaveLength(1);
    const [ma, mb] = [await scrape(a), await scrape(b)];
    expect(metricValue(ma, 'switchboard_tool_call_seconds_count', { tool: 'book_appointment' })).toBe(1);
    expect(metricValue(mb, 'switchboard_tool_call_seconds_count', { tool: 'book_appointment' })).toBe(0);

    // The record: one call over two pods, the move with its gap; ended by the caller on B.
    const rec = await b.store.getCall(callSid);
    expect(rec).toMatchObject({ phase: 'ended', outcome: 'caller_hung_up', pod: 'pod-b', pods: ['pod-a', 'pod-b'] });
    expect(rec?.tools.map((t) => t.name)).toEqual(['book_appointment']);
    expect(rec?.migrations).toHaveLength(1);
    expect(rec?.migrations[0]).toMatchObject({ from: 'pod-a', to: 'pod-b', reason: 'drain' });
    const gapMs = rec?.migrations[0]?.gapMs ?? -1;
    expect(gapMs).toBeGreaterThanOrEqual(0);
    expect(gapMs).toBeLessThan(3000);
    // Two call spans, one per leg: the new leg's links to the old one and says why it moved.
    const legsOf = () => spans.getFinishedSpans().filter((x) => x.name === SPAN.call && x.attributes[ATTR.callSid] === callSid);
    await eventually(() => legsOf().length >= 2, 5000, 'both call spans ended');
    const legs = legsOf();
    expect(legs).toHaveLength(2);
    const [oldLeg, newLeg] = [...legs].sort((x, y) => x.startTime[0] - y.startTime[0] || x.startTime[1] - y.startTime[1]);
    expect(newLeg!.attributes).toMatchObject({ [ATTR.migrationReason]: 'drain', [ATTR.migrationFrom]: 'pod-a' });
    expect(newLeg!.links.map((l) => l.context.spanId)).toEqual([oldLeg!.spanContext().spanId]);
    // GET /v1/calls/{callSid} shows the pods and the move.
    expect(callDetailView(rec!)).toMatchObject({ pods: ['pod-a', 'pod-b'], migrations: [{ from: 'pod-a', to: 'pod-b', reason: 'drain', gapMs }] });
    expect(metricValue(ma, 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'migrated' })).toBe(1);
    expect(metricValue(mb, 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'resumed' })).toBe(1);
    expect(metricValue(mb, 'switchboard_migration_gap_seconds_count', { reason: 'drain' })).toBe(1);
    // Counted as one call, ended once (on B); A counted no outcome for it.
    expect(metricValue(ma, 'switchboard_calls_total', { outcome: 'caller_hung_up' })).toBe(0);
    expect(metricValue(mb, 'switchboard_calls_total', { outcome: 'caller_hung_up' })).toBe(1);
  }, 60_000);
});
