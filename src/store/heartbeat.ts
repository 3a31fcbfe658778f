/**
 * The pod heartbeat loop: every interval this pod says it is alive, then reaps the calls of pods
 * that stopped saying so. The store makes each reap atomic; this file only owns the timer.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { CallStore, ReapResult } from './call-store.js';

export interface PodHeartbeatOptions {
  store: CallStore;
  pod: string;
  clock: Clock;
  log?: Logger;
  /** How often to beat and reap (default 5 s). */
  intervalMs?: number;
  /** A pod silent for this long is dead (default 30 s: six missed beats, past a GC pause or a Redis blip). */
  staleMs?: number;
  /** Told about each reap that ended calls (metrics: switchboard_calls_total{outcome="abandoned"}). */
  onReaped?: (r: ReapResult) => void;
}

/** Start beating at once; returns a stop function. Failures are logged, never thrown. */
export function startPodHeartbeat(o: PodHeartbeatOptions): () => void {
  const intervalMs = o.intervalMs ?? 5000;
  const staleMs = o.staleMs ?? 30_000;
  let stopped = false;
  let cancel: (() => void) | undefined;
  const tick = async (): Promise<void> => {
    try {
      const now = o.clock.now();
      await o.store.heartbeat(o.pod, now);
      const r = await o.store.reapDeadPods(now, staleMs);
      if (r.calls.length > 0 || r.pods.length > 0) {
        o.log?.warn({ code: 'store_unavailable', pods: r.pods, calls: r.calls.length }, 'reaped calls of dead pods');
        o.onReaped?.(r);
      }
    } catch (err) {
      o.log?.warn({ code: 'store_unavailable', err: errorMessage(err) }, 'pod heartbeat failed');
    }
    if (!stopped) cancel = o.clock.after(intervalMs, () => void tick());
  };
  void tick();
  return () => {
    stopped = true;
    cancel?.();
  };
}
