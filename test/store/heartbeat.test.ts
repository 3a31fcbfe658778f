import { describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.js';
import { MemoryCallStore, startPodHeartbeat, type ReapResult } from '../../src/store/index.js';

/** A clock whose timers run only when the test advances it. */
function manualClock(start: number): Clock & { advance(ms: number): void } {
  let t = start;
  let timers: { at: number; fn: () => void }[] = [];
  return {
    now: () => t,
    mono: () => t,
    after(ms, fn) {
      const timer = { at: t + ms, fn };
      timers.push(timer);
      return () => {
        timers = timers.filter((x) => x !== timer);
      };
    },
    advance(ms) {
      t += ms;
      const due = timers.filter((x) => x.at <= t);
      timers = timers.filter((x) => x.at > t);
      for (const d of due) d.fn();
    },
  };
}

describe('startPodHeartbeat', () => {
  it('beats every interval and reaps the calls of a pod that went silent', async () => {
    const t0 = Date.now();
    const store = new MemoryCallStore(() => t0);
    await store.startCall({ callSid: 'CA1', tenantId: 'demo', pod: 'pod-dead', startedAt: t0 });
    await store.startCall({ callSid: 'CA2', tenantId: 'demo', pod: 'pod-alive', startedAt: t0 });
    const clock = manualClock(t0);
    const reaped: ReapResult[] = [];
    let onReap: () => void = () => undefined;
    const stop = startPodHeartbeat({
      store,
      pod: 'pod-alive',
      clock,
      intervalMs: 5000,
      staleMs: 30_000,
      onReaped: (r) => {
        reaped.push(r);
        onReap();
      },
    });
    const reapedOnce = new Promise<void>((resolve) => (onReap = resolve));
    // Let the first beat settle, then run the timers past the stale limit: 7 beats of 5 s.
    for (let i = 0; i < 7; i++) {
      await Promise.resolve();
      await new Promise((r) => setImmediate(r));
      clock.advance(5000);
    }
    await reapedOnce;
    stop();
    expect(reaped).toEqual([{ pods: ['pod-dead'], calls: ['CA1'] }]);
    expect((await store.listActive()).map((c) => c.callSid)).toEqual(['CA2']);
    expect((await store.getCall('CA1'))?.outcome).toBe('abandoned');
  });
});
