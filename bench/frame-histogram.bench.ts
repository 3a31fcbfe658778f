/**
 * Per-frame observe cost, old beside new: prom-client's labelled child (validates and hashes the
 * labels on every call) vs FrameHistogram's bound child. `npx tsx bench/frame-histogram.bench.ts`
 */
import { Histogram, Registry } from 'prom-client';
import { FrameHistogram } from '../src/telemetry/frame-histogram.js';
import { FRAME_BUCKETS } from '../src/telemetry/metrics.js';

const N = 2_000_000;
const values = Float64Array.from({ length: 4096 }, (_, i) => (i % 97) * 0.000003);

function time(label: string, observe: (v: number) => void): number {
  for (let i = 0; i < 100_000; i++) observe(values[i & 4095]!); // warm up
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) observe(values[i & 4095]!);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / N);
  }
  console.log(`${label.padEnd(40)} ${best.toFixed(1).padStart(7)} ns/observe`);
  return best;
}

const old = new Histogram({ name: 'a', help: 'a', labelNames: ['direction'], buckets: FRAME_BUCKETS, registers: [new Registry()] }).labels('caller_to_model');
const fresh = new FrameHistogram('b', 'b', 'direction', FRAME_BUCKETS, new Registry()).labels('caller_to_model');
const a = time('prom-client Histogram.labels(..).observe', (v) => old.observe(v));
const b = time('FrameHistogram child.observe', (v) => fresh.observe(v));
console.log(`speed-up ${(a / b).toFixed(1)}x`);
