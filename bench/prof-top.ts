/**
 * The top self-time entries of a `--cpu-prof` profile (`npm run bench -- --cpu-prof 200` writes them
 * to bench/results/prof/): per function, and per dependency (`ws`, `uWebSockets.js`, node internals,
 * src/…), as % of the profile's samples. Idle and GC are listed apart, so the rest reads as JS time.
 *
 *   npx tsx bench/prof-top.ts bench/results/prof/CPU.….cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a script belongs: a package under node_modules, node's own, or a repo path. */
function owner(url: string): string {
  if (url === '') return '(native / VM)';
  if (url.startsWith('node:')) return 'node internals';
  const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (m) return m[1]!;
  const s = /\/(src|bench|dist\/bench-relays\/src)\/(.*)$/.exec(url);
  return s ? `src/${s[2]!.split('/')[0]}` : url;
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string' } } });
  const file = positionals[0];
  if (file === undefined) throw new Error('usage: npx tsx bench/prof-top.ts <file.cpuprofile> [--top N]');
  const top = Math.max(1, Math.min(200, Number(values.top ?? 25) || 25));
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
    total += dt;
  }
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  for (const [id, t] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const key = `${functionName || '(anonymous)'}  ${url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*?\/(src|bench)\//, '$1/')}:${lineNumber + 1}`;
    fn.set(key, (fn.get(key) ?? 0) + t);
    const o = functionName === '(idle)' || functionName === '(garbage collector)' || functionName === '(program)' ? functionName : owner(url);
    pkg.set(o, (pkg.get(o) ?? 0) + t);
  }
  const pct = (t: number): string => ((t / total) * 100).toFixed(2).padStart(6) + ' %';
  console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled`);
  console.log('\nby owner (self time):');
  for (const [k, t] of [...pkg].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);
  console.log('\nby function (self time):');
  for (const [k, t] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);
}

main();
