/**
 * What the pod counts, stores and tells about one call, at its start and its end: the admitted call
 * counted live, its record started, its lifecycle listeners told, its usage metered; at the end its
 * outcome counted and stored (not for a call that moved on: its new pod ends it), listeners told,
 * and the media socket closed only once the outcome is stored.
 */
import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { ResponseUsage } from '../model/index.js';
import type { CallStore } from '../store/index.js';
import { ATTR, childSpan, endSpan, SPAN, type RelayMetrics } from '../telemetry/index.js';
import { retentionSeconds, type Tenant } from '../tenants/index.js';
import type { CallUsageMeter, UsageMeterFactory, UsageView } from '../usage/index.js';
import type { StartInfo } from './bridge-deps.js';
import type { CallLifecycleListener, CallOutcome } from './lifecycle.js';
import type { ResumeContext } from './resume.js';

/** Longest the media socket stays open after the call ended, waiting for the outcome to be stored. */
const OUTCOME_STORE_WAIT_MS = 2000;
/** Outcomes that mark the call span as an error. */
const FAILED_OUTCOMES: ReadonlySet<CallOutcome> = new Set(['model_unavailable', 'model_failed', 'protocol_error', 'rejected_token']);

export interface CallLedgerDeps {
  store: CallStore;
  metrics: RelayMetrics;
  clock: Clock;
  pod: string;
  listeners?: readonly CallLifecycleListener[] | undefined;
  usage?: UsageMeterFactory | undefined;
  /** The call's logger now (it gains the call's ids as they are known). */
  log(): Logger;
}

/** How the call ended, as its books need it. */
export interface CallEnd {
  callSid: string | undefined;
  /** Set once the call was authorised (and so admitted). */
  tenant: Tenant | undefined;
  outcome: CallOutcome;
  /** Why it ended (the call span's error, for a failed outcome). */
  reason: string;
  /** A `start` came (a socket closed before it is no call). */
  started: boolean;
  /** The call moved to another pod: no outcome here. */
  moved: boolean;
  /** [resume] Adopted here but never relayed. */
  unresumed: ResumeContext | undefined;
}

export class CallLedger {
  /** When the stream started (wall clock, ms); 0 before. */
  startedAt = 0;
  /** The call's span, from the stream's start to its end. */
  span: Span | undefined;
  /** Before admission; admitted and counted among the pod's live calls; admitted, its end settled. */
  private stage: 'before' | 'counted' | 'settled' = 'before';
  private usage: CallUsageMeter | undefined;

  constructor(private readonly deps: CallLedgerDeps) {}

  /** True once the start was authorised and the pod admitted the call (it counts as a live call until it ends). */
  get admitted(): boolean {
    return this.stage !== 'before';
  }

  /** The stream's `start`: the call's duration counts from here, its span opens. */
  started(callSid: string, provider: string): void {
    this.startedAt = this.deps.clock.now();
    this.span = childSpan(SPAN.call, undefined, { [ATTR.callSid]: callSid, [ATTR.provider]: provider });
  }

  /** An authorised call the pod took: counted live, listeners told, usage metered. */
  admit(callSid: string, tenant: Tenant, toolCalls: () => number): void {
    const { deps } = this;
    this.span?.setAttribute(ATTR.tenant, tenant.id);
    this.stage = 'counted';
    deps.metrics.noteTenant(tenant.id);
    deps.metrics.activeCalls.inc();
    this.notify((l) => l.callStarted?.({ callSid, tenant }));
    this.usage = deps.usage?.open({ callSid, tenant, startedAt: this.startedAt, toolCalls });
  }

  /** A new call's record (a moved call's exists: its adopter took it). */
  record(start: StartInfo, tenant: Tenant, parties: { fromMasked?: string; to?: string }): void {
    const { deps } = this;
    this.background(
      deps.store.startCall({
        callSid: start.callSid,
        tenantId: tenant.id,
        streamSid: start.streamSid,
        ...parties,
        pod: deps.pod,
        startedAt: this.startedAt,
        ...(start.traceparent !== undefined ? { traceparent: start.traceparent } : {}),
        retentionSeconds: retentionSeconds(tenant),
      }),
      'store.startCall',
    );
  }

  /** A response.done's usage block. */
  response(u: Readonly<ResponseUsage>): void {
    this.usage?.response(u);
  }

  /** The call ended: its usage, count and outcome settled; returns the usage and the outcome's store write, if any. */
  end(e: CallEnd): { usage: UsageView | undefined; stored: Promise<void> | undefined } {
    const { deps } = this;
    const usage = this.usage?.end();
    if (this.stage === 'counted') {
      deps.metrics.activeCalls.dec();
      this.stage = 'settled';
    }
    const { callSid, tenant, outcome } = e;
    if (this.span) {
      this.span.setAttribute(ATTR.outcome, e.moved ? 'moved' : outcome);
      endSpan(this.span, FAILED_OUTCOMES.has(outcome) ? e.reason : undefined);
      this.span = undefined;
    }
    if (e.moved) return { usage, stored: undefined };
    if (!callSid || !tenant) {
      // Refused or never authorised: counted (a socket closed before its start is no call), nothing stored.
      if (e.started) deps.metrics.callsTotal.labels(outcome, 'unknown').inc();
      return { usage, stored: undefined };
    }
    // [resume] Adopted but never relayed here (model unreachable, hung up in the gap).
    if (e.unresumed) deps.metrics.callMigrations.labels(e.unresumed.migration.reason, 'resume_failed').inc();
    // Only while this pod holds the call: a call it released (moving) is its adopter's to end.
    return { usage, stored: this.settle(callSid, tenant, outcome, deps.pod) };
  }

  /**
   * An admitted call's outcome, counted, stored and told. `holder`: stored only while that pod
   * holds the call; without it, whoever holds it (a move that did not happen, after this pod let go).
   */
  settle(callSid: string, tenant: Tenant, outcome: CallOutcome, holder?: string): Promise<void> {
    const { deps } = this;
    deps.metrics.callsTotal.labels(outcome, tenant.id).inc();
    const stored = deps.store.endCall(callSid, outcome, retentionSeconds(tenant), holder);
    this.background(stored, 'store.endCall');
    this.notify((l) => l.callEnded?.({ callSid, tenant, outcome }));
    return stored;
  }

  /** Tell every lifecycle listener; one that throws is logged and the others still hear. */
  notify(fn: (l: CallLifecycleListener) => void): void {
    for (const l of this.deps.listeners ?? []) {
      try {
        fn(l);
      } catch (err) {
        this.deps.log().warn({ code: 'internal', err: errorMessage(err) }, 'call lifecycle listener failed');
      }
    }
  }

  /** A store write whose failure is logged, never awaited. */
  background(p: Promise<unknown>, what: string): void {
    p.catch((err: unknown) => this.deps.log().warn({ code: 'store_unavailable', op: what, err: errorMessage(err) }, 'store write failed'));
  }

  /**
   * Close the media socket once the outcome is stored. Twilio runs the TwiML after `</Connect>`
   * (the after-stream redirect) the moment the socket closes, possibly on another pod, which reads
   * the outcome from the store: written after the close, a goodbye could be answered with "our
   * assistant is unavailable". The wait is bounded: a store that does not answer does not hold
   * the line open (the after-stream route also waits a little for an outcome still being written).
   */
  closeWhenStored(stored: Promise<void> | undefined, close: () => void): void {
    if (!stored) return close();
    let closed = false;
    const once = (): void => {
      if (closed) return;
      closed = true;
      cancel();
      close();
    };
    const cancel = this.deps.clock.after(OUTCOME_STORE_WAIT_MS, once);
    stored.then(once, once);
  }
}
