import { describe, expect, it } from 'vitest';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryCallStore, startPodHeartbeat, type ReapResult } from '../../src/store/index.js';

describe('startPodHeartbeat', () => {
  it('beats every interval and reaps the calls of a pod that went silent', async () => {
    const t0 = Date.now();
    const store = new MemoryCallStore(() => t0);
    await store.startCall({ callSid: 'CA1', tenantId: 'demo', pod: 'pod-dead', startedAt: t0 });
    await store.startCall({ callSid: 'CA2', tenantId: 'demo', pod: 'pod-alive', startedAt: t0 });
    const clock = new ManualClock(t0);
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
