/**
 * Tracing through a real relay: the span tree a simulated call leaves in an in-memory exporter, and
 * the OTLP/HTTP exporter posting to a collector stand-in on 127.0.0.1. Span placement is the bridge's.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { startTracing, type Tracing } from '../../src/telemetry/otel.js';
import { ATTR, childSpan, endSpan, SPAN, traceBindings, traceparentOf } from '../../src/telemetry/index.js';
import { demo, eventually, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
let tracing: Tracing | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
  await tracing?.shutdown();
  tracing = undefined;
});

const idOf = (s: ReadableSpan): string => s.spanContext().spanId;
const parentOf = (s: ReadableSpan): string | undefined => s.parentSpanContext?.spanId;

describe('tracing a call', () => {
  it('exports one call span with connect, turn and tool children, and no span per frame', async () => {
    const exporter = new InMemorySpanExporter();
    tracing = startTracing({
      serviceName: 'switchboard-test',
      otlpEndpoint: undefined,
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    expect(tracing).toBeDefined();
    relay = await startTestRelay();
    const callSid = randomSid('CA');
    const report = await placeCall({
      baseUrl: relay.url,
      ...demo,
      callSid,
      script: {
        turns: [{ say: 'Hello there, I have a question' }, { say: 'call tool end_call {"reason":"caller is done"}' }],
        maxCallMs: 30_000,
        hangupAfterMs: 10_000,
      },
    });
    expect(report.stage).toBe('connected');
    expect(report.errors).toEqual([]);
    expect(report.turns).toHaveLength(2);

    // The call span ends in the bridge's finish(), after the socket closed: nothing to await there.
    await eventually(() => exporter.getFinishedSpans().some((s) => s.name === SPAN.call), 5000, 'call span exported');
    const spans = exporter.getFinishedSpans();

    const calls = spans.filter((s) => s.name === SPAN.call);
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.parentSpanContext).toBeUndefined();
    expect(call.attributes).toMatchObject({
      [ATTR.callSid]: callSid,
      [ATTR.tenant]: 'demo',
      [ATTR.outcome]: 'ended_by_assistant',
      [ATTR.provider]: 'sim',
    });
    expect(call.resource.attributes['service.name']).toBe('switchboard-test');
    // Every span of the call belongs to its trace.
    const traceId = call.spanContext().traceId;
    expect(spans.every((s) => s.spanContext().traceId === traceId)).toBe(true);

    const connects = spans.filter((s) => s.name === SPAN.connect);
    expect(connects).toHaveLength(1);
    expect(parentOf(connects[0]!)).toBe(idOf(call));
    expect(connects[0]!.attributes[ATTR.provider]).toBe('sim');

    const turns = spans.filter((s) => s.name === SPAN.turn);
    expect(turns.length).toBeGreaterThanOrEqual(2);
    expect(turns.length).toBeLessThanOrEqual(report.turns.length + 1);
    for (const t of turns) expect(parentOf(t)).toBe(idOf(call));
    // Turn indices count the caller's turns (speech stopped): distinct and increasing.
    const indices = turns.map((t) => Number(t.attributes[ATTR.turnIndex]));
    expect(new Set(indices).size).toBe(turns.length);
    expect(turns.some((t) => typeof t.attributes[ATTR.turnLatencyMs] === 'number')).toBe(true);

    // The sim model may also call tools on its own (keyword rules, the tenant's tool set): every
    // tool span hangs under a turn, and the one the caller asked for is there exactly once.
    const tools = spans.filter((s) => s.name === SPAN.tool);
    const turnIds = new Set(turns.map(idOf));
    for (const t of tools) expect(turnIds.has(parentOf(t) ?? ''), `${String(t.attributes[ATTR.tool])} under a turn`).toBe(true);
    const endCalls = tools.filter((t) => t.attributes[ATTR.tool] === 'end_call');
    expect(endCalls).toHaveLength(1);
    const tool = endCalls[0]!;
    expect(tool.attributes[ATTR.toolOutcome]).toBe('ok');
    // The caller asked for it in the last turn.
    const toolTurn = turns.find((t) => idOf(t) === parentOf(tool));
    expect(toolTurn!.attributes[ATTR.turnIndex]).toBe(Math.max(...indices));

    // Spans wrap calls, turns and tools, never frames: hundreds of frames crossed, a handful of spans.
    expect(report.framesSent).toBeGreaterThan(100);
    const known = new Set<string>(Object.values(SPAN));
    expect(spans.filter((s) => !known.has(s.name)).map((s) => s.name)).toEqual([]);
    expect(spans).toHaveLength(2 + turns.length + tools.length);
    expect(turns.length + tools.length).toBeLessThanOrEqual(2 * (report.turns.length + 1));
  });

  it('is off, at no cost, without an endpoint or processors: spans are non-recording', () => {
    expect(startTracing({ serviceName: 'switchboard', otlpEndpoint: undefined })).toBeUndefined();
    const span = childSpan(SPAN.call, undefined, { [ATTR.callSid]: 'CA0' });
    expect(span.isRecording()).toBe(false);
    expect(traceBindings(span)).toEqual({});
    expect(traceparentOf(span)).toBeUndefined();
    endSpan(span);
  });

  it('refuses a second registration while one is running', () => {
    tracing = startTracing({
      serviceName: 'switchboard',
      otlpEndpoint: undefined,
      spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())],
    });
    expect(() =>
      startTracing({ serviceName: 'again', otlpEndpoint: undefined, spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())] }),
    ).toThrow(/already registered/);
  });
});

describe('the OTLP/HTTP exporter', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  it('posts batched spans to <OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces, flushed on shutdown', async () => {
    const requests: { method: string; url: string; type: string; body: string }[] = [];
    let arrived!: () => void;
    const firstRequest = new Promise<void>((r) => (arrived = r));
    server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        requests.push({
          method: req.method ?? '',
          url: req.url ?? '',
          type: String(req.headers['content-type']),
          body: Buffer.concat(chunks).toString('utf8'),
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        arrived();
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;

    // A trailing slash on the base endpoint must not double the path separator.
    const otlp = startTracing({ serviceName: 'switchboard-otlp-test', otlpEndpoint: `http://127.0.0.1:${port}/` });
    expect(otlp).toBeDefined();
    tracing = otlp;
    const call = childSpan(SPAN.call, undefined, { [ATTR.callSid]: 'CA' + '0'.repeat(32), [ATTR.tenant]: 'demo' });
    const turn = childSpan(SPAN.turn, call, { [ATTR.turnIndex]: 1 });
    // With the SDK registered the W3C propagator builds the traceparent webhook tools send.
    const { trace_id: traceId, span_id: spanId } = traceBindings(turn);
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(traceparentOf(turn)).toBe(`00-${traceId}-${spanId}-01`);
    endSpan(turn);
    endSpan(call);
    expect(requests).toEqual([]); // batched: nothing is posted on the call's path

    await otlp!.shutdown();
    tracing = undefined;
    await firstRequest;
    expect(requests.length).toBeGreaterThanOrEqual(1);
    const r = requests[0]!;
    expect(r.method).toBe('POST');
    expect(r.url).toBe('/v1/traces');
    expect(r.type).toContain('application/json');
    const body = requests.map((q) => q.body).join('\n');
    expect(body).toContain(SPAN.call);
    expect(body).toContain(SPAN.turn);
    expect(body).toContain('switchboard-otlp-test');
    expect(body).toContain(traceId!.toLowerCase());
    // Shut down: the API is a no-op again and a new SDK may register.
    expect(trace.getTracer('x').startSpan('after').isRecording()).toBe(false);
  });
});
