import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FrameHistogram } from '../../src/telemetry/frame-histogram.js';
import { FRAME_BUCKETS } from '../../src/telemetry/metrics.js';

describe('FrameHistogram', () => {
  it('exposes exactly what prom-client Histogram exposes for the same observations', async () => {
    const a = new Registry();
    const b = new Registry();
    const fast = new FrameHistogram('x_seconds', 'help text', 'direction', FRAME_BUCKETS, a);
    const ref = new Histogram({ name: 'x_seconds', help: 'help text', labelNames: ['direction'], buckets: FRAME_BUCKETS, registers: [b] });
    fast.zero({ direction: 'model_to_caller' });
    ref.zero({ direction: 'model_to_caller' });
    const samples = [0, 0.000009, 0.00001, 0.00002, 0.0003, 0.004, 0.1, 0.1000001, 7, 0.00005];
    const c = fast.labels('caller_to_model');
    const r = ref.labels('caller_to_model');
    for (const v of samples) {
      c.observe(v);
      r.observe(v);
    }
    expect(await a.metrics()).toBe(await b.metrics());
    // prom-client adds `exemplar: null` to each value; everything else must match.
    const strip = (m: unknown) => JSON.parse(JSON.stringify(m, (k, v: unknown) => (k === 'exemplar' ? undefined : v))) as unknown;
    expect(strip(await a.getMetricsAsJSON())).toEqual(strip(await b.getMetricsAsJSON()));
  });

  it('binds a child once and resets', async () => {
    const reg = new Registry();
    const h = new FrameHistogram('y_seconds', 'h', 'direction', [0.001], reg);
    expect(h.labels('a')).toBe(h.labels('a'));
    h.labels('a').observe(0.0005);
    expect(await reg.metrics()).toContain('y_seconds_count{direction="a"} 1');
    h.reset();
    expect(await reg.metrics()).not.toContain('y_seconds_count');
  });
});
