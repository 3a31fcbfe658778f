/**
 * Span names, attribute keys and helpers for call tracing: a span per call, with child spans for the
 * upstream connect, each turn and each tool call — never per frame (a span costs ~1 µs).
 * The SDK (exporter) is started by startTracing(); without it the OpenTelemetry API is a cheap no-op.
 */
import { context, propagation, trace, SpanStatusCode, type Span, type Tracer } from '@opentelemetry/api';

export const SPAN = {
  call: 'switchboard.call',
  connect: 'switchboard.model.connect',
  turn: 'switchboard.turn',
  tool: 'switchboard.tool',
} as const;

export const ATTR = {
  callSid: 'switchboard.call_sid',
  tenant: 'switchboard.tenant',
  provider: 'switchboard.model.provider',
  outcome: 'switchboard.call.outcome',
  tool: 'switchboard.tool.name',
  toolOutcome: 'switchboard.tool.outcome',
  turnIndex: 'switchboard.turn.index',
  turnLatencyMs: 'switchboard.turn.latency_ms',
  bargeIn: 'switchboard.turn.barge_in',
  /** A moved call's new leg: why it moved and the pod it came from. */
  migrationReason: 'switchboard.migration.reason',
  migrationFrom: 'switchboard.migration.from',
} as const;

export function tracer(): Tracer {
  return trace.getTracer('switchboard');
}

/** Start a child span of `parent` (or a root span). */
export function childSpan(name: string, parent: Span | undefined, attributes: Record<string, string | number | boolean> = {}): Span {
  const ctx = parent ? trace.setSpan(context.active(), parent) : context.active();
  return tracer().startSpan(name, { attributes }, ctx);
}

export function endSpan(span: Span | undefined, error?: string): void {
  if (!span) return;
  if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  span.end();
}

/** Link `span` to the span a W3C traceparent names (a moved call's earlier leg, on another pod). */
export function linkSpan(span: Span | undefined, traceparent: string | undefined): void {
  const m = traceparent === undefined ? null : /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(traceparent);
  if (!span || !m) return;
  const context = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true };
  if (trace.isSpanContextValid(context)) span.addLink({ context });
}

/** W3C traceparent for `span`, for outgoing requests (tenant webhook tools). */
export function traceparentOf(span: Span | undefined): string | undefined {
  if (!span) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  if (carrier['traceparent']) return carrier['traceparent'];
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-0${(sc.traceFlags & 1).toString(16)}`;
}

/** Log bindings tying a call's log lines to its trace. Empty when tracing is off. */
export function traceBindings(span: Span | undefined): Record<string, string> {
  if (!span) return {};
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId };
}
