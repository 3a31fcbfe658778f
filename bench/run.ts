/**
 * `npm run bench`: Switchboard against the baseline relay at rising numbers of concurrent calls. Owns
 * the processes (relay pinned to core 0, this driver to core 1), /proc and /metrics sampling, the
 * tables, JSON and SVG output. Callers, the sim model and stamps are driver.ts's; numbers stats.ts's.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { relayLatency } from '../src/sim/call-cli.js';
import { metricSum } from '../src/sim/prom-text.js';
import { DEMO_NUMBER } from '../src/tenants/tenant.js';
import { BENCH_ACCOUNT_SID, BENCH_AUTH_TOKEN, BENCH_TOKEN_VAR } from './bench-tenant.js';
import { formatProgress, runLoad, type LoadResult } from '../loadtest/node-driver.js';
import { BenchDriver, type DriverResult } from './driver.js';
import { makeBenchTls, type BenchTls } from './tls.js';
import { gcMemoryUsage, watchInspectorUrl, type GcMemory } from './inspector-heap.js';
import { fmt, formatTable, linearFit, ratio, svgLinePlot } from './stats.js';
import { freePort } from '../test/helpers/redis-process.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const STREAM_SECRET = 'bench-stream-token-secret-0123456789abcdef';

/** `floor` is bench/floor-relay.ts: the same stack doing nothing but splice (what the harness adds). */
export type RelayKind = 'switchboard' | 'switchboard-metrics-off' | 'baseline' | 'floor';

export interface BenchOptions {
  levels: number[];
  seconds: number;
  rampPerSec: number;
  settleSeconds: number;
  metricsOff: boolean;
  /** Also run the floor relay at every level (bench/floor-relay.ts). */
  floor: boolean;
  /** After the levels, run this `npm run load` scenario against a fresh Switchboard (pinned likewise). */
  load: string | undefined;
  /** Stretch or squeeze the load scenario to this many seconds (its own plan when unset). */
  loadSeconds: number | undefined;
  outDir: string;
  /** Pin the relay to core 0 and this process to core 1 (when taskset and 2+ cores exist). */
  pin: boolean;
  /** Run Switchboard with --cpu-prof at this level (profiles land in outDir/prof). */
  cpuProfLevel: number | undefined;
  quiet: boolean;
  /** Extra environment for the Switchboard children only (`--sb-env K=V,K=V`): A/B of a setting. */
  sbEnv: Record<string, string>;
  /** The model leg over TLS: the sim model serves `wss` with a CA made at run time (bench/tls.ts). */
  tls: boolean;
  /** Audio per model delta in ms (`--delta-ms`; the sim's 100 when unset): the real API's are often tens of ms. */
  deltaMs?: number;
  /** Milliseconds between model deltas (`--delta-gap-ms`; the loadtest mode's 20 when unset). */
  deltaGapMs?: number;
  /** Only these relays (`--only switchboard,baseline`): an A/B of one relay without the others' minutes. */
  only?: RelayKind[];
  /** Extra node flags for the Switchboard children (`--sb-node-flags=--trace-gc`: the `=` form, since a value starting with `--` is read as an option), after the image's own. */
  sbNodeFlags?: string[];
}

export interface RunResult {
  relay: RelayKind;
  level: number;
  driver: DriverResult;
  relayCpuPercent: number;
  cpuPerCallPercent: number | null;
  rssMB: number | null;
  /** Heap used: after a forced full GC (`heapSource: 'gc'`, via the inspector) or, failing that, as found. */
  heapMB: number | null;
  heapSource: 'gc' | 'no-gc' | null;
  /** `process.memoryUsage()` of the relay after the forced GC, calls still up (bytes). */
  gcMemory: GcMemory | null;
  /** Switchboard's own histogram over the window (null for the baseline). */
  switchboardHistogram: {
    callerToModel: { p50Ms: number | null; p99Ms: number | null; count: number };
    modelToCaller: { p50Ms: number | null; p99Ms: number | null; count: number };
    /** `switchboard_turn_latency_seconds` over the window: its mean (sum/count; the buckets are 100 ms wide). Absent in older JSON. */
    turn?: { meanMs: number | null; count: number };
  } | null;
  switchboardDropped: number | null;
  /**
   * CPU on each core spent by processes other than the relay and this driver during the window
   * (% of that core, from /proc/stat): the machine is shared, and other work there distorts latency.
   */
  otherCpuPercent: { core0: number; core1: number } | null;
  loadAvg1m: number;
  /** Model sessions the relay opened over TLS during this run (0 unless `--tls`). */
  modelTlsUpgrades: number;
}

export interface BenchReport {
  startedAt: string;
  machine: { cpuModel: string; cores: number; node: string; pinned: boolean; note: string };
  options: Omit<BenchOptions, 'outDir' | 'quiet'>;
  runs: RunResult[];
  summary: BenchSummary;
  /** The `--load` run, when asked for. */
  load?: LoadRun;
  /** The node flags every Switchboard child started with: the image's (Dockerfile CMD) and `--sb-node-flags`. Absent in older JSON. */
  switchboardNodeFlags?: string[];
  /** Every relay run (or the load run) that failed: the bench then exits non-zero and the report refuses the JSON. Absent in older JSON. */
  failures?: BenchFailure[];
  files: { json: string; svg: string[] };
}

/** A relay run at one level (or the `--load` run, `level` null) that did not complete. */
export interface BenchFailure {
  relay: RelayKind | 'load';
  level: number | null;
  error: string;
}

/** The relays a bench with these options runs at every level, in order. */
export function benchKinds(o: Pick<BenchOptions, 'floor' | 'metricsOff' | 'only'>): RelayKind[] {
  const all: RelayKind[] = [...(o.floor ? (['floor'] as const) : []), 'switchboard', ...(o.metricsOff ? (['switchboard-metrics-off'] as const) : []), 'baseline'];
  const only = o.only;
  return only ? (['floor', 'switchboard', 'switchboard-metrics-off', 'baseline'] as const).filter((k) => only.includes(k)) : all;
}

/** One `npm run load` scenario against a Switchboard process pinned like the bench's, with its costs. */
export interface LoadRun {
  result: LoadResult;
  relay: { cpuPercent: number; rssMBMax: number | null; gcMemory: GcMemory | null; peakCalls: number };
}

export interface BenchSummary {
  perRelay: Array<{
    relay: RelayKind;
    /** Slope of the GC'd heap over calls held (KB per call). */
    heapKBPerCall: number | null;
    /** Slope of external + array buffers after GC (KB per call): socket buffers live there. */
    externalKBPerCall: number | null;
    rssKBPerCall: number | null;
    cpuPercentPerCall: number | null;
    /** The CPU line's intercept: the relay's fixed cost with no calls (% of one core). */
    cpuFixedPercent: number | null;
    rssFixedMB: number | null;
    /** Highest level held in full with both directions' p99 ≤ 2 ms and no drops. */
    maxCallsAtP99Under2ms: number;
    /** 100 % of one core / CPU per call (what the core would carry if CPU were the only limit). */
    cpuBoundCallsPerCore: number | null;
  }>;
}

/** `npm run bench -- …` arguments. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      levels: { type: 'string' },
      seconds: { type: 'string' },
      ramp: { type: 'string' },
      settle: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'metrics-off': { type: 'boolean', default: false },
      floor: { type: 'boolean', default: false },
      load: { type: 'string' },
      'load-seconds': { type: 'string' },
      out: { type: 'string' },
      'no-pin': { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
      quiet: { type: 'boolean', default: false },
      tls: { type: 'boolean', default: false },
      'sb-env': { type: 'string' },
      'delta-ms': { type: 'string' },
      'delta-gap-ms': { type: 'string' },
      only: { type: 'string' },
      'sb-node-flags': { type: 'string' },
    },
    strict: true,
  });
  const quick = values.quick === true;
  const num = (v: string | undefined, name: string, dflt: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
    return n;
  };
  const levels = (values.levels ?? (quick ? '20,50' : '50,100,200,300,400')).split(',').map((s) => num(s.trim(), 'levels', 1));
  return {
    levels: levels.map((n) => Math.round(n)),
    seconds: num(values.seconds, 'seconds', quick ? 8 : 20),
    rampPerSec: num(values.ramp, 'ramp', 20),
    settleSeconds: num(values.settle, 'settle', quick ? 2 : 3),
    metricsOff: values['metrics-off'] === true,
    floor: values.floor === true,
    load: values.load,
    loadSeconds: values['load-seconds'] !== undefined ? num(values['load-seconds'], 'load-seconds', 1) : undefined,
    outDir: resolve(values.out ?? join(ROOT, 'bench/results')),
    pin: values['no-pin'] !== true,
    cpuProfLevel: values['cpu-prof'] !== undefined ? num(values['cpu-prof'], 'cpu-prof', 1) : undefined,
    quiet: values.quiet === true,
    tls: values.tls === true,
    ...(values['delta-ms'] !== undefined ? { deltaMs: Math.round(num(values['delta-ms'], 'delta-ms', 100)) } : {}),
    ...(values['delta-gap-ms'] !== undefined ? { deltaGapMs: Math.round(num(values['delta-gap-ms'], 'delta-gap-ms', 20)) } : {}),
    ...(values.only !== undefined ? { only: parseOnly(values.only) } : {}),
    ...(values['sb-node-flags'] !== undefined ? { sbNodeFlags: values['sb-node-flags'].split(/\s+/).filter((f) => f !== '') } : {}),
    sbEnv: Object.fromEntries(
      (values['sb-env'] ?? '')
        .split(',')
        .filter((kv) => kv !== '')
        .map((kv) => {
          const i = kv.indexOf('=');
          if (i <= 0) throw new Error(`--sb-env wants KEY=VALUE[,KEY=VALUE], got ${kv}`);
          return [kv.slice(0, i), kv.slice(i + 1)];
        }),
    ),
  };
}

const RELAY_KINDS: readonly RelayKind[] = ['switchboard', 'switchboard-metrics-off', 'baseline', 'floor'];

function parseOnly(v: string): RelayKind[] {
  const kinds = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const bad = kinds.filter((k) => !(RELAY_KINDS as readonly string[]).includes(k));
  if (kinds.length === 0 || bad.length > 0) throw new Error(`--only wants relays from ${RELAY_KINDS.join(',')}, got ${v}`);
  return kinds as RelayKind[];
}

// --- processes ------------------------------------------------------------------------------------

const children = new Set<ChildProcess>();

function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
}

/** `taskset` is there to pin processes to cores (util-linux). */
export function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface RelayProcess {
  kind: RelayKind;
  pid: number;
  baseUrl: string;
  child: ChildProcess;
  /** The child's inspector (loopback, port chosen by the kernel); null when it never announced one. */
  inspectorUrl: string | null;
}

/** Every relay runs as a plain `node` process on compiled JS (buildRelays), as the image runs it. */
const RELAYS_DIST = join(ROOT, 'dist', 'bench-relays');
const SCRIPTS: Record<RelayKind, string> = {
  switchboard: join(RELAYS_DIST, 'src/main.js'),
  'switchboard-metrics-off': join(RELAYS_DIST, 'src/main.js'),
  baseline: join(RELAYS_DIST, 'bench/baseline-relay.js'),
  floor: join(RELAYS_DIST, 'bench/floor-relay.js'),
};

/**
 * The node flags the image starts the relay with: the Dockerfile's last CMD (exec form) between
 * `node` and the script. Switchboard children get the same, so the bench measures what production runs.
 */
export function imageNodeFlags(dockerfile: string): string[] {
  const cmds = dockerfile.split('\n').filter((l) => /^CMD\s*\[/.test(l));
  const last = cmds[cmds.length - 1];
  if (!last) throw new Error('Dockerfile: no CMD in exec form');
  const argv = JSON.parse(last.replace(/^CMD\s*/, '')) as unknown;
  if (!Array.isArray(argv) || argv[0] !== 'node' || !argv.every((a) => typeof a === 'string')) throw new Error(`Dockerfile: CMD is not ["node", ...]: ${last}`);
  const script = argv.findIndex((a: string, i: number) => i > 0 && !a.startsWith('-'));
  if (script < 0) throw new Error(`Dockerfile: CMD names no script: ${last}`);
  return argv.slice(1, script);
}

const IMAGE_NODE_FLAGS = imageNodeFlags(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));

/** Compile the relays (bench/tsconfig.relays.json, incremental) so no child carries tsx's loader. */
function buildRelays(log: (s: string) => void): void {
  const t0 = performance.now();
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'bench/tsconfig.relays.json')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 300_000,
  });
  log(`relays compiled to ${RELAYS_DIST} in ${fmt((performance.now() - t0) / 1000, 1)} s`);
}

/** Set by runBench with `--tls`: the model's key pair and the CA the relays are told to trust. */
let benchTls: BenchTls | undefined;

async function startRelayProcess(kind: RelayKind, modelUrl: string, o: BenchOptions, pinned: boolean, level: number | string): Promise<RelayProcess> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const script = SCRIPTS[kind];
  // The inspector only listens (loopback, kernel-chosen port) until run.ts asks for one GC'd reading
  // after each window: no domain is enabled, so nothing is profiled or paused meanwhile.
  const nodeArgs = ['--inspect=127.0.0.1:0'];
  // Switchboard starts as the image starts it (Dockerfile CMD's node flags), plus any A/B flags.
  if (kind === 'switchboard' || kind === 'switchboard-metrics-off') nodeArgs.push(...IMAGE_NODE_FLAGS, ...(o.sbNodeFlags ?? []));
  if (kind === 'switchboard' && o.cpuProfLevel === level) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', join(o.outDir, 'prof'));
  const cmd = pinned ? 'taskset' : process.execPath;
  const args = pinned ? ['-c', '0', process.execPath, ...nodeArgs, script] : [...nodeArgs, script];
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: baseUrl,
    OPENAI_API_KEY: 'sim',
    OPENAI_REALTIME_URL: modelUrl,
    LOG_LEVEL: 'warn',
    STREAM_TOKEN_SECRET: STREAM_SECRET,
    FRAME_METRICS: kind === 'switchboard-metrics-off' ? 'false' : 'true',
    // Every simulated call comes from 127.0.0.1 and one tenant: lift the per-address connection
    // limit and the demo tenant's 50-call cap, which would otherwise be what the bench measures.
    MEDIA_CONNECT_PER_MINUTE: '0',
    TENANTS_FILE: join(ROOT, 'bench', 'tenants.yaml'),
    [BENCH_TOKEN_VAR]: BENCH_AUTH_TOKEN,
    // The normal Node way to trust a private CA: read once at startup by every TLS client.
    ...(benchTls ? { NODE_EXTRA_CA_CERTS: benchTls.caPath } : {}),
    ...(kind === 'switchboard' || kind === 'switchboard-metrics-off' ? o.sbEnv : {}),
  };
  // The sample logs to stdout: keep its console.log calls, send them to /dev/null. stderr goes to a
  // file through this process, which reads the inspector URL from it on the way.
  const logPath = join(o.outDir, `${kind}-${level}.log`);
  const errLog = createWriteStream(logPath);
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', kind === 'baseline' ? 'ignore' : 'pipe', 'pipe'] });
  child.stdout?.pipe(errLog, { end: false });
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.once('close', () => errLog.end());
  const pid = child.pid;
  if (pid === undefined || !child.stderr) throw new Error(`cannot start ${kind}`);
  let inspectorUrl: string | null = null;
  watchInspectorUrl(child.stderr, (chunk) => errLog.write(chunk)).then(
    (url) => (inspectorUrl = url),
    () => undefined,
  );
  // Ready when it answers HTTP; bounded, and fails fast when the process dies.
  const readyPath = kind === 'baseline' ? '/' : '/healthz';
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`${kind} exited with ${child.exitCode} (see ${logPath})`);
    try {
      const res = await fetch(baseUrl + readyPath, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      // The inspector announces itself before the script runs, so it is known once HTTP answers.
      if (res.ok) return { kind, pid, baseUrl, child, inspectorUrl };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${kind} did not answer ${readyPath} within 30 s`);
}

async function stopRelayProcess(r: RelayProcess): Promise<void> {
  if (r.child.exitCode !== null || r.child.signalCode !== null) return;
  const exited = new Promise<void>((ok) => r.child.once('exit', () => ok()));
  // SIGTERM first: Switchboard drains (its calls are already gone) and writes a --cpu-prof profile.
  r.child.kill('SIGTERM');
  const t = setTimeout(() => r.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

// --- /proc and /metrics -------------------------------------------------------------------------------

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process, in seconds. */
export function procCpuSeconds(statText: string): number {
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const rest = statText.slice(statText.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

function readCpu(pid: number): number {
  return procCpuSeconds(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/** Busy and total jiffies per core from /proc/stat. */
export function procStatCores(text: string): Array<{ busy: number; total: number }> {
  const out: Array<{ busy: number; total: number }> = [];
  for (const line of text.split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const f = (m[2] ?? '').split(/\s+/).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    out[Number(m[1])] = { busy: total - idle, total };
  }
  return out;
}

function readRssMB(pid: number): number | null {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : null;
}

async function getText(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return res.text();
}

/**
 * Heap after a forced full GC through the relay's inspector; when that fails (no inspector line), the
 * heap as found, no GC: Switchboard's from /metrics already scraped, the baseline's /__mem.
 */
async function readHeap(r: RelayProcess, metricsText: string): Promise<{ heapMB: number | null; source: 'gc' | 'no-gc' | null; gc: GcMemory | null }> {
  if (r.inspectorUrl) {
    try {
      const gc = await gcMemoryUsage(r.inspectorUrl);
      return { heapMB: gc.heapUsed / 2 ** 20, source: 'gc', gc };
    } catch {
      // fall through to the un-GC'd figure
    }
  }
  try {
    if (r.kind === 'baseline') {
      const mem = JSON.parse(await getText(`${r.baseUrl}/__mem`)) as { heapUsed: number };
      return { heapMB: mem.heapUsed / 2 ** 20, source: 'no-gc', gc: null };
    }
    if (r.kind === 'floor' || !metricsText) return { heapMB: null, source: null, gc: null };
    return { heapMB: metricSum(metricsText, 'nodejs_heap_size_used_bytes') / 2 ** 20, source: 'no-gc', gc: null };
  } catch {
    return { heapMB: null, source: null, gc: null };
  }
}

// --- one run ----------------------------------------------------------------------------------------

async function runOne(kind: RelayKind, level: number, o: BenchOptions, pinned: boolean, log: (s: string) => void): Promise<RunResult> {
  const driver = await BenchDriver.start(benchTls, o.deltaMs, o.deltaGapMs);
  let relay: RelayProcess | undefined;
  try {
    relay = await startRelayProcess(kind, `${driver.model.url}`, o, pinned, level);
    const r = relay;
    let cpu0 = 0;
    let cpuSpent = 0;
    let driverCpu0 = process.cpuUsage();
    let driverCpuSec = 0;
    let stat0: Array<{ busy: number; total: number }> = [];
    let stat1: Array<{ busy: number; total: number }> = [];
    let metrics0 = '';
    let metrics1 = '';
    const rss: number[] = [];
    let heap: Awaited<ReturnType<typeof readHeap>> = { heapMB: null, source: null, gc: null };
    // RSS comes from /proc and costs the relay nothing. Heap needs the relay's attention (a full GC
    // through the inspector), and Switchboard's /metrics serialises every series (milliseconds of its
    // loop), so both are read after the window closed, never in the middle of it.
    const sampleRss = (): Promise<void> => {
      const v = readRssMB(r.pid);
      if (v !== null) rss.push(v);
      return Promise.resolve();
    };
    const isSb = kind === 'switchboard' || kind === 'switchboard-metrics-off';
    const tag = `[${kind} ${level}]`;
    const d = await driver.runLevel(
      { baseUrl: r.baseUrl, calls: level, rampPerSec: o.rampPerSec, windowMs: o.seconds * 1000, settleMs: o.settleSeconds * 1000 },
      {
        windowStart: async () => {
          if (isSb) metrics0 = await getText(`${r.baseUrl}/metrics`);
          cpu0 = readCpu(r.pid);
          stat0 = procStatCores(readFileSync('/proc/stat', 'utf8'));
          driverCpu0 = process.cpuUsage();
        },
        windowEnd: async () => {
          cpuSpent = readCpu(r.pid) - cpu0;
          stat1 = procStatCores(readFileSync('/proc/stat', 'utf8'));
          const du = process.cpuUsage(driverCpu0);
          driverCpuSec = (du.user + du.system) / 1e6;
          await sampleRss();
          if (isSb) metrics1 = await getText(`${r.baseUrl}/metrics`);
        },
        afterGrace: async () => {
          heap = await readHeap(r, metrics1);
        },
        sample: sampleRss,
        progress: (p) => log(`${tag} ${p.phase}: ${p.callsUp} calls up, ${p.callsFailed} failed, p99 ${fmt(p.p99Ms, 3)} ms`),
      },
    );
    const relayCpuPercent = (cpuSpent / (d.windowMs / 1000)) * 100;
    let otherCpuPercent: RunResult['otherCpuPercent'] = null;
    const c0a = stat0[0];
    const c0b = stat1[0];
    const c1a = stat0[1];
    const c1b = stat1[1];
    if (pinned && c0a && c0b && c1a && c1b) {
      // Pinned: everything on core 0 beyond the relay, on core 1 beyond the driver, is someone else's.
      const pct = (a: { busy: number; total: number }, b: { busy: number; total: number }, ours: number): number =>
        Math.max(0, ((b.busy - a.busy) / CLK_TCK - ours) / ((b.total - a.total) / CLK_TCK)) * 100;
      otherCpuPercent = { core0: pct(c0a, c0b, cpuSpent), core1: pct(c1a, c1b, driverCpuSec) };
    }
    let hist: RunResult['switchboardHistogram'] = null;
    let dropped: number | null = null;
    if (isSb && metrics0 && metrics1) {
      const lat = relayLatency(metrics0, metrics1);
      hist = { callerToModel: lat.frames.caller_to_model, modelToCaller: lat.frames.model_to_caller, turn: { meanMs: lat.turn.meanMs, count: lat.turn.count } };
      dropped = metricSum(metrics1, 'switchboard_frames_dropped_total') - metricSum(metrics0, 'switchboard_frames_dropped_total');
    }
    return {
      relay: kind,
      level,
      driver: d,
      relayCpuPercent,
      cpuPerCallPercent: d.callsHeld > 0 ? relayCpuPercent / d.callsHeld : null,
      rssMB: rss.length > 0 ? rss.reduce((a, b) => a + b, 0) / rss.length : null,
      heapMB: heap.heapMB,
      heapSource: heap.source,
      gcMemory: heap.gc,
      switchboardHistogram: hist,
      switchboardDropped: dropped,
      otherCpuPercent,
      loadAvg1m: loadavg()[0] ?? 0,
      modelTlsUpgrades: driver.model.tlsUpgrades,
    };
  } finally {
    if (relay) await stopRelayProcess(relay);
    await driver.close();
  }
}

// --- report -----------------------------------------------------------------------------------------

const lat = (v: number | null): string => fmt(v, 3);

function levelTable(runs: readonly RunResult[], prevByRelay: ReadonlyMap<RelayKind, RunResult>): string {
  const rows: string[][] = [
    ['relay', 'held', 'failed', 'c2m p50', 'p99', 'p999', 'm2c p50', 'p99', 'p999', 'hist c2m p50/p99', 'hist m2c p50/p99', 'turn mean ms', 'CPU %', 'CPU %/call', 'RSS MB', 'GC\'d heap MB', 'heap KB/call', 'drops c2m', 'm2c', 'sb drops', 'driver CPU %', 'driver lag p99', 'other CPU % core0/1'],
  ];
  for (const r of runs) {
    const d = r.driver;
    const prev = prevByRelay.get(r.relay);
    const heapPerCall = prev && prev.heapMB !== null && r.heapMB !== null && r.level !== prev.level ? ((r.heapMB - prev.heapMB) * 1024) / (r.level - prev.level) : null;
    const h = r.switchboardHistogram;
    rows.push([
      r.relay,
      `${d.callsHeld}/${d.callsTarget}`,
      String(d.callsFailed),
      lat(d.callerToModel.latencyMs.p50),
      lat(d.callerToModel.latencyMs.p99),
      lat(d.callerToModel.latencyMs.p999),
      lat(d.modelToCaller.latencyMs.p50),
      lat(d.modelToCaller.latencyMs.p99),
      lat(d.modelToCaller.latencyMs.p999),
      h ? `${lat(h.callerToModel.p50Ms)}/${lat(h.callerToModel.p99Ms)}` : '-',
      h ? `${lat(h.modelToCaller.p50Ms)}/${lat(h.modelToCaller.p99Ms)}` : '-',
      h?.turn ? fmt(h.turn.meanMs, 1) : '-',
      fmt(r.relayCpuPercent, 1),
      fmt(r.cpuPerCallPercent, 3),
      fmt(r.rssMB, 1),
      fmt(r.heapMB, 1) + (r.heapSource === 'no-gc' ? '*' : ''),
      fmt(heapPerCall, 1),
      String(d.callerToModel.sent - d.callerToModel.received),
      String(d.modelToCaller.sent - d.modelToCaller.received),
      r.switchboardDropped === null ? '-' : String(r.switchboardDropped),
      fmt(d.driver.cpuPercent, 0) + (d.driver.saturated ? '!' : ''),
      fmt(d.driver.loopLagP99Ms, 1),
      r.otherCpuPercent ? `${fmt(r.otherCpuPercent.core0, 0)}/${fmt(r.otherCpuPercent.core1, 0)}` : '-',
    ]);
  }
  return formatTable(rows);
}

function ratioLine(runs: readonly RunResult[]): string | undefined {
  const sb = runs.find((r) => r.relay === 'switchboard');
  const bl = runs.find((r) => r.relay === 'baseline');
  if (!sb || !bl) return undefined;
  const p99 = (r: RunResult): number | null => Math.max(r.driver.callerToModel.latencyMs.p99 ?? NaN, r.driver.modelToCaller.latencyMs.p99 ?? NaN);
  const fl = runs.find((r) => r.relay === 'floor');
  return (
    `switchboard/baseline: CPU per call ${ratio(sb.cpuPerCallPercent, bl.cpuPerCallPercent)}, ` +
    `p99 ${ratio(p99(sb), p99(bl))}, p50 c2m ${ratio(sb.driver.callerToModel.latencyMs.p50, bl.driver.callerToModel.latencyMs.p50)}, ` +
    `RSS ${ratio(sb.rssMB, bl.rssMB)}, heap ${ratio(sb.heapMB, bl.heapMB)}` +
    (fl ? `; harness floor p99 ${lat(p99(fl))} ms (switchboard ${lat(p99(sb))}, baseline ${lat(p99(bl))})` : '')
  );
}

/** Per-relay per-call costs (slopes over levels) and calls per core at p99 ≤ 2 ms. */
export function summarise(runs: readonly RunResult[]): BenchSummary {
  const kinds = [...new Set(runs.map((r) => r.relay))];
  return {
    perRelay: kinds.map((relay) => {
      const rs = runs.filter((r) => r.relay === relay && r.driver.callsHeld > 0);
      const pts = (f: (r: RunResult) => number | null): Array<{ x: number; y: number }> =>
        rs.flatMap((r) => {
          const y = f(r);
          return y === null ? [] : [{ x: r.driver.callsHeld, y }];
        });
      // GC'd readings only, when every level has one: un-GC'd heap is noise of ±100 KB/call.
      const gcd = rs.every((r) => r.heapSource === 'gc');
      const heapFit = linearFit(pts((r) => (gcd || r.heapSource !== 'gc' ? r.heapMB : null)));
      const extFit = linearFit(pts((r) => (r.gcMemory ? (r.gcMemory.external + r.gcMemory.arrayBuffers) / 2 ** 20 : null)));
      const rssFit = linearFit(pts((r) => r.rssMB));
      const cpuFit = linearFit(pts((r) => r.relayCpuPercent));
      const cpuSlope = cpuFit?.slope ?? null;
      let best = 0;
      for (const r of rs) {
        const d = r.driver;
        const ok =
          d.callsHeld === d.callsTarget &&
          (d.callerToModel.latencyMs.p99 ?? Infinity) <= 2 &&
          (d.modelToCaller.latencyMs.p99 ?? Infinity) <= 2 &&
          d.callerToModel.sent === d.callerToModel.received;
        if (ok) best = Math.max(best, r.level);
      }
      return {
        relay,
        heapKBPerCall: heapFit === null ? null : heapFit.slope * 1024,
        externalKBPerCall: extFit === null ? null : extFit.slope * 1024,
        rssKBPerCall: rssFit === null ? null : rssFit.slope * 1024,
        cpuPercentPerCall: cpuSlope,
        cpuFixedPercent: cpuFit?.intercept ?? null,
        rssFixedMB: rssFit?.intercept ?? null,
        maxCallsAtP99Under2ms: best,
        cpuBoundCallsPerCore: cpuSlope !== null && cpuSlope > 0 ? 100 / cpuSlope : null,
      };
    }),
  };
}

function summaryTable(s: BenchSummary): string {
  const rows = [['relay', 'CPU %/call (slope)', 'calls/core if CPU-bound', 'max calls held at p99<=2ms', 'heap KB/call (GC\'d slope)', 'external KB/call', 'RSS KB/call (slope)']];
  for (const r of s.perRelay) {
    rows.push([r.relay, fmt(r.cpuPercentPerCall, 3), fmt(r.cpuBoundCallsPerCore, 0), String(r.maxCallsAtP99Under2ms), fmt(r.heapKBPerCall, 1), fmt(r.externalKBPerCall, 1), fmt(r.rssKBPerCall, 1)]);
  }
  return formatTable(rows);
}

const COLORS: Record<RelayKind, string> = { switchboard: '#1f77b4', 'switchboard-metrics-off': '#2ca02c', baseline: '#d62728', floor: '#7f7f7f' };

/** The bench's plots (`<base>-{p99,cpu,rss,heap}.svg`); capacity-report.ts redraws them from a JSON. */
export function plots(runs: readonly RunResult[], base: string): Array<{ path: string; svg: string }> {
  const kinds = [...new Set(runs.map((r) => r.relay))];
  const series = (f: (r: RunResult) => number | null, suffix = '', sel: (k: RelayKind) => boolean = () => true) =>
    kinds.filter(sel).map((k) => ({
      name: k + suffix,
      color: COLORS[k],
      points: runs.filter((r) => r.relay === k).map((r) => ({ x: r.level, y: f(r) })),
    }));
  return [
    {
      path: `${base}-p99.svg`,
      svg: svgLinePlot({
        title: 'Relay-added latency p99 (loopback, end to end), worst direction',
        xLabel: 'concurrent calls',
        yLabel: 'ms',
        series: series((r) => {
          const a = r.driver.callerToModel.latencyMs.p99;
          const b = r.driver.modelToCaller.latencyMs.p99;
          return a === null || b === null ? null : Math.max(a, b);
        }),
      }),
    },
    {
      path: `${base}-cpu.svg`,
      svg: svgLinePlot({ title: 'Relay CPU (100 % = one core)', xLabel: 'concurrent calls', yLabel: '% of one core', series: series((r) => r.relayCpuPercent) }),
    },
    {
      path: `${base}-rss.svg`,
      svg: svgLinePlot({ title: 'Relay RSS', xLabel: 'concurrent calls', yLabel: 'MB', series: series((r) => r.rssMB) }),
    },
    {
      path: `${base}-heap.svg`,
      svg: svgLinePlot({ title: "Relay heap used after a forced GC, calls up", xLabel: 'concurrent calls', yLabel: 'MB', series: series((r) => (r.heapSource === 'gc' ? r.heapMB : null)) }),
    },
  ];
}

// --- the load scenario ------------------------------------------------------------------------------

/**
 * One `npm run load` scenario (loadtest/node-driver.ts's runLoad, the same code as the CLI) against a
 * fresh Switchboard pinned to core 0, the sim model and callers in this process on core 1, with the
 * relay's CPU over the whole run, its peak RSS, and a GC'd heap reading while the most calls were up.
 */
async function runLoadScenario(scenario: string, o: BenchOptions, pinned: boolean, log: (s: string) => void): Promise<LoadRun> {
  const driver = await BenchDriver.start(benchTls, o.deltaMs, o.deltaGapMs);
  let relay: RelayProcess | undefined;
  try {
    relay = await startRelayProcess('switchboard', driver.model.url, o, pinned, `load-${scenario}`);
    const r = relay;
    const cpu0 = readCpu(r.pid);
    const t0 = performance.now();
    let rssMax: number | null = null;
    let peakCalls = 0;
    let gc: GcMemory | null = null;
    let gcBusy = false;
    let lastLog = 0;
    const result = await runLoad({
      scenario,
      url: r.baseUrl,
      to: DEMO_NUMBER,
      accountSid: BENCH_ACCOUNT_SID,
      authToken: BENCH_AUTH_TOKEN,
      json: true,
      allowRemote: false,
      ...(o.loadSeconds !== undefined ? { durationS: o.loadSeconds } : {}),
      onProgress: (p) => {
        const rss = readRssMB(r.pid);
        if (rss !== null) rssMax = Math.max(rssMax ?? 0, rss);
        // One GC'd reading when a new peak of calls is first reached after the ramp: the heap the
        // scenario's full load holds. Only once, so the GC pause lands on one moment of the run.
        if (p.up > peakCalls) {
          peakCalls = p.up;
        } else if (gc === null && !gcBusy && p.up === peakCalls && peakCalls > 0 && r.inspectorUrl) {
          gcBusy = true;
          gcMemoryUsage(r.inspectorUrl).then(
            (m) => (gc = m),
            () => undefined,
          );
        }
        if (p.elapsedS - lastLog >= 5) {
          lastLog = p.elapsedS;
          log(`[load ${scenario}] ${formatProgress(p)}`);
        }
      },
    });
    const cpuPercent = ((readCpu(r.pid) - cpu0) / ((performance.now() - t0) / 1000)) * 100;
    log(`[load ${scenario}] ${result.ok ? 'PASS' : 'FAIL'}: ${result.calls.completed} completed, ${result.calls.failed} failed, ${result.calls.refused} refused; relay CPU ${fmt(cpuPercent, 1)} % of one core`);
    return { result, relay: { cpuPercent, rssMBMax: rssMax, gcMemory: gc, peakCalls } };
  } finally {
    if (relay) await stopRelayProcess(relay);
    await driver.close();
  }
}

// --- the bench --------------------------------------------------------------------------------------

/** Run every level for every relay, print as it goes, write JSON and SVGs. */
export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const log = (s: string): void => {
    if (!o.quiet) console.log(s);
  };
  mkdirSync(o.outDir, { recursive: true });
  const cores = availableParallelism();
  const taskset = hasTaskset();
  const pinned = o.pin && taskset && cores >= 2;
  let note = pinned ? 'relay pinned to core 0, driver (callers + sim model) to core 1' : 'UNPINNED: ';
  if (!pinned) note += !o.pin ? '--no-pin given' : !taskset ? 'taskset missing' : 'fewer than 2 cores';
  if (pinned) execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' });
  log(`switchboard bench: levels ${o.levels.join(',')}, window ${o.seconds} s, ramp ${o.rampPerSec} calls/s; ${note}`);
  log(`switchboard node flags: ${[...IMAGE_NODE_FLAGS, ...(o.sbNodeFlags ?? [])].join(' ') || '(none)'} (the image's CMD${o.sbNodeFlags ? ' + --sb-node-flags' : ''})`);
  buildRelays(log);
  benchTls = o.tls ? makeBenchTls(join(o.outDir, 'tls')) : undefined;
  log(o.tls ? `model leg: wss (CA ${benchTls?.caPath ?? '?'} via NODE_EXTRA_CA_CERTS)` : 'model leg: ws (loopback, no TLS)');
  if (o.deltaMs !== undefined) log(`model deltas: ${o.deltaMs} ms of audio each`);
  if (o.deltaGapMs !== undefined) log(`model deltas: ${o.deltaGapMs} ms apart`);

  const startedAt = new Date().toISOString();
  const kinds = benchKinds(o);
  const runs: RunResult[] = [];
  const failures: BenchFailure[] = [];
  const prev = new Map<RelayKind, RunResult>();
  for (const level of o.levels) {
    const levelRuns: RunResult[] = [];
    for (const kind of kinds) {
      let r: RunResult;
      try {
        r = await runOne(kind, level, o, pinned, log);
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        log(`[${kind} ${level}] FAILED: ${error}`);
        failures.push({ relay: kind, level, error });
        continue;
      }
      levelRuns.push(r);
      runs.push(r);
      if (r.otherCpuPercent && Math.max(r.otherCpuPercent.core0, r.otherCpuPercent.core1) > 10) {
        log(`!!! SHARED MACHINE at ${kind} ${level}: other processes used ${fmt(r.otherCpuPercent.core0, 0)} % of core 0 and ${fmt(r.otherCpuPercent.core1, 0)} % of core 1 during the window: tail latencies include their interference`);
      }
      if (r.driver.driver.saturated) {
        log(`!!! DRIVER SATURATED at ${kind} ${level}: driver CPU ${fmt(r.driver.driver.cpuPercent, 0)} %, loop lag p99 ${fmt(r.driver.driver.loopLagP99Ms, 1)} ms: latencies include the driver's own delay`);
      }
      for (const f of r.driver.failures) log(`[${kind} ${level}] ${f.count} failed: ${f.reason}`);
      const d = r.driver;
      log(`[${kind} ${level}] toward the callers, whole run: ${d.mediaToCallers} media + ${d.marksToCallers} marks (${fmt((d.mediaToCallers + d.marksToCallers) / level, 0)} per call), ${d.marksEchoed} mark echoes back`);
    }
    log(`\n== ${level} concurrent calls ==`);
    log(levelTable(levelRuns, prev));
    const rl = ratioLine(levelRuns);
    if (rl) log(rl);
    log('');
    for (const r of levelRuns) prev.set(r.relay, r);
  }
  const summary = summarise(runs);
  log('== per-call costs and capacity ==');
  log(summaryTable(summary));
  const sb = summary.perRelay.find((s) => s.relay === 'switchboard');
  const bl = summary.perRelay.find((s) => s.relay === 'baseline');
  if (sb && bl) {
    log(`calls per core at p99 <= 2 ms (measured levels): switchboard ${sb.maxCallsAtP99Under2ms}, baseline ${bl.maxCallsAtP99Under2ms}; ` +
      `CPU-bound estimate: switchboard ${fmt(sb.cpuBoundCallsPerCore, 0)}, baseline ${fmt(bl.cpuBoundCallsPerCore, 0)} (${ratio(sb.cpuBoundCallsPerCore, bl.cpuBoundCallsPerCore)})`);
  }

  let load: LoadRun | undefined;
  if (o.load !== undefined) {
    log(`\n== load scenario ${o.load} against Switchboard ==`);
    try {
      load = await runLoadScenario(o.load, o, pinned, log);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      log(`[load ${o.load}] FAILED: ${error}`);
      failures.push({ relay: 'load', level: null, error });
    }
  }

  const stamp = startedAt.replace(/[:.]/g, '-');
  const base = join(o.outDir, `bench-${stamp}`);
  const svgs = plots(runs, base);
  for (const p of svgs) writeFileSync(p.path, p.svg);
  const cpuModel = cpus()[0]?.model ?? 'unknown';
  const { outDir: _outDir, quiet: _quiet, ...options } = o;
  const report: BenchReport = {
    startedAt,
    machine: { cpuModel, cores, node: process.version, pinned, note },
    options,
    runs,
    summary,
    ...(load ? { load } : {}),
    switchboardNodeFlags: [...IMAGE_NODE_FLAGS, ...(o.sbNodeFlags ?? [])],
    failures,
    files: { json: `${base}.json`, svg: svgs.map((s) => s.path) },
  };
  writeFileSync(`${base}.json`, JSON.stringify(report, null, 2));
  log(`\nlatency = relay-added latency (loopback, end to end): stamped send time in the μ-law -> read on the far side, nothing subtracted`);
  log(`JSON: ${base}.json`);
  for (const p of svgs) log(`SVG:  ${p.path}`);
  for (const f of failures) log(`!!! FAILED: ${f.relay}${f.level === null ? '' : ` at ${f.level} calls`}: ${f.error}`);
  return report;
}

async function main(argv: readonly string[]): Promise<number> {
  let o: BenchOptions;
  try {
    o = parseBenchArgs(argv);
  } catch (err) {
    console.error(`npm run bench: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
  const report = await runBench(o);
  const failed = report.failures ?? [];
  if (failed.length > 0) {
    console.error(`npm run bench: ${failed.length} run(s) failed (${failed.map((f) => `${f.relay}${f.level === null ? '' : ` ${f.level}`}`).join(', ')}): the JSON is kept for diagnosis, but capacity-report refuses it`);
    return 1;
  }
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      killAll();
      process.exit(130);
    });
  }
  main(process.argv.slice(2)).then(
    (code) => {
      killAll();
      process.exit(code);
    },
    (err: unknown) => {
      console.error(`npm run bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      killAll();
      process.exit(1);
    },
  );
}
