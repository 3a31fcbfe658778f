/**
 * Where the relay's fixed memory goes: RSS and GC'd heap added by each dependency imported alone,
 * then by the compiled relay's own modules, then the whole relay started with no calls, each in a
 * fresh `node` process (plain node on dist/bench-relays, as the bench and the image run it).
 *
 *   npx tsx bench/module-rss.ts [--runs 3] [--no-build]
 *
 * Each figure is the median of `--runs` processes: RSS after `gc()` minus RSS of the same process
 * before the import; "(an empty module)" is what any first import costs, included in every row.
 * Packages share dependencies, so the single-package rows do not add up to the relay's; the
 * "relay" rows are the truth, the package rows say which import to look at.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_AUTH_TOKEN, BENCH_TOKEN_VAR } from './bench-tenant.js';

const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'dist/bench-relays');

/** What a relay start can import, heaviest suspects first. */
const PACKAGES = [
  'twilio',
  '@opentelemetry/sdk-trace-base',
  '@opentelemetry/exporter-trace-otlp-http',
  '@opentelemetry/resources',
  '@opentelemetry/api',
  'prom-client',
  'pino',
  'zod',
  'ioredis',
  'yaml',
  'ws',
  // The production build (Node 24); on Node ≤ 20 the relay loads this older one instead (src/server/uws.ts).
  Number(process.versions.node.split('.')[0]) >= 22 ? 'uWebSockets.js' : 'uws-legacy',
];

interface Probe {
  rssMB: number;
  heapMB: number;
}

/** One fresh process: `gc()`, read memory, import `specifiers` in order, `gc()`, read again. */
function probeImport(specifiers: readonly string[]): Promise<Probe> {
  const code = [
    'const mb = (n) => n / 1048576;',
    'gc(); const a = process.memoryUsage();',
    `for (const s of ${JSON.stringify(specifiers)}) await import(s);`,
    'gc(); await new Promise((r) => setTimeout(r, 200)); gc(); const b = process.memoryUsage();',
    'console.log(JSON.stringify({ rssMB: mb(b.rss - a.rss), heapMB: mb(b.heapUsed - a.heapUsed) }));',
    'process.exit(0);',
  ].join('\n');
  return run(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], specifiers.join(', '));
}

function run(cmd: string, args: string[], what: string): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || !line.startsWith('{')) return reject(new Error(`probe of ${what} failed (${code}): ${err.slice(-500)}`));
      resolve(JSON.parse(line) as Probe);
    });
  });
}

/** The compiled relay started as the bench starts it, no calls: its VmRSS once /healthz answers (+1 s). */
async function probeRelay(): Promise<Probe> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'data:text/javascript,process.on("SIGUSR2",()=>{gc();console.error("heap "+process.memoryUsage().heapUsed)})', join(DIST, 'src/main.js')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      OPENAI_API_KEY: 'sim',
      OPENAI_REALTIME_URL: 'ws://127.0.0.1:9/v1/realtime',
      LOG_LEVEL: 'warn',
      STREAM_TOKEN_SECRET: 'bench-stream-token-secret-0123456789abcdef',
      MEDIA_CONNECT_PER_MINUTE: '0',
      TENANTS_FILE: join(ROOT, 'bench', 'tenants.yaml'),
      [BENCH_TOKEN_VAR]: BENCH_AUTH_TOKEN,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  try {
    for (let i = 0; i < 300; i++) {
      if (child.exitCode !== null) throw new Error(`relay exited ${child.exitCode}: ${err.slice(-500)}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.ok) break;
      } catch {
        // not yet listening
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 1000));
    child.kill('SIGUSR2');
    for (let i = 0; i < 50 && !/heap \d+/.test(err); i++) await new Promise((r) => setTimeout(r, 100));
    const heap = Number(/heap (\d+)/.exec(err)?.[1] ?? NaN);
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    const rssKB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    return { rssMB: rssKB / 1024, heapMB: heap / 1048576 };
  } finally {
    child.kill('SIGKILL');
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function medianOf(runs: number, f: () => Promise<Probe>): Promise<Probe> {
  const all: Probe[] = [];
  for (let i = 0; i < runs; i++) all.push(await f());
  return { rssMB: median(all.map((p) => p.rssMB)), heapMB: median(all.map((p) => p.heapMB)) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, 'no-build': { type: 'boolean', default: false } } });
  const runs = Math.max(1, Math.min(20, Number(values.runs ?? 3) || 3));
  if (values['no-build'] !== true) {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'bench/tsconfig.relays.json')], { stdio: 'inherit' });
  }
  const rows: [string, Probe][] = [];
  // What the first import costs by itself (the ESM loader, compile caches): part of every row below.
  rows.push(['(an empty module)', await medianOf(runs, () => probeImport(['data:text/javascript,export default 1']))]);
  for (const p of PACKAGES) rows.push([p, await medianOf(runs, () => probeImport([p]))]);
  const src = (f: string): string => new URL(`file://${join(DIST, 'src', f)}`).href;
  rows.push(['relay modules (src/server/index.js)', await medianOf(runs, () => probeImport([src('server/index.js')]))]);
  rows.push(['relay modules + main.js imports', await medianOf(runs, () => probeImport([src('server/index.js'), src('telemetry/index.js'), src('config.js')]))]);
  rows.push(['whole relay started, no calls (absolute)', await medianOf(runs, probeRelay)]);
  const w = Math.max(...rows.map(([n]) => n.length));
  console.log(`${'import'.padEnd(w)}  RSS MB  heap MB   (median of ${runs}, node ${process.version})`);
  for (const [n, p] of rows) console.log(`${n.padEnd(w)}  ${p.rssMB.toFixed(1).padStart(6)}  ${p.heapMB.toFixed(1).padStart(7)}`);
}

await main();
