/**
 * Usage per call on this pod: tokens from each response.done, call seconds, tool calls and the
 * estimated cost, written to the UsageStore every USAGE_FLUSH_SECONDS and at the call's end, so a
 * crash loses at most one interval. Storage is the store's job; the call's ledger (call-ledger.ts)
 * only reports events.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import { TOKEN_KINDS, type ResponseUsage, type TokenKind } from '../model/index.js';
import { emptyUsage, type UsageCallRef, type UsageStore, type UsageTotals } from '../store/index.js';
import { retentionSeconds, type Tenant } from '../tenants/index.js';
import { costNanoUsd, NANO_PER_USD, type TokenRates } from './price-table.js';
import type { UsageMetrics } from '../telemetry/index.js';

/** How each billing kind is labelled: input kinds do not overlap, so sum() is the total. */
export const TOKEN_LABELS: Readonly<Record<TokenKind, readonly ['input' | 'output', string]>> = {
  inputText: ['input', 'text'],
  inputAudio: ['input', 'audio'],
  inputTextCached: ['input', 'cached_text'],
  inputAudioCached: ['input', 'cached_audio'],
  outputText: ['output', 'text'],
  outputAudio: ['output', 'audio'],
};

/** The usage of one call as logs and the admin API show it. */
export interface UsageView {
  callSeconds: number;
  toolCalls: number;
  responses: number;
  tokens: {
    input: { text: number; audio: number; cachedText: number; cachedAudio: number };
    output: { text: number; audio: number };
  };
  estimatedCostUsd: number;
}

export function usageView(u: Readonly<UsageTotals>): UsageView {
  return {
    callSeconds: u.callMs / 1000,
    toolCalls: u.toolCalls,
    responses: u.responses,
    tokens: {
      input: { text: u.inputText, audio: u.inputAudio, cachedText: u.inputTextCached, cachedAudio: u.inputAudioCached },
      output: { text: u.outputText, audio: u.outputAudio },
    },
    estimatedCostUsd: u.costNanoUsd / NANO_PER_USD,
  };
}

/** What the call's ledger (src/call/call-ledger.ts) holds for one call. */
export interface CallUsageMeter {
  /** A response.done's usage block (cancelled responses are billed too). */
  response(u: Readonly<ResponseUsage>): void;
  /** The call is over: its totals are written at once; returns them for the call-ended log line. */
  end(): UsageView;
}

/** Opens a meter per authorised call; the call's only dependency on usage. */
export interface UsageMeterFactory {
  open(call: { callSid: string; tenant: Tenant; startedAt: number; toolCalls: () => number }): CallUsageMeter;
}

export interface UsageTrackerOptions {
  store: UsageStore;
  clock: Clock;
  metrics: UsageMetrics;
  log: Logger;
  /** Nano-dollars per token of the model in use; undefined when the price table has no entry (cost 0). */
  rates: TokenRates | undefined;
  flushMs: number;
  /** Told after a tenant's usage reached the store (budgets refresh their gauges). */
  onRecorded?(tenantId: string): void;
}

/** Ended calls whose last write failed are retried this many intervals before being given up (logged). */
const MAX_END_RETRIES = 120;

class CallUsage implements CallUsageMeter {
  readonly totals = emptyUsage();
  readonly ref: UsageCallRef;
  private secondsCounted = 0;
  ended = false;
  retries = 0;

  constructor(
    private readonly tracker: UsageTracker,
    readonly tenantId: string,
    callSid: string,
    retentionSeconds: number,
    private readonly startedAt: number,
    private readonly toolCalls: () => number,
  ) {
    this.ref = { callSid, tenantId, retentionSeconds };
    this.totals.calls = 1;
  }

  response(u: Readonly<ResponseUsage>): void {
    if (this.ended) return;
    const t = this.totals;
    const m = this.tracker.o.metrics;
    for (const k of TOKEN_KINDS) {
      if (u[k] <= 0) continue;
      t[k] += u[k];
      const [direction, modality] = TOKEN_LABELS[k];
      m.tokens.labels(this.tenantId, direction, modality).inc(u[k]);
    }
    t.responses++;
    const rates = this.tracker.o.rates;
    if (rates) {
      const c = costNanoUsd(u, rates);
      t.costNanoUsd += c;
      if (c > 0) m.costUsd.labels(this.tenantId).inc(c / NANO_PER_USD);
    }
  }

  /** Bring time-based counters up to `now` (call seconds, tool calls) and count new seconds. */
  refresh(now: number): UsageTotals {
    if (!this.ended) {
      this.totals.callMs = Math.max(this.totals.callMs, now - this.startedAt);
      this.totals.toolCalls = this.toolCalls();
    }
    const newMs = this.totals.callMs - this.secondsCounted;
    if (newMs > 0) {
      this.tracker.o.metrics.callSeconds.labels(this.tenantId).inc(newMs / 1000);
      this.secondsCounted = this.totals.callMs;
    }
    return this.totals;
  }

  end(): UsageView {
    if (!this.ended) {
      this.refresh(this.tracker.o.clock.now());
      this.ended = true;
      this.tracker.ended(this);
    }
    return usageView(this.totals);
  }
}

export class UsageTracker implements UsageMeterFactory {
  private readonly live = new Map<string, CallUsage>();
  /** Ended calls whose final totals are not in the store yet. */
  private readonly unsaved = new Set<CallUsage>();
  private cancelTimer: (() => void) | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;

  constructor(readonly o: UsageTrackerOptions) {
    this.arm();
  }

  open(call: { callSid: string; tenant: Tenant; startedAt: number; toolCalls: () => number }): CallUsageMeter {
    const u = new CallUsage(this, call.tenant.id, call.callSid, retentionSeconds(call.tenant), call.startedAt, call.toolCalls);
    this.live.set(call.callSid, u);
    return u;
  }

  /** A live call's running totals on this pod (fresher than the store by up to one interval). */
  liveUsage(callSid: string): UsageTotals | undefined {
    const u = this.live.get(callSid);
    return u ? { ...u.refresh(this.o.clock.now()) } : undefined;
  }

  ended(u: CallUsage): void {
    this.live.delete(u.ref.callSid);
    this.unsaved.add(u);
    void this.write(u);
  }

  /** Write every live call's totals and retry ended calls not yet saved. Resolves when done. */
  flush(): Promise<void> {
    this.flushing ??= (async () => {
      const now = this.o.clock.now();
      const all = [...this.live.values(), ...this.unsaved];
      for (const u of all) u.refresh(now);
      await Promise.all(all.map((u) => this.write(u)));
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Stop the timer and make a last attempt to write everything (drain, shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    this.cancelTimer?.();
    await this.flush();
  }

  private async write(u: CallUsage): Promise<void> {
    const totals = { ...u.totals };
    try {
      await this.o.store.record(u.ref, totals, this.o.clock.now());
      if (u.ended && u.totals.callMs === totals.callMs) this.unsaved.delete(u);
      this.o.onRecorded?.(u.tenantId);
    } catch (err) {
      this.o.metrics.writeFailures.inc();
      if (!u.ended) {
        this.o.log.warn({ code: 'store_unavailable', callSid: u.ref.callSid, err: errorMessage(err) }, 'usage write failed; retried next interval');
      } else if (++u.retries > MAX_END_RETRIES) {
        this.unsaved.delete(u);
        this.o.log.error(
          { code: 'store_unavailable', callSid: u.ref.callSid, tenant: u.tenantId, usage: usageView(totals) },
          'usage of an ended call could not be stored; given up',
        );
      }
    }
  }

  private arm(): void {
    if (this.closed) return;
    this.cancelTimer = this.o.clock.after(this.o.flushMs, () => {
      void this.flush().finally(() => this.arm());
    });
  }
}
