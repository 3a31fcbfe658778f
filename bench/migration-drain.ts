/**
 * Drain-by-migration figures: how long a relay with N live calls takes to empty after SIGTERM, and
 * the gap each caller hears (old stream's stop -> new stream's start, and -> first model audio on
 * it). Two relay processes on one redis-server behind the loopback service, the fake Twilio REST API
 * as TWILIO_API_BASE_URL, N simulated callers in this process. A bounded script, not a test:
 *   npx tsx bench/migration-drain.ts [--calls 50,100]
 * Prints a table and writes bench/results/migration-drain-<time>.json. Needs redis-server on PATH.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startFakeTwilioApi } from '../test/helpers/fake-twilio-api.js';
import { startLoopbackService } from '../test/helpers/loopback-service.js';
import { placeCall, randomSid, type CallReport } from '../src/sim/sim-caller.js';
import { BENCH_ACCOUNT_SID, BENCH_AUTH_TOKEN, BENCH_TOKEN_VAR } from './bench-tenant.js';
import { percentile } from './stats.js';

const ROOT = join(import.meta.dirname, '..');
const SECRET = 'migration-bench-stream-secret-0123456789';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** Spawn and resolve once `ready` appears in its output (bounded). */
function start(cmd: string, args: string[], env: Record<string, string>, ready: string): Promise<ChildProcess> {
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start: ${out.slice(-500)}`)), 60_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.includes(ready)) {
        clearTimeout(timer);
        child.stdout?.removeAllListeners('data');
        child.stderr?.removeAllListeners('data');
        child.stdout?.resume();
        child.stderr?.resume();
        resolve(child);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${out.slice(-500)}`)));
  });
}

const kill = (c: ChildProcess): Promise<void> =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((resolve) => (c.once('exit', () => resolve()), c.kill('SIGKILL')));

function stats(xs: number[]): { n: number; p50: number; p90: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => percentile(s, p) ?? NaN;
  return { n: s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: s[s.length - 1] ?? NaN };
}

interface LevelResult {
  calls: number;
  emptyMs: number;
  exitCode: number | null;
  moved: number;
  failed: number;
  gapMs: ReturnType<typeof stats>;
  audioGapMs: ReturnType<typeof stats>;
}

async function level(n: number): Promise<LevelResult> {
  const redisPort = await freePort();
  const redis = await start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {}, 'Ready to accept connections');
  // Polled once a second: on a loaded machine a slower poll keeps a busy but healthy relay in rotation.
  const svc = await startLoopbackService({ pollMs: 1000 });
  const api = await startFakeTwilioApi({ accounts: { [BENCH_ACCOUNT_SID]: BENCH_AUTH_TOKEN } });
  const relays: { url: string; child: ChildProcess }[] = [];
  try {
    for (const name of ['relay-a', 'relay-b']) {
      const port = await freePort();
      const child = await start(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        PORT: String(port),
        HOST: '127.0.0.1',
        PUBLIC_URL: svc.url,
        POD_NAME: name,
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        DRAIN_MODE: 'migrate',
        DRAIN_TIMEOUT_SECONDS: '120',
        TWILIO_API_BASE_URL: api.url,
        MIGRATION_START_DELAY_MS: '2500',
        STREAM_TOKEN_SECRET: SECRET,
        MODEL_PROVIDER: 'sim',
        SIM_MODEL_MODE: 'loadtest',
        TENANTS_FILE: join(ROOT, 'bench', 'tenants.yaml'),
        [BENCH_TOKEN_VAR]: BENCH_AUTH_TOKEN,
        LOG_LEVEL: 'info',
        LOG_FORMAT: 'json',
      }, '"relay listening"');
      relays.push({ url: `http://127.0.0.1:${port}`, child });
    }
    const [a, b] = relays as [(typeof relays)[0], (typeof relays)[0]];
    svc.add(a.url);
    await svc.waitFor((bs) => bs.length === 1 && bs[0]!.ready, 30_000, 'A ready');
    // Every call answered once (or already over): the calls are live on A.
    let settled = 0;
    let all!: () => void;
    const allAnswered = new Promise<void>((resolve) => (all = resolve));
    const settle = (): void => void (++settled === n && all());
    // Long enough to outlive the ramp and the move on a loaded machine.
    const turns = Array.from({ length: 15 }, (_, i) => ({ say: `Question number ${i + 1}, please answer briefly.` }));
    const calls: Promise<CallReport>[] = [];
    for (let i = 0; i < n; i++) {
      let first = true;
      const once = (): void => {
        if (first) settle();
        first = false;
      };
      calls.push(
        placeCall({
          baseUrl: svc.url,
          to: '+15005550006',
          accountSid: BENCH_ACCOUNT_SID,
          authToken: BENCH_AUTH_TOKEN,
          callSid: randomSid('CA'),
          twilioApi: api,
          script: { turns, hangupAfterMs: 300, maxCallMs: 300_000, replyTimeoutMs: 10_000 },
          hooks: { onTurn: (t) => void (t === 0 && once()) },
        }).finally(once),
      );
      // A storm of n calls at once is its own benchmark: ramp over ~2 s.
      await new Promise((resolve) => setTimeout(resolve, 2000 / n));
    }
    await Promise.race([allAnswered, new Promise((resolve) => setTimeout(resolve, 60_000))]);
    svc.add(b.url);
    await svc.waitFor((bs) => bs.filter((x) => x.ready).length === 2, 30_000, 'B ready');
    const exited = new Promise<number | null>((resolve) => a.child.once('exit', (code) => resolve(code)));
    const t0 = Date.now();
    a.child.kill('SIGTERM');
    const exitCode = await exited;
    const emptyMs = Date.now() - t0;
    const reports = await Promise.all(calls);
    const movedLegs = reports.flatMap((r) => r.legs.filter((l) => l.via === 'update'));
    const errors = reports.flatMap((r) => r.errors);
    if (errors.length > 0) console.log(`errors (first 5 of ${errors.length}):`, errors.slice(0, 5));
    return {
      calls: n,
      emptyMs,
      exitCode,
      moved: movedLegs.length,
      failed: reports.filter((r) => r.errors.length > 0 || r.stage !== 'connected').length,
      gapMs: stats(movedLegs.flatMap((l) => (l.gapMs === null ? [] : [l.gapMs]))),
      audioGapMs: stats(movedLegs.flatMap((l) => (l.firstAudioMs === null ? [] : [l.firstAudioMs]))),
    };
  } finally {
    await Promise.all(relays.map((r) => kill(r.child)));
    await api.close();
    await svc.close();
    await kill(redis);
  }
}

async function main(): Promise<void> {
  const arg = process.argv.indexOf('--calls');
  const levels = (arg > 0 ? (process.argv[arg + 1] ?? '') : '50,100').split(',').map(Number).filter((x) => x > 0);
  const results: LevelResult[] = [];
  for (const n of levels) {
    const r = await level(n);
    results.push(r);
    const f = (s: ReturnType<typeof stats>): string => `${s.p50.toFixed(0)} / ${s.p90.toFixed(0)} / ${s.p99.toFixed(0)} / ${s.max.toFixed(0)}`;
    console.log(
      `${n} calls: relay empty and exited (${r.exitCode}) ${(r.emptyMs / 1000).toFixed(1)} s after SIGTERM; moved ${r.moved}, failed ${r.failed}; ` +
        `gap stop->new stream start p50/p90/p99/max ${f(r.gapMs)} ms; stop->first model audio on the new stream ${f(r.audioGapMs)} ms`,
    );
  }
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  const file = join(ROOT, 'bench', 'results', `migration-drain-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), node: process.version, results }, null, 2));
  console.log(`wrote ${file}`);
}

await main();
