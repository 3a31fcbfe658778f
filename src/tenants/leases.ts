/**
 * Per-tenant concurrency policy over a LeaseStore: a short lease at the voice webhook, extended when
 * the media stream starts, renewed by one heartbeat timer per pod, released when the call ends.
 * The store does the atomic counting; the routes and the lifecycle listener (told by the call's
 * ledger, src/call/call-ledger.ts) call in here.
 */
import type { Logger } from 'pino';
import type { CallLifecycleListener, CallTenantRef } from '../call/lifecycle.js';
import { systemClock, type Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { LeaseStore } from './lease-store.js';
import type { Tenant } from './tenant.js';

export interface TenantLeasesOptions {
  store: LeaseStore;
  log: Logger;
  clock?: Clock;
  /**
   * Lease taken at the webhook, before the stream exists. Covers Twilio fetching TwiML and opening
   * the socket (the stream token lives 30 s); a webhook that never becomes a stream frees its slot
   * after this. Default 45 s.
   */
  pendingTtlMs?: number;
  /** Lease of a live call; a crashed pod's calls stop counting this long after its last heartbeat. Default 60 s. */
  liveTtlMs?: number;
  /** One renewal of every live lease on this pod per period. Default 20 s (a third of liveTtlMs). */
  heartbeatMs?: number;
}

export type Admission = { admitted: true; active: number } | { admitted: false; active: number };

export class TenantLeases implements CallLifecycleListener {
  private readonly clock: Clock;
  private readonly pendingTtlMs: number;
  private readonly liveTtlMs: number;
  private readonly heartbeatMs: number;
  /** tenant id -> CallSids live on this pod. */
  private readonly live = new Map<string, Set<string>>();
  private cancelTimer: (() => void) | undefined;
  private closed = false;
  private renewFailing = false;

  constructor(private readonly o: TenantLeasesOptions) {
    this.clock = o.clock ?? systemClock;
    this.pendingTtlMs = o.pendingTtlMs ?? 45_000;
    this.liveTtlMs = o.liveTtlMs ?? 60_000;
    this.heartbeatMs = o.heartbeatMs ?? 20_000;
    if (this.heartbeatMs >= this.liveTtlMs) {
      throw new RangeError(`heartbeatMs (${this.heartbeatMs}) must be shorter than liveTtlMs (${this.liveTtlMs})`);
    }
  }

  /**
   * Take a slot for a new call at the voice webhook. A store failure admits the call (logged): the
   * limit protects capacity, and refusing every call while Redis blinks would be worse.
   */
  async admit(tenant: Tenant, callSid: string): Promise<Admission> {
    try {
      const g = await this.o.store.acquire(tenant.id, callSid, tenant.maxConcurrentCalls, this.pendingTtlMs);
      return g.granted ? { admitted: true, active: g.active } : { admitted: false, active: g.active };
    } catch (err) {
      this.o.log.warn({ code: 'store_unavailable', tenant: tenant.id, callSid, err: errorMessage(err) }, 'lease store unavailable: admitting the call unlimited');
      return { admitted: true, active: -1 };
    }
  }

  /** The stream started: extend the short webhook lease to a live one and keep renewing it. */
  callStarted(call: { callSid: string; tenant: CallTenantRef }): void {
    let set = this.live.get(call.tenant.id);
    if (!set) {
      set = new Set();
      this.live.set(call.tenant.id, set);
    }
    set.add(call.callSid);
    this.background(this.o.store.renew(call.tenant.id, [call.callSid], this.liveTtlMs), 'renew', call.callSid);
  }

  callEnded(call: { callSid: string; tenant: CallTenantRef }): void {
    this.forget(call.tenant.id, call.callSid);
    this.background(this.o.store.release(call.tenant.id, call.callSid), 'release', call.callSid);
  }

  /** The call moved to another pod (drain by migration): its lease stays, renewed from now on by that pod. */
  callMoved(call: { callSid: string; tenant: CallTenantRef }): void {
    this.forget(call.tenant.id, call.callSid);
  }

  /** Release from a status callback (the call or stream ended, possibly on another pod). */
  async release(tenantId: string, callSid: string): Promise<boolean> {
    this.forget(tenantId, callSid);
    return this.o.store.release(tenantId, callSid);
  }

  /** Renew every live lease on this pod: one store round trip per tenant with live calls. */
  async heartbeat(): Promise<void> {
    const work = [...this.live].map(([tenantId, sids]) => this.o.store.renew(tenantId, [...sids], this.liveTtlMs));
    const results = await Promise.allSettled(work);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      if (!this.renewFailing) this.o.log.warn({ code: 'store_unavailable', err: errorMessage(failed.reason) }, 'lease heartbeat failed');
      this.renewFailing = true;
    } else {
      this.renewFailing = false;
    }
  }

  /** Start the shared heartbeat timer. */
  start(): void {
    if (this.cancelTimer || this.closed) return;
    const tick = (): void => {
      this.cancelTimer = undefined;
      if (this.closed) return;
      void this.heartbeat().then(() => {
        if (!this.closed) this.cancelTimer = this.clock.after(this.heartbeatMs, tick);
      });
    };
    this.cancelTimer = this.clock.after(this.heartbeatMs, tick);
  }

  /** Calls on this pod holding a live lease. */
  liveCalls(): number {
    let n = 0;
    for (const s of this.live.values()) n += s.size;
    return n;
  }

  /** Stop the heartbeat. Live leases are left to expire (a drained pod has none). */
  close(): void {
    this.closed = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }

  private forget(tenantId: string, callSid: string): void {
    const set = this.live.get(tenantId);
    if (!set) return;
    set.delete(callSid);
    if (set.size === 0) this.live.delete(tenantId);
  }

  private background(p: Promise<unknown>, op: string, callSid: string): void {
    p.catch((err: unknown) => this.o.log.warn({ code: 'store_unavailable', op, callSid, err: errorMessage(err) }, 'lease store write failed'));
  }
}
