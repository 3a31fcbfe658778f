/**
 * The seam between a call and the business tools: the call's tool dispatch (src/call/tool-dispatch.ts)
 * hands every model function call to a
 * ToolRunner and relays the result; tools never see sockets. Failures become results, not throws.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { ToolDefinition } from '../model/index.js';
import type { CallStore } from '../store/index.js';
import type { Tenant } from '../tenants/index.js';
import type { CallControl } from '../twilio/call-control.js';

/** What the call must do once the model has spoken the tool's result. */
export type CallEffect =
  | { kind: 'end_call'; reason: string }
  | { kind: 'transfer'; to: string; reason: 'emergency' | 'caller-asked' };

/**
 * `rejected`: the tool worked and the business said no (slot taken, nobody to transfer to), so the
 * model should offer an alternative; `error`/`timeout`: the tool itself failed and may be retried.
 */
export type ToolOutcome = 'ok' | 'rejected' | 'invalid_arguments' | 'error' | 'timeout' | 'unknown_tool';

export interface ToolResult {
  /** JSON text given to the model as function_call_output.output. */
  output: string;
  outcome: ToolOutcome;
  effect?: CallEffect;
}

export interface ToolContext {
  callSid: string;
  tenant: Tenant;
  /** The model's call_id: the idempotency key of this invocation. */
  callId: string;
  log: Logger;
  signal: AbortSignal;
  /** W3C traceparent of the tool's span, for outgoing requests (tenant webhook tools). */
  traceparent?: string;
  /**
   * Called just before a tool moves the call elsewhere through Twilio's REST API: Twilio then stops
   * the media stream, possibly before the tool returns, and the call must count as `transferred`.
   */
  handingOff?(effect: CallEffect): void;
}

export interface ToolRunner {
  /** The tools offered to the model for this tenant. */
  definitions(tenant: Tenant): ToolDefinition[];
  /** Run one call. Never rejects: bad arguments and failures come back as results. */
  run(ctx: ToolContext, name: string, argumentsJson: string): Promise<ToolResult>;
}

export function toolError(outcome: Exclude<ToolOutcome, 'ok'>, message: string): ToolResult {
  return { outcome, output: JSON.stringify({ ok: false, error: message }) };
}

/** A business "no" the model should relay and work around (not a failure). */
export function toolRejected(message: string, extra: Record<string, unknown> = {}): ToolResult {
  return { outcome: 'rejected', output: JSON.stringify({ ok: false, error: message, ...extra }) };
}

/** A successful result: `{ ok: true, ...value }`. */
export function toolOk(value: Record<string, unknown>, effect?: CallEffect): ToolResult {
  const r: ToolResult = { outcome: 'ok', output: JSON.stringify({ ok: true, ...value }) };
  if (effect) r.effect = effect;
  return r;
}

/** What the built-in tools need besides the call: shared state, Twilio call control, time. */
export interface ToolDeps {
  store: CallStore;
  clock: Clock;
  /** Absent in dev (no Twilio account): transfers then happen through the after-stream redirect only. */
  callControl?: CallControl;
}
