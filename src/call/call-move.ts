/**
 * One call's side of a move between pods (drain by migration; a moved call adopted here): what the
 * migrator sees of it and when it may move (migration.ts has the rule), the end of this leg when
 * Twilio moves the call (no outcome: it goes on elsewhere, so its record stays live), a move that
 * did not happen, and on the adopting pod the move's gap once the new leg relays.
 */
import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { CloseCode } from '../errors.js';
import type { CallStore } from '../store/index.js';
import { ATTR, linkSpan, type RelayMetrics } from '../telemetry/index.js';
import type { Tenant } from '../tenants/index.js';
import type { CallView } from './call-state.js';
import type { CallLifecycleListener, CallOutcome } from './lifecycle.js';
import { migrationReadiness, type MigratableCall, type MigrationFacts } from './migration.js';
import type { ResumeContext } from './resume.js';

/** What the move needs of the call beyond its view. */
export interface CallMoveHost {
  /** Set once the stream's start was authorised and admitted. */
  tenant(): Tenant | undefined;
  /** What decides whether the call may move now (but its state). */
  facts(): Omit<MigrationFacts, 'state'>;
}

export interface CallMoveDeps {
  store: CallStore;
  metrics: RelayMetrics;
  clock: Clock;
  pod: string;
  /** A store write whose failure is logged, never awaited. */
  background(p: Promise<unknown>, what: string): void;
  /** Tell the call's lifecycle listeners (a throwing listener is logged). */
  notify(fn: (l: CallLifecycleListener) => void): void;
  /** The call's outcome counted, stored and told (the ledger's end-of-call books). */
  settle(callSid: string, tenant: Tenant, outcome: CallOutcome): void;
}

type Parties = { fromMasked?: string; to?: string };

/**
 * `from` (masked by the voice webhook) and `to` from the stream's parameters, for the call record.
 * Kept only in the shapes the webhook writes: a masked number, and one of the tenant's own numbers.
 */
export function callParties(p: Readonly<Record<string, string>>, tenant: Tenant): Parties {
  const from = p['from'];
  const to = p['to'];
  return {
    ...(from !== undefined && /^\+?\*+\d{0,4}$/.test(from) ? { fromMasked: from } : {}),
    ...(to !== undefined && tenant.phoneNumbers.includes(to) ? { to } : {}),
  };
}

export class CallMove {
  /** The stream's `to` / masked `from`, for the resume TwiML. */
  parties: Parties = {};
  /**
   * The move under way: `moving` once the migrator asked Twilio to move the call (the next stop is
   * the move, not a hang-up); `left` once that stop ended this side (no outcome, record left live).
   * It names the call it moves, as it was when the move began.
   */
  private move: { stage: 'moving' | 'left'; callSid: string; tenant: Tenant } | undefined;

  constructor(
    private readonly deps: CallMoveDeps,
    private readonly call: CallView,
    private readonly host: CallMoveHost,
  ) {}

  /** This leg ended because the call moved: no outcome is counted or stored. */
  get moved(): boolean {
    return this.move?.stage === 'left';
  }

  /**
   * [resume] A moved call adopted by this pod: its parties from its record; its span names the move
   * and links the old leg's. Returns the call's logger, which names the move too.
   */
  adopted(ctx: ResumeContext, span: Span | undefined, callLog: Logger): Logger {
    const { record: rec, migration: m } = ctx;
    span?.setAttributes({ [ATTR.migrationReason]: m.reason, [ATTR.migrationFrom]: m.from });
    linkSpan(span, rec.traceparent);
    this.parties = { ...(rec.to !== undefined ? { to: rec.to } : {}), ...(rec.fromMasked !== undefined ? { fromMasked: rec.fromMasked } : {}) };
    const log = callLog.child({ resumed: m.reason, from: m.from });
    log.info({ gapSinceStopMs: this.deps.clock.now() - m.at, lines: rec.transcript.length, tools: rec.tools.length }, 'moved call adopted: resuming');
    return log;
  }

  /** This call as the migrator sees it; undefined before it is authorised or after it ended. */
  migratable(): MigratableCall | undefined {
    const callSid = this.call.callSid;
    const tenant = this.host.tenant();
    if (!callSid || !tenant || this.call.state.kind === 'ended') return undefined;
    return {
      callSid,
      tenant,
      parties: this.parties,
      migrationReadiness: () => migrationReadiness({ state: this.call.state.kind, ...this.host.facts() }),
      beginMigration: () => {
        this.move = { stage: 'moving', callSid, tenant };
      },
      cancelMigration: () => this.cancel(),
    };
  }

  /** Twilio stopped the stream (or closed the socket): while moving, that ends this leg, not the call (true). */
  leave(reason: string): boolean {
    if (!this.move) return false;
    this.move = { ...this.move, stage: 'left' };
    // The outcome of the ended state is never counted or stored for a moved call.
    this.call.finish('drained', CloseCode.normal, reason);
    return true;
  }

  /** The moved call's leg ended: this pod lets go of it; the old leg's stop starts the move's gap (unless the adopter was quicker). */
  release(callSid: string, tenant: Tenant): void {
    const { deps } = this;
    deps.background(deps.store.releaseCall(callSid, deps.pod, deps.clock.now()), 'store.releaseCall');
    deps.notify((l) => l.callMoved?.({ callSid, tenant }));
  }

  /** [resume] The new leg relays: the move's gap, counted and stored; the call is live here. */
  resumed(ctx: ResumeContext, callSid: string): void {
    const { deps } = this;
    const m = ctx.migration;
    const gapMs = Math.max(0, deps.clock.now() - m.at);
    deps.metrics.callMigrations.labels(m.reason, 'resumed').inc();
    deps.metrics.migrationGap.labels(m.reason).observe(gapMs / 1000);
    deps.background(deps.store.setPhase(callSid, 'live'), 'store.setPhase');
    deps.background(deps.store.noteMigrationGap(callSid, gapMs), 'store.noteMigrationGap');
    this.call.log.info({ gapMs, reason: m.reason, from: m.from }, 'call moved: relaying on this pod');
  }

  /**
   * The migrator's update did not go through. Still streaming: the call stays here, phase back to
   * live. Stream already stopped: that stop was the caller hanging up, so the call ends as such.
   */
  private cancel(): void {
    const move = this.move;
    if (!move) return;
    this.move = undefined;
    const { callSid, tenant } = move;
    const { deps } = this;
    if (move.stage === 'moving') {
      if (this.call.state.kind === 'live') deps.background(deps.store.setPhase(callSid, 'live'), 'store.setPhase');
      return;
    }
    deps.settle(callSid, tenant, 'caller_hung_up');
  }
}
