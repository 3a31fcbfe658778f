/**
 * Pod liveness in Redis for the CallStore: each pod's heartbeat keeps its live calls in the active
 * index, and survivors reap the calls of pods that stopped beating (one Lua script per dead pod, so
 * each reaped call is counted by exactly one survivor).
 */
import type { Redis } from 'ioredis';
import { DEFAULT_RETENTION_SECONDS, type ReapResult } from './call-store.js';
import type { Scripts } from './redis-call-scripts.js';
import { storeUnavailable } from './redis-connection.js';

/** `pod` is alive at `now`: its score in `pods`, and its calls' scores in `active`. */
export async function beat(s: Scripts, prefix: string, pod: string, now: number): Promise<void> {
  try {
    await s.sbHeartbeat('pods', 'active', pod, now, prefix);
  } catch (err) {
    throw storeUnavailable(err);
  }
}

/** End (outcome `abandoned`) the calls of every pod silent for `staleMs`; only what this run reaped. */
export async function reapPods(redis: Redis, s: Scripts, prefix: string, now: number, staleMs: number): Promise<ReapResult> {
  const cutoff = now - staleMs;
  const out: ReapResult = { pods: [], calls: [] };
  try {
    const stale = await redis.zrangebyscore('pods', '-inf', `(${cutoff}`);
    for (const pod of stale) {
      // Empty when another survivor got there first (or the pod beat again): only count our own.
      const [reaped, ...calls] = await s.sbReapPod('pods', 'active', pod, cutoff, now, prefix, DEFAULT_RETENTION_SECONDS);
      if (reaped === undefined) continue;
      out.pods.push(pod);
      out.calls.push(...calls);
    }
  } catch (err) {
    throw storeUnavailable(err);
  }
  return out;
}
