/**
 * `npm run load -- --scenario NAME`: the k6 scenarios of loadtest/lib/scenarios.js driven from Node
 * with placeCall (src/sim), bounded in calls and time, with live progress, a summary and thresholds.
 * Call protocol: src/sim/portable (caller-core.js, twilio-http.js); scenario data and threshold
 * logic: scenarios.js; k6 runs: k6-adapter.js.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { CallRegistry } from '../src/sim/sim-caller.js';
import { placeCall, type CallReport } from '../src/sim/sim-caller.js';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER } from '../src/tenants/tenant.js';
import {
  METRICS,
  arrivalOffsetsMs,
  callOutcomeMetrics,
  callScript,
  evaluateThresholds,
  frameGapTap,
  getScenario,
  planDurationS,
  quantile,
  scaleScenario,
  scenarioNames,
  streamDialUrl,
  trendValues,
  type Scenario,
  type Summary,
  type ThresholdResult,
} from './lib/scenarios.js';

export interface LoadOptions {
  scenario: string;
  /** http(s) base of the relay: webhook and Media Stream go here. */
  url: string;
  /** The relay's PUBLIC_URL, which signatures cover (default: url). */
  publicUrl?: string;
  to: string;
  accountSid: string;
  authToken: string;
  /** Stretch or squeeze the scenario's plan to this many seconds. */
  durationS?: number;
  /** Multiply calls (VUs, iterations, arrival rates). */
  scale?: number;
  json: boolean;
  allowRemote: boolean;
  /** rolling-restart only: relay processes (default the scenario's), DRAIN_MODE and DRAIN_TIMEOUT_SECONDS for them. */
  relays?: number;
  drainMode?: 'wait' | 'migrate';
  drainTimeoutS?: number;
}

/** What the terminal shows every second. */
export interface Progress {
  elapsedS: number;
  up: number;
  placed: number;
  completed: number;
  failed: number;
  refused: number;
  dropped: number;
  /** Over the most recent turns / frame gaps; null before any. */
  turnP95Ms: number | null;
  frameGapP99Ms: number | null;
}

export interface LoadResult {
  scenario: Scenario;
  ok: boolean;
  elapsedMs: number;
  calls: { placed: number; completed: number; failed: number; refused: number; dropped: number };
  summary: Summary;
  thresholds: ThresholdResult[];
  /** The first few failed or refused calls, with why. */
  problems: Array<{ callSid: string; outcome: 'failed' | 'refused'; reason: string }>;
  /** Calls moved to a new Media Stream at least once (REST update or after-stream redirect). */
  moved: number;
}

const HOSTS_LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\]|::1)$/i;
/** Every run is bounded: at most this many calls, whatever the scenario and scale say. */
const MAX_CALLS = 100_000;
/** Trend samples kept per metric (reservoir beyond it): bounded memory on long soaks. */
const MAX_SAMPLES = 200_000;
const RECENT = 500;
const MAX_PROBLEMS = 20;

/** True when `url`'s host is a loopback name or address. */
export function isLoopbackUrl(url: string): boolean {
  try {
    return HOSTS_LOOPBACK.test(new URL(url).hostname);
  } catch {
    return false;
  }
}

/** Parse `npm run load -- …` arguments; returns a one-line complaint instead of throwing. */
export function parseLoadArgs(argv: readonly string[]): { ok: true; options: LoadOptions } | { ok: false; error: string } {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        scenario: { type: 'string' },
        url: { type: 'string', default: 'http://localhost:8080' },
        'public-url': { type: 'string' },
        to: { type: 'string', default: DEMO_NUMBER },
        'account-sid': { type: 'string', default: DEMO_ACCOUNT_SID },
        'auth-token': { type: 'string', default: DEMO_AUTH_TOKEN },
        duration: { type: 'string' },
        scale: { type: 'string' },
        json: { type: 'boolean', default: false },
        'allow-remote': { type: 'boolean', default: false },
        relays: { type: 'string' },
        'drain-mode': { type: 'string' },
        'drain-timeout': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  const scenario = values.scenario;
  if (scenario === undefined) return { ok: false, error: `--scenario is required: one of ${scenarioNames().join(', ')}` };
  if (!scenarioNames().includes(scenario)) return { ok: false, error: `--scenario must be one of ${scenarioNames().join(', ')} (got ${scenario})` };
  const url = values.url.replace(/\/+$/, '');
  if (!/^https?:\/\//.test(url)) return { ok: false, error: `--url must start with http:// or https:// (got ${url})` };
  const publicUrl = values['public-url']?.replace(/\/+$/, '');
  if (publicUrl !== undefined && !/^https?:\/\//.test(publicUrl)) return { ok: false, error: `--public-url must start with http:// or https:// (got ${publicUrl})` };
  const num = (name: string, raw: string | undefined): number | undefined | string => {
    if (raw === undefined) return undefined;
    const v = Number(raw);
    return Number.isFinite(v) && v > 0 ? v : `--${name} must be a positive number (got ${raw})`;
  };
  const durationS = num('duration', values.duration);
  if (typeof durationS === 'string') return { ok: false, error: durationS };
  const scale = num('scale', values.scale);
  if (typeof scale === 'string') return { ok: false, error: scale };
  const relays = num('relays', values.relays);
  if (typeof relays === 'string' || (relays !== undefined && (!Number.isInteger(relays) || relays < 2 || relays > 5))) {
    return { ok: false, error: `--relays must be a whole number from 2 to 5 (got ${values.relays})` };
  }
  const drainMode = values['drain-mode'];
  if (drainMode !== undefined && drainMode !== 'wait' && drainMode !== 'migrate') return { ok: false, error: `--drain-mode must be wait or migrate (got ${drainMode})` };
  const drainTimeoutS = num('drain-timeout', values['drain-timeout']);
  if (typeof drainTimeoutS === 'string') return { ok: false, error: drainTimeoutS };
  const allowRemote = values['allow-remote'];
  if (!allowRemote && !isLoopbackUrl(url)) {
    return { ok: false, error: `refusing to load ${url}: not a loopback address. Load only machines you own; pass --allow-remote to confirm.` };
  }
  return {
    ok: true,
    options: {
      scenario,
      url,
      to: values.to,
      accountSid: values['account-sid'],
      authToken: values['auth-token'],
      json: values.json,
      allowRemote,
      ...(publicUrl !== undefined ? { publicUrl } : {}),
      ...(durationS !== undefined ? { durationS } : {}),
      ...(scale !== undefined ? { scale } : {}),
      ...(relays !== undefined ? { relays } : {}),
      ...(drainMode !== undefined ? { drainMode } : {}),
      ...(drainTimeoutS !== undefined ? { drainTimeoutS } : {}),
    },
  };
}

/** Samples of one trend, bounded by reservoir sampling, with a small window of the latest. */
class Samples {
  readonly all: number[] = [];
  private seen = 0;
  private readonly recent: number[] = [];
  private at = 0;
  add(v: number): void {
    this.seen++;
    if (this.all.length < MAX_SAMPLES) this.all.push(v);
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < MAX_SAMPLES) this.all[j] = v;
    }
    if (this.recent.length < RECENT) this.recent.push(v);
    else this.recent[this.at] = v;
    this.at = (this.at + 1) % RECENT;
  }
  recentQuantile(q: number): number | null {
    if (this.recent.length === 0) return null;
    return quantile([...this.recent].sort((a, b) => a - b), q);
  }
}

/** The scenario named by the options, resized by their scale and duration. */
export function resolveScenario(o: Pick<LoadOptions, 'scenario' | 'scale' | 'durationS'>): Scenario {
  const base = getScenario(o.scenario);
  if (o.scale === undefined && o.durationS === undefined) return base;
  return scaleScenario(base, { ...(o.scale !== undefined ? { scale: o.scale } : {}), ...(o.durationS !== undefined ? { durationS: o.durationS } : {}) });
}

/**
 * Run one scenario against a relay and judge it with the scenario's thresholds. Never rejects for
 * call failures: they are counted. Resolves once every call has ended (or was hung up at the bound).
 */
export async function runLoad(
  o: LoadOptions & { onProgress?: (p: Progress) => void; signal?: AbortSignal; twilioApi?: CallRegistry },
): Promise<LoadResult> {
  if (!o.allowRemote && !isLoopbackUrl(o.url)) throw new Error(`refusing to load ${o.url}: not a loopback address (allowRemote not set)`);
  const scenario = resolveScenario(o);
  const plan = scenario.plan;
  const started = performance.now();
  const elapsed = (): number => performance.now() - started;
  const planMs = planDurationS(plan) * 1000;
  // After the plan and the graceful stop, calls still up are hung up (k6's gracefulStop).
  const hangUp = new AbortController();
  const onOuterAbort = (): void => hangUp.abort();
  o.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const stopTimer = setTimeout(() => hangUp.abort(), planMs + scenario.gracefulStopS * 1000);

  const trends = {
    [METRICS.turnLatency]: new Samples(),
    [METRICS.frameGap]: new Samples(),
    [METRICS.callDuration]: new Samples(),
    [METRICS.moveGap]: new Samples(),
    [METRICS.moveAudioGap]: new Samples(),
  };
  const counters: Record<string, number> = {};
  const calls = { placed: 0, completed: 0, failed: 0, refused: 0, dropped: 0 };
  const problems: LoadResult['problems'] = [];
  let up = 0;
  let moved = 0;

  const dialUrl = streamDialUrl(o.url, 'ws://relay/twilio/media');
  const placeOne = async (index: number): Promise<void> => {
    calls.placed++;
    up++;
    let report: CallReport | undefined;
    try {
      report = await placeCall({
        baseUrl: o.url,
        to: o.to,
        accountSid: o.accountSid,
        authToken: o.authToken,
        script: callScript(scenario.mix, index),
        signal: hangUp.signal,
        streamUrlOverride: dialUrl,
        hooks: { onAudio: frameGapTap((g) => trends[METRICS.frameGap].add(g)) },
        ...(o.publicUrl !== undefined ? { publicUrl: o.publicUrl } : {}),
        ...(o.twilioApi !== undefined ? { twilioApi: o.twilioApi } : {}),
      });
    } catch (err) {
      // placeCall reports call failures itself; this is a bug in the driver, counted, not fatal.
      calls.failed++;
      if (problems.length < MAX_PROBLEMS) problems.push({ callSid: '-', outcome: 'failed', reason: `driver error: ${String(err)}` });
      return;
    } finally {
      up--;
    }
    const m = callOutcomeMetrics(report, report.stage === 'connected' ? report : null);
    for (const [name, v] of Object.entries(m.counters)) counters[name] = (counters[name] ?? 0) + v;
    for (const v of m.turnLatencies) trends[METRICS.turnLatency].add(v);
    for (const v of m.moveGaps) trends[METRICS.moveGap].add(v);
    for (const v of m.moveAudioGaps) trends[METRICS.moveAudioGap].add(v);
    if (report.legs.length > 1) moved++;
    if (report.stage === 'connected') trends[METRICS.callDuration].add(report.durationMs);
    calls[m.outcome]++;
    if (m.outcome !== 'completed' && problems.length < MAX_PROBLEMS) problems.push({ callSid: report.callSid, outcome: m.outcome, reason: m.reason });
  };

  const progress = (): Progress => ({
    elapsedS: Math.round(elapsed() / 100) / 10,
    up,
    ...calls,
    turnP95Ms: trends[METRICS.turnLatency].recentQuantile(0.95),
    frameGapP99Ms: trends[METRICS.frameGap].recentQuantile(0.99),
  });
  const ticker = o.onProgress ? setInterval(() => o.onProgress?.(progress()), 1000) : undefined;

  const running = new Set<Promise<void>>();
  const launch = (index: number): Promise<void> => {
    const p = placeOne(index).finally(() => running.delete(p));
    running.add(p);
    return p;
  };
  const wait = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      if (ms <= 0 || hangUp.signal.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        hangUp.signal.removeEventListener('abort', done);
        resolve();
      }
      hangUp.signal.addEventListener('abort', done, { once: true });
    });

  let next = 0;
  const take = (limit: number): number | undefined => (next < limit && next < MAX_CALLS && !hangUp.signal.aborted ? next++ : undefined);
  switch (plan.kind) {
    case 'iterations': {
      // shared-iterations: `vus` loops share the iteration count; maxDuration stops new ones.
      const loop = async (): Promise<void> => {
        for (let i = take(plan.iterations); i !== undefined && elapsed() < planMs; i = take(plan.iterations)) await launch(i);
      };
      await Promise.all(Array.from({ length: plan.vus }, loop));
      break;
    }
    case 'vus': {
      // constant-vus: each VU places calls back to back until the duration is over.
      const loop = async (): Promise<void> => {
        for (let i = take(MAX_CALLS); i !== undefined && elapsed() < planMs; i = take(MAX_CALLS)) await launch(i);
      };
      await Promise.all(Array.from({ length: plan.vus }, loop));
      break;
    }
    case 'arrival': {
      for (const at of arrivalOffsetsMs(plan, MAX_CALLS)) {
        await wait(at - elapsed());
        if (hangUp.signal.aborted) break;
        if (up >= plan.maxVUs) {
          calls.dropped++;
          continue;
        }
        const i = take(MAX_CALLS);
        if (i === undefined) break;
        void launch(i);
      }
      break;
    }
  }
  // Bounded: every call ends by its maxCallMs, or at the graceful-stop abort above.
  await Promise.all([...running]);
  clearTimeout(stopTimer);
  if (ticker) clearInterval(ticker);
  o.signal?.removeEventListener('abort', onOuterAbort);

  const summary: Summary = { metrics: {} };
  for (const [name, s] of Object.entries(trends)) {
    if (s.all.length > 0) summary.metrics[name] = { type: 'trend', values: trendValues(s.all) };
  }
  const secs = Math.max(0.001, elapsed() / 1000);
  for (const [name, count] of Object.entries(counters)) summary.metrics[name] = { type: 'counter', values: { count, rate: count / secs } };
  const ended = calls.completed + calls.failed + calls.refused;
  for (const [name, passes] of [
    [METRICS.failureRate, calls.failed],
    [METRICS.refusalRate, calls.refused],
  ] as const) {
    summary.metrics[name] = { type: 'rate', values: { rate: ended ? passes / ended : 0, passes, fails: ended - passes } };
  }
  const judged = evaluateThresholds(summary, scenario.thresholds);
  return { scenario, ok: judged.ok, elapsedMs: Math.round(elapsed()), calls, summary, thresholds: judged.results, problems, moved };
}

const ms = (v: number | null | undefined): string => (v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(1));

/** One progress line. */
export function formatProgress(p: Progress): string {
  return (
    `[${p.elapsedS.toFixed(0).padStart(4)}s] up ${p.up}  placed ${p.placed}  completed ${p.completed}  failed ${p.failed}` +
    `  refused ${p.refused}  dropped ${p.dropped}  turn p95 ${ms(p.turnP95Ms)} ms  frame-gap p99 ${ms(p.frameGapP99Ms)} ms`
  );
}

/** The end-of-run table for a human. */
export function formatSummary(r: LoadResult): string {
  const lines: string[] = [];
  const c = r.calls;
  lines.push(`scenario ${r.scenario.name}: ${r.scenario.description}`);
  lines.push(`${c.placed} calls in ${(r.elapsedMs / 1000).toFixed(1)} s: completed ${c.completed}, failed ${c.failed}, refused ${c.refused}, dropped ${c.dropped}`);
  lines.push('');
  const cols = ['avg', 'med', 'p(95)', 'p(99)', 'max', 'count'];
  lines.push(`${'trend (ms)'.padEnd(22)}${cols.map((h) => h.padStart(10)).join('')}`);
  for (const name of [METRICS.turnLatency, METRICS.frameGap, METRICS.callDuration, METRICS.moveGap, METRICS.moveAudioGap]) {
    if ((name === METRICS.moveGap || name === METRICS.moveAudioGap) && !r.summary.metrics[name]) continue;
    const v = r.summary.metrics[name]?.values;
    lines.push(`${name.padEnd(22)}${cols.map((h) => (h === 'count' ? String(v?.count ?? 0) : ms(v?.[h])).padStart(10)).join('')}`);
  }
  lines.push('');
  const counts = [METRICS.turns, METRICS.marksEchoed, METRICS.clears, METRICS.bargeIns, METRICS.dtmfSent, METRICS.moves]
    .map((n) => `${n} ${r.summary.metrics[n]?.values.count ?? 0}`)
    .join(', ');
  lines.push(`counters: ${counts}`);
  lines.push('');
  lines.push('thresholds:');
  for (const t of r.thresholds) {
    const actual = t.actual === null ? (t.note ?? '-') : String(Math.round(t.actual * 1000) / 1000);
    lines.push(`  ${t.ok ? 'ok  ' : 'FAIL'} ${t.metric} ${t.expression} (actual ${actual})`);
  }
  if (r.problems.length > 0) {
    lines.push('');
    lines.push('first problem calls:');
    for (const p of r.problems.slice(0, 5)) lines.push(`  ${p.callSid} ${p.outcome}: ${p.reason}`);
  }
  lines.push('');
  lines.push(r.ok ? 'PASS: every threshold held' : 'FAIL: thresholds crossed (exit 1)');
  return lines.join('\n');
}

export const LOAD_USAGE = `npm run load -- --scenario NAME [options]   (loadtest/README.md)
  --scenario NAME     required: ${scenarioNames().join(' | ')}
  --url URL           relay base URL, webhook and stream (default http://localhost:8080)
  --public-url URL    the relay's PUBLIC_URL when it differs from --url (signatures use it)
  --to NUMBER, --account-sid SID, --auth-token TOKEN
                      the tenant called (default the demo tenant)
  --duration S        stretch or squeeze the scenario's plan to S seconds
  --scale F           multiply calls (VUs, iterations, arrival rates) by F
  --json              print the result as JSON on stdout (progress stays on stderr;
                      use \`npm run -s load\` so npm adds no banner)
  --allow-remote      allow a non-loopback --url (load only machines you own)
  rolling-restart only (it starts redis-server, the relays and a loopback service itself;
  --url does not apply):
  --relays N          relay processes, 2 to 5 (default 3)
  --drain-mode MODE   DRAIN_MODE for the relays: wait | migrate (default: theirs)
  --drain-timeout S   DRAIN_TIMEOUT_SECONDS for the relays (default 60)
Exit status: 0 every threshold held, 1 one failed, 2 bad arguments.`;

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(LOAD_USAGE);
    return 0;
  }
  const parsed = parseLoadArgs(argv);
  if (!parsed.ok) {
    console.error(`npm run load: ${parsed.error} (see --help)`);
    return 2;
  }
  const o = parsed.options;
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  if (getScenario(o.scenario).restart) {
    // It starts its own Redis, relays and service on loopback: --url does not apply.
    const { runRollingRestart, formatRollingRestart } = await import('./rolling-restart.js');
    const r = await runRollingRestart({ ...o, signal: stop.signal, onProgress: (p) => console.error(formatProgress(p)), onEvent: (l) => console.error(l) });
    process.off('SIGINT', onSignal);
    if (o.json) console.log(JSON.stringify(r, null, 2));
    else console.log(formatRollingRestart(r));
    return r.ok ? 0 : 1;
  }
  const result = await runLoad({ ...o, signal: stop.signal, onProgress: (p) => console.error(formatProgress(p)) });
  process.off('SIGINT', onSignal);
  if (o.json) console.log(JSON.stringify(result, null, 2));
  else console.log(formatSummary(result));
  return result.ok ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`npm run load: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
