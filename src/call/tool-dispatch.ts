/**
 * The tool calls of one call: each function call the model makes is run, answered on the session
 * that asked (a session since replaced is not told: the new one knows nothing of the call), metered
 * and recorded. Effects (end the call, hand it to a human) are kept in order, every one of them: the
 * bridge acts on them once the response that asked is done and all its tools have answered (the
 * follow-up), or at once when the session that asked is gone (an answered effect stands).
 */
import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { functionCallOutput, type ModelEvent, type RealtimeSocket } from '../model/index.js';
import type { CallStore } from '../store/index.js';
import { maskNumbersInJson } from '../store/call-store.js';
import { ATTR, childSpan, endSpan, SPAN, traceBindings, traceparentOf, type RelayMetrics } from '../telemetry/index.js';
import type { Tenant } from '../tenants/index.js';
import type { CallEffect, ToolRunner } from '../tools/index.js';

interface ResponseTools {
  pending: number;
  done: boolean;
  followUpSent: boolean;
  /** Its session is gone: its tools still running are counted in `ToolDispatch.orphans`. */
  orphaned: boolean;
}

export interface ToolDispatchDeps {
  tools: ToolRunner;
  metrics: RelayMetrics;
  store: CallStore;
  clock: Clock;
  /** A store write whose failure is logged, never awaited. */
  background(p: Promise<unknown>, what: string): void;
  /** The current session's socket (configured or not, as ModelSession.socket); undefined between sessions and after the end. */
  session(): RealtimeSocket | undefined;
  /** A response's tools have all answered and the response is done: ask for the spoken answer. */
  followUp(): void;
  /** A tool of a session since lost answered with an effect (now in the list): the call acts on it at once. */
  stranded(): void;
}

/** The call the tools run for. */
export interface ToolCall {
  callSid: string;
  tenant: Tenant;
  log: Logger;
  /** Aborted when the call ends. */
  signal: AbortSignal;
  parentSpan: Span | undefined;
}

export class ToolDispatch {
  /** Function calls run on this call. */
  calls = 0;
  /** A tool asked Twilio (REST) to move the call: the stream's end that follows is that transfer. */
  private restHandOff = false;
  /** Effects of answered tools, in order, not yet acted on. */
  private readonly effects: CallEffect[] = [];
  private readonly byResponse = new Map<string, ResponseTools>();
  /** Tools still running for sessions since lost. */
  private orphans = 0;

  constructor(private readonly deps: ToolDispatchDeps) {}

  /** A tool of some response is still running (also for a session since lost) or its response not yet done. */
  get running(): boolean {
    return this.byResponse.size > 0 || this.orphans > 0;
  }

  /** The call is being handed to a human (an effect waits, or a tool moved it through REST). */
  get transferring(): boolean {
    return this.restHandOff || this.effects.some((e) => e.kind === 'transfer');
  }

  /** An answered tool's effect (end_call, transfer) waits for its response to be done. */
  get effectPending(): boolean {
    return this.effects.length > 0;
  }

  /** A tool handed the call to a human through Twilio's REST API: Twilio ends this stream. */
  get restHandedOff(): boolean {
    return this.restHandOff;
  }

  /** The effects gathered so far, in order; the list is emptied. */
  takeEffects(): CallEffect[] {
    return this.effects.splice(0, this.effects.length);
  }

  /** True when `responseId` asked for tools not yet followed up. */
  owns(responseId: string): boolean {
    return this.byResponse.has(responseId);
  }

  /**
   * The model's session is gone: nothing of it is followed up (its effects were taken first: the
   * call carried them out). Its tools still running keep the call busy until they answer.
   */
  newSession(): void {
    for (const rt of this.byResponse.values()) {
      rt.orphaned = true;
      this.orphans += rt.pending;
    }
    this.byResponse.clear();
  }

  dispatch(ev: Extract<ModelEvent, { type: 'function_call' }>, call: ToolCall): void {
    const { callSid, tenant } = call;
    this.calls++;
    let rt = this.byResponse.get(ev.responseId);
    if (!rt) {
      rt = { pending: 0, done: false, followUpSent: false, orphaned: false };
      this.byResponse.set(ev.responseId, rt);
    }
    rt.pending++;
    const { deps } = this;
    const startedAt = deps.clock.now();
    const t0 = deps.clock.mono();
    const model = deps.session();
    // Bounded label values: built-in tool names, one bucket for tenant webhook tools, else unknown.
    const toolLabel = (tenant.tools as readonly string[]).includes(ev.name)
      ? ev.name
      : tenant.webhookTools.some((w) => w.name === ev.name)
        ? 'webhook'
        : 'unknown';
    const span = childSpan(SPAN.tool, call.parentSpan, { [ATTR.tool]: toolLabel });
    // The call logger already carries trace_id/span_id: bind the tool span under its own key (none when tracing is off).
    const toolSpanId = traceBindings(span)['span_id'];
    const toolLog = call.log.child({ tool: ev.name, callId: ev.callId, ...(toolSpanId ? { tool_span_id: toolSpanId } : {}) });
    const traceparent = traceparentOf(span);
    const owner = rt;
    void deps.tools
      .run(
        {
          callSid,
          tenant,
          callId: ev.callId,
          log: toolLog,
          signal: call.signal,
          ...(traceparent ? { traceparent } : {}),
          handingOff: () => {
            this.restHandOff = true;
          },
        },
        ev.name,
        ev.arguments,
      )
      .then((result) => {
        const seconds = (deps.clock.mono() - t0) / 1000;
        span.setAttribute(ATTR.toolOutcome, result.outcome);
        // A business "no" (slot taken) is a normal answer, not a failed span.
        endSpan(span, result.outcome === 'ok' || result.outcome === 'rejected' ? undefined : result.outcome);
        deps.metrics.toolCall.labels(toolLabel, result.outcome).observe(seconds);
        toolLog.info({ outcome: result.outcome, ms: Math.round(seconds * 1000) }, 'tool call');
        deps.background(
          deps.store.recordToolCall(callSid, {
            callId: ev.callId,
            name: ev.name,
            arguments: maskNumbersInJson(ev.arguments),
            output: maskNumbersInJson(result.output),
            outcome: result.outcome,
            startedAt,
            durationMs: Math.round(seconds * 1000),
          }),
          'store.recordToolCall',
        );
        if (!model || deps.session() !== model) return this.orphanAnswered(owner, result.effect); // that session is gone (or the call)
        model.send(functionCallOutput(ev.callId, result.output));
        if (result.effect) this.effects.push(result.effect);
        owner.pending--;
        this.maybeFollowUp(ev.responseId, owner);
      });
  }

  /** The model finished `responseId`. Returns false when it asked for no tools (still pending). */
  responseDone(responseId: string): boolean {
    const rt = this.byResponse.get(responseId);
    if (!rt) return false;
    rt.done = true;
    this.maybeFollowUp(responseId, rt);
    return true;
  }

  /**
   * A tool answered after its session was lost: no session to tell, but its effect stands (the
   * model decided): kept, and the call acts on it at once (ToolDispatchDeps.stranded).
   */
  private orphanAnswered(owner: ResponseTools, effect: CallEffect | undefined): void {
    if (owner.orphaned) {
      owner.pending--;
      this.orphans--;
    }
    if (!effect) return;
    this.effects.push(effect);
    this.deps.stranded();
  }

  /** After a tool result, ask for the spoken answer only once the tool's response is done. */
  private maybeFollowUp(responseId: string, rt: ResponseTools): void {
    if (rt.pending > 0 || !rt.done || rt.followUpSent || !this.deps.session()) return;
    rt.followUpSent = true;
    this.byResponse.delete(responseId);
    this.deps.followUp();
  }
}
