/**
 * The calls on this pod: their sockets and bridges, the counts that capacity, the gauge and a drain
 * read, and the admission rule a bridge asks at its authorised start.
 */
import type { Logger } from 'pino';
import type { AdmissionRefusal, CallBridge, MigratableCall } from '../call/index.js';
import type { Clock } from '../clock.js';
import { CloseCode } from '../errors.js';

/** The part of a media socket the registry needs: closing it when the relay stops. */
export interface ClosableSocket {
  end(code: number, reason: string): void;
}

type CallOutcome = Parameters<CallBridge['finish']>[0];

export class LiveCalls {
  private readonly bridges = new Set<CallBridge>();
  private readonly sockets = new Set<ClosableSocket>();
  private idleWaiters: (() => void)[] = [];
  /** Authorised calls: what capacity, the gauge and a drain count. */
  private liveCount = 0;
  /** Sockets still without an authorised start (held briefly, capped separately: they must not take the pod). */
  private unstartedCount = 0;
  /** Set once by drain or close: new streams are refused from then on. */
  draining = false;

  constructor(private readonly opts: { maxActiveCalls: number; log: Logger }) {}

  get live(): number {
    return this.liveCount;
  }

  get unstarted(): number {
    return this.unstartedCount;
  }

  /** Asked by a bridge at its authorised start: refused while draining or at the pod's cap. */
  readonly admit = (): AdmissionRefusal | undefined => {
    if (this.draining) return { code: CloseCode.draining, reason: 'relay draining', outcome: 'drained' };
    const max = this.opts.maxActiveCalls;
    if (max > 0 && this.liveCount >= max) {
      // Past the pod's measured knee every call would get worse: refuse this one, Twilio runs the
      // after-stream redirect (apology, or the tenant's human), and the HPA adds pods.
      this.opts.log.warn({ code: 'rate_limited', live: this.liveCount, max }, 'pod at capacity: media stream refused');
      return { code: CloseCode.overCapacity, reason: 'pod at capacity', outcome: 'rejected_capacity' };
    }
    this.liveCount++;
    this.unstartedCount--;
    return undefined;
  };

  /** A media socket opened (before its bridge exists). */
  socketOpened(ws: ClosableSocket): void {
    this.sockets.add(ws);
  }

  socketClosed(ws: ClosableSocket): void {
    this.sockets.delete(ws);
  }

  /** A bridge was made for an open socket: it counts as unstarted until `admit`. */
  bridgeOpened(bridge: CallBridge): void {
    this.bridges.add(bridge);
    this.unstartedCount++;
  }

  /** The bridge's end-of-call callback. */
  readonly ended = (bridge: CallBridge): void => {
    this.bridges.delete(bridge);
    if (bridge.admitted) this.liveCount--;
    else this.unstartedCount--;
    if (this.liveCount === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  };

  /** Resolves when no authorised call is left, or after `timeoutMs`. */
  async waitUntilNoLive(timeoutMs: number, clock: Clock): Promise<void> {
    if (this.liveCount === 0) return;
    await new Promise<void>((resolve) => {
      const cancel = clock.after(timeoutMs, resolve);
      this.idleWaiters.push(() => {
        cancel();
        resolve();
      });
    });
  }

  /** The live calls a drain by migration may move (each bridge's view of itself). */
  migratable(): MigratableCall[] {
    return [...this.bridges].flatMap((b) => b.migratable() ?? []);
  }

  /** Ends every call (or only those without an authorised start) with this outcome and close code. */
  finish(which: 'all' | 'unstarted', outcome: CallOutcome, code: number, reason: string): void {
    for (const b of [...this.bridges]) if (which === 'all' || !b.admitted) b.finish(outcome, code, reason);
  }

  /** Closes every media socket still open (those without a bridge too). */
  endSockets(code: number, reason: string): void {
    for (const ws of [...this.sockets]) {
      try {
        ws.end(code, reason);
      } catch {
        // already closed
      }
    }
  }
}
