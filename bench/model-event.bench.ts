/**
 * Old beside new for model audio deltas: parseModelEvent's decode-once scan against JSON.parse + zod
 * (and bare JSON.parse, what the public sample does). Run: npx tsx bench/model-event.bench.ts
 */
import { randomBytes } from 'node:crypto';
import { parseModelEvent, parseModelEventSlow } from '../src/model/index.js';

function delta(bytes: number): Buffer {
  const b64 = randomBytes(bytes).toString('base64');
  return Buffer.from(
    `{"type":"response.output_audio.delta","event_id":"event_CZ1xQ9f0aA","response_id":"resp_CZ1xQ8bb","item_id":"item_CZ1xQ8cc","output_index":0,"content_index":0,"delta":"${b64}"}`,
  );
}

const variants: [string, (b: Buffer) => unknown][] = [
  ['JSON.parse only (sample)', (b) => JSON.parse(b.toString('utf8')) as unknown],
  ['slow: JSON.parse + zod', parseModelEventSlow],
  ['fast: parseModelEvent', parseModelEvent],
];

let sink = 0;
function time(fn: (b: Buffer) => unknown, buf: Buffer, iterations: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) if (fn(buf)) sink++;
  return Number(process.hrtime.bigint() - t0) / iterations;
}

// The test machines are shared: interleave rounds and keep each variant's best, which is the
// figure least disturbed by other processes.
const ROUNDS = 7;
const cases: [string, number, number][] = [
  ['20 ms (160 B μ-law)', 160, 50_000],
  ['100 ms (800 B μ-law)', 800, 50_000],
  ['1 s (8 KB)', 8000, 10_000],
  ['5 s (40 KB)', 40_000, 2_000],
];
console.log(`node ${process.version} ${process.arch}; best of ${ROUNDS} interleaved rounds, ns/op`);
for (const [label, bytes, n] of cases) {
  const buf = delta(bytes);
  if (JSON.stringify(parseModelEvent(buf)) !== JSON.stringify(parseModelEventSlow(buf))) {
    throw new Error('fast and slow paths disagree');
  }
  const best = variants.map(() => Infinity);
  for (let r = 0; r < ROUNDS; r++) {
    variants.forEach(([, fn], i) => {
      best[i] = Math.min(best[i] as number, time(fn, buf, n));
    });
  }
  console.log(`-- ${label}, message ${buf.length} B`);
  variants.forEach(([name], i) =>
    console.log(`   ${name.padEnd(28)} ${(best[i] as number).toFixed(0).padStart(7)}`),
  );
  const slow = best[1] as number;
  const fast = best[2] as number;
  console.log(`   ${'speed-up vs JSON.parse + zod'.padEnd(28)} ${(slow / fast).toFixed(1).padStart(6)}x`);
}
if (sink < 0) console.log(sink);
