/**
 * `npx tsx bench/capacity-report.ts [results.json] [--load load.json]`: writes docs/capacity.md and
 * docs/capacity/*.svg from one bench JSON (and a load run). Measuring is run.ts's; this only reads.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { LoadResult } from '../loadtest/node-driver.js';
import { benchKinds, plots, type BenchReport, type LoadRun, type RelayKind, type RunResult } from './run.js';
import { parse } from 'yaml';
import { fmt, linearFit, ratio } from './stats.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The performance targets: per frame, relay-added (ms), and calls per core (README, Performance); issue 18's
 * heap per call, fixed RSS (the RSS line's intercept), the baseline ratio (calls per core by the capacity
 * rule, same run) and the turn latency batching may add (p50).
 */
export const TARGETS = { p50Ms: 0.3, p99Ms: 2, p999Ms: 5, callsPerCore: 200, stretchCallsPerCore: 300, heapKBPerCall: 32, fixedRssMB: 90, baselineRatio: 2, turnAddedP50Ms: 20 } as const;
/** The fixed-RSS target in MiB (the bench reads RSS in MiB: /proc's kB / 1024). */
const FIXED_RSS_TARGET_MIB = (TARGETS.fixedRssMB * 1e6) / 2 ** 20;
/** Twilio's frame: 20 ms of 8 kHz μ-law. */
export const FRAME_MS = 20;
/** MODEL_APPEND_FRAMES's default (src/config.ts): what a bench without `--sb-env MODEL_APPEND_FRAMES=` ran. */
export const DEFAULT_APPEND_FRAMES = 2;
/** Share of one core a pod may use at capacity: the rest absorbs GC, bursts and TLS variance. */
export const CPU_CEILING_PERCENT = 70;
/**
 * A `ws` send over TLS costs ~40 µs (published measurement), 50 frames/s per call: 0.2 % of a core per
 * call. Only added to a loopback run's slope; a `--tls` run measured it (see `modelLeg`).
 */
export const TLS_PERCENT_PER_CALL = (40e-6 * 50) * 100;
/** docs/autoscaling.md: the HPA target is ~60 % of a pod's capacity. */
export const TARGET_SHARE = 0.6;
const MEMORY_HEADROOM = 1.25;

/**
 * The one pod-capacity rule, with its numbers: the report prints it and docs/autoscaling.md carries it
 * word for word (test/bench/capacity-report.test.ts checks).
 */
export const CAPACITY_RULE =
  `\`podCapacityCalls\` is the smaller of (a) the calls at which the relay's CPU line reaches ${CPU_CEILING_PERCENT} % of one core ` +
  '(the rest absorbs GC, bursts and TLS variance) and (b) the highest measured level at which every call was held, no frame was dropped, ' +
  `the bench driver kept up (not saturated) and the relay-own frame latency (\`switchboard_frame_relay_seconds\`) had ` +
  `p50 ≤ ${TARGETS.p50Ms} ms and p99 ≤ ${TARGETS.p99Ms} ms model→caller, and caller→model too when MODEL_APPEND_FRAMES is 1 (with more, ` +
  'caller→model holds audio for the append by design: shown, not judged); rounded down to a multiple of 10, and never more than the highest level measured. ' +
  'The CPU line is a least-squares fit (fixed % of a core + % per call) over the unsaturated levels (every call held, the bench driver ' +
  'not saturated) of a run with the model leg over TLS, as production; its R² is printed with it, and a line whose slope is ≤ 0 is not used. ' +
  `\`targetActiveCallsPerPod\` is ${TARGET_SHARE * 100} % of the capacity, rounded down to a multiple of 10. Memory follows from the capacity: ` +
  `request = ${MEMORY_HEADROOM} × (fixed RSS + memory per call × capacity), limit = 2 × (fixed RSS + memory per call × capacity), both rounded up to 64 Mi.`;

/** The one command that regenerates docs/capacity.md (bench/README.md carries the same line). */
export const REGENERATE_COMMAND =
  'npm run bench -- --tls --floor --levels 50,100,150,200,250,300 --seconds 30 --ramp 25 --load steady --load-seconds 120 && npx tsx bench/capacity-report.ts';

/** The public sample relay's published figures: a different measurement (another day, other drivers). */
export const PUBLISHED_BASELINE = [
  { calls: 50, cpuPercent: 27, p50Ms: 0.7, p99Ms: 5.8, rssMB: 84 },
  { calls: 100, cpuPercent: 44, p50Ms: 1.0, p99Ms: 8.1, rssMB: 86 },
  { calls: 200, cpuPercent: 81, p50Ms: 5.5, p99Ms: 60, rssMB: 111 },
  { calls: 400, cpuPercent: null, p50Ms: 60, p99Ms: 573, rssMB: 120 },
] as const;

export interface ReportInput {
  bench: BenchReport;
  benchPath: string;
  /** From `--load` (a LoadResult as `npm run -s load -- --json` prints it) or the bench's own `load`. */
  load?: { result: LoadResult; relay?: LoadRun['relay']; source: string };
}

// --- figures ----------------------------------------------------------------------------------------

const worst = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : Math.max(a, b));

/** Worst direction's end-to-end percentile of one run. */
export function e2e(r: RunResult, q: 'p50' | 'p99' | 'p999'): number | null {
  return worst(r.driver.callerToModel.latencyMs[q], r.driver.modelToCaller.latencyMs[q]);
}

/**
 * The designed hold of caller audio toward the model: Switchboard sends MODEL_APPEND_FRAMES frames per
 * append, so a frame waits up to (frames − 1) × 20 ms for the rest of its append. 0 with one frame per append.
 */
export function appendHoldMs(bench: Pick<BenchReport, 'options'>): number {
  const n = Number(bench.options.sbEnv?.MODEL_APPEND_FRAMES ?? DEFAULT_APPEND_FRAMES);
  return Number.isInteger(n) && n >= 1 ? (n - 1) * FRAME_MS : 0;
}

const holdsAudio = (r: RunResult): boolean => r.relay === 'switchboard' || r.relay === 'switchboard-metrics-off';

/**
 * The end-to-end percentile the latency targets and the knee judge. With an append hold, Switchboard's
 * caller→model figure is the hold by design (p50 ~10–15 ms, p99 ~20–30 ms with 2 frames), so Switchboard
 * is judged end to end on model→caller only, and caller→model on the relay-own histogram (which records a
 * frame as it enters the append batch: relay work without the hold). Without a hold, and for the
 * baseline and floor, the worst direction.
 */
export function judgedE2e(r: RunResult, q: 'p50' | 'p99' | 'p999', holdMs = 0): number | null {
  return holdMs > 0 && holdsAudio(r) ? r.driver.modelToCaller.latencyMs[q] : e2e(r, q);
}

function dropsOf(r: RunResult): number {
  const d = r.driver;
  return d.callerToModel.sent - d.callerToModel.received + (d.modelToCaller.sent - d.modelToCaller.received) + (r.switchboardDropped ?? 0);
}

/** Every call held, no drop, and the judged end-to-end p50/p99/p999 (see `judgedE2e`) within the targets. */
export function meetsE2e(r: RunResult, holdMs = 0): boolean {
  const d = r.driver;
  return (
    d.callsHeld === d.callsTarget &&
    dropsOf(r) === 0 &&
    (judgedE2e(r, 'p50', holdMs) ?? Infinity) <= TARGETS.p50Ms &&
    (judgedE2e(r, 'p99', holdMs) ?? Infinity) <= TARGETS.p99Ms &&
    (judgedE2e(r, 'p999', holdMs) ?? Infinity) <= TARGETS.p999Ms
  );
}

/**
 * Every call held, no drop, and the relay's own histogram (p50/p99) within the targets: worst direction,
 * or model→caller only with an append hold (the caller→model histogram runs until the append is sent).
 */
export function meetsHist(r: RunResult, holdMs = 0): boolean {
  const h = r.switchboardHistogram;
  if (!h) return false;
  const c2m = holdMs > 0 && holdsAudio(r) ? null : h.callerToModel;
  const p50 = c2m ? worst(c2m.p50Ms, h.modelToCaller.p50Ms) : h.modelToCaller.p50Ms;
  const p99 = c2m ? worst(c2m.p99Ms, h.modelToCaller.p99Ms) : h.modelToCaller.p99Ms;
  return r.driver.callsHeld === r.driver.callsTarget && dropsOf(r) === 0 && p50 !== null && p99 !== null && p50 <= TARGETS.p50Ms && p99 <= TARGETS.p99Ms;
}

/** Highest level whose run passes `ok`, and whether every lower level did too. */
function highestPassing(runs: readonly RunResult[], ok: (r: RunResult) => boolean): number {
  let best = 0;
  for (const r of [...runs].sort((a, b) => a.level - b.level)) {
    if (!ok(r)) break;
    best = r.level;
  }
  return best;
}

export interface Knee {
  /** The lowest measured level and its judged p99 (what "doubles" is measured against). */
  lowest: number;
  p99Lowest: number | null;
  at: number;
  p99At: number | null;
  drops: number;
  cause: 'p99' | 'drops';
}

/**
 * The knee: the first level where the judged end-to-end p99 (`judgedE2e`) is more than double the lowest
 * level's, or where frames were dropped. Null when neither happens over the measured levels.
 */
export function knee(runs: readonly RunResult[], holdMs = 0): Knee | null {
  const rs = [...runs].sort((a, b) => a.level - b.level);
  const first = rs[0];
  if (!first) return null;
  const base = judgedE2e(first, 'p99', holdMs);
  for (const r of rs) {
    const p = judgedE2e(r, 'p99', holdMs);
    const drops = dropsOf(r);
    if (drops > 0) return { lowest: first.level, p99Lowest: base, at: r.level, p99At: p, drops, cause: 'drops' };
    if (r !== first && base !== null && p !== null && p > 2 * base) return { lowest: first.level, p99Lowest: base, at: r.level, p99At: p, drops, cause: 'p99' };
  }
  return null;
}

/** The first level whose judged p99 more than doubles the lowest level's, ignoring drops (null if none). */
function latencyKnee(runs: readonly RunResult[], holdMs: number): number | null {
  return knee(runs.map((r) => ({ ...r, switchboardDropped: 0, driver: { ...r.driver, callerToModel: { ...r.driver.callerToModel, received: r.driver.callerToModel.sent }, modelToCaller: { ...r.driver.modelToCaller, received: r.driver.modelToCaller.sent } } })), holdMs)?.at ?? null;
}

export interface RelayCapacity {
  relay: RelayKind;
  levels: number[];
  e2eCallsPerCore: number;
  histCallsPerCore: number | null;
  /** The same, counting only levels the driver kept up with (a saturated driver sends less than the level). */
  histCallsDriverOk: number | null;
  /** The first level where the driver saturated, if any. */
  driverSaturatedAt: number | null;
  cpuPercentPerCall: number | null;
  cpuFixedPercent: number | null;
  /** The levels the CPU line was fitted on: every call held and the driver not saturated (when 2+ are). */
  cpuFitLevels: number[];
  /** R² of the CPU line over `cpuFitLevels` (null when it cannot be computed). */
  cpuFitR2: number | null;
  /** The fit levels are the unsaturated ones (false: fewer than two were, so every level with calls held). */
  cpuFitUnsaturated: boolean;
  /** Calls at CPU_CEILING_PERCENT of one core, from the CPU line. */
  callsAtCeiling: number | null;
  /** Highest measured level (and every level below it) with every call held, no drops, the driver not saturated. */
  heldUpTo: number;
  /** Calls per core by the capacity rule, unrounded: min(calls at CPU_CEILING_PERCENT, `heldUpTo`); null without a usable CPU line. */
  ruleCalls: number | null;
  heapKBPerCall: number | null;
  /** Every level's heap was read after a forced GC (else the slope is of un-GC'd readings: noisy). */
  heapGcd: boolean;
  externalKBPerCall: number | null;
  rssKBPerCall: number | null;
  rssFixedMB: number | null;
}

export function relayCapacity(report: BenchReport, relay: RelayKind): RelayCapacity | undefined {
  const runs = report.runs.filter((r) => r.relay === relay);
  const hold = appendHoldMs(report);
  if (runs.length === 0) return undefined;
  // Fitted here from the runs (not the JSON's summary), so JSON from older bench versions report alike.
  const held = runs.filter((r) => r.driver.callsHeld > 0);
  const fit = (f: (r: RunResult) => number | null): { slope: number; intercept: number } | null =>
    linearFit(held.flatMap((r) => {
      const y = f(r);
      return y === null ? [] : [{ x: r.driver.callsHeld, y }];
    }));
  const gcd = held.length > 0 && held.every((r) => r.heapSource === 'gc');
  // A saturated driver sends fewer frames than the level asks for, so the relay's CPU there is too
  // low: the CPU line is fitted on the levels the driver kept up with, when there are two of them.
  const clean = held.filter((r) => r.driver.callsHeld === r.driver.callsTarget && !r.driver.driver.saturated);
  const cpuRuns = clean.length >= 2 ? clean : held;
  const cpuFit = linearFit(cpuRuns.map((r) => ({ x: r.driver.callsHeld, y: r.relayCpuPercent })));
  const heapFit = fit((r) => r.heapMB);
  const extFit = gcd ? fit((r) => (r.gcMemory ? (r.gcMemory.external + r.gcMemory.arrayBuffers) / 2 ** 20 : null)) : null;
  const rssFit = fit((r) => r.rssMB);
  const cpu = cpuFit?.slope ?? null;
  const fixed = cpuFit?.intercept ?? 0;
  const callsAtCeiling = cpu !== null && cpu > 0 ? Math.floor((CPU_CEILING_PERCENT - fixed) / cpu) : null;
  const heldUpTo = highestPassing(runs, (r) => r.driver.callsHeld === r.driver.callsTarget && dropsOf(r) === 0 && !r.driver.driver.saturated);
  return {
    relay,
    levels: runs.map((r) => r.level),
    e2eCallsPerCore: highestPassing(runs, (r) => meetsE2e(r, hold)),
    histCallsPerCore: runs.some((r) => r.switchboardHistogram) ? highestPassing(runs, (r) => meetsHist(r, hold)) : null,
    histCallsDriverOk: runs.some((r) => r.switchboardHistogram) ? highestPassing(runs, (r) => meetsHist(r, hold) && !r.driver.driver.saturated) : null,
    driverSaturatedAt: [...runs].sort((a, b) => a.level - b.level).find((r) => r.driver.driver.saturated)?.level ?? null,
    cpuPercentPerCall: cpu,
    cpuFixedPercent: cpuFit?.intercept ?? null,
    cpuFitLevels: cpuRuns.map((r) => r.level).sort((a, b) => a - b),
    cpuFitR2: cpuFit?.r2 ?? null,
    cpuFitUnsaturated: clean.length >= 2,
    callsAtCeiling,
    heldUpTo,
    ruleCalls: callsAtCeiling === null ? null : Math.min(callsAtCeiling, heldUpTo),
    heapKBPerCall: heapFit ? heapFit.slope * 1024 : null,
    heapGcd: gcd,
    externalKBPerCall: extFit ? extFit.slope * 1024 : null,
    rssKBPerCall: rssFit ? rssFit.slope * 1024 : null,
    rssFixedMB: rssFit?.intercept ?? null,
  };
}

/**
 * How the run reached the model: `tls` when run with `--tls` and every Switchboard run's model sessions
 * arrived over TLS (the production leg, measured), else `loopback` (plain ws; TLS is then estimated).
 */
export type ModelLeg = 'tls' | 'loopback';

export function modelLeg(report: BenchReport): ModelLeg {
  const sbRuns = report.runs.filter((r) => r.relay === 'switchboard' && r.driver.callsHeld > 0);
  return report.options.tls === true && sbRuns.length > 0 && sbRuns.every((r) => (r.modelTlsUpgrades ?? 0) > 0) ? 'tls' : 'loopback';
}

export interface Sizing {
  modelLeg: ModelLeg;
  /** What the sizing adds for TLS: 0 when the run measured it. */
  tlsAddedPercent: number;
  cpuPercentPerCallProd: number;
  capacityByCpu: number;
  capacityByLatency: number;
  latencyBasis: string;
  podCapacityCalls: number;
  targetActiveCallsPerPod: number;
  cpuAtCapacityPercent: number;
  cpuRequestMillis: number;
  memoryPerCallKB: number;
  memoryAtCapacityMiB: number;
  memoryRequestMiB: number;
  memoryLimitMiB: number;
}

const roundDown = (v: number, step: number): number => Math.max(step, Math.floor(v / step) * step);
const roundUp = (v: number, step: number): number => Math.ceil(v / step) * step;

/**
 * Pod capacity, HPA target and requests from Switchboard's measured figures. The rule (stated in the
 * report): capacity = min(calls at CPU_CEILING_PERCENT on the CPU line of the production model leg,
 * highest measured level held with no drops and the relay-own latency within target), rounded down
 * to 10; a capacity is never claimed beyond the levels measured. Target = TARGET_SHARE of it.
 * Memory follows from the capacity (request and limit minimums), it does not cap it.
 */
export function sizing(sb: RelayCapacity, leg: ModelLeg = 'loopback'): Sizing | undefined {
  if (sb.cpuPercentPerCall === null || sb.cpuPercentPerCall <= 0) return undefined;
  const fixed = Math.max(0, sb.cpuFixedPercent ?? 0);
  const tlsAdded = leg === 'tls' ? 0 : TLS_PERCENT_PER_CALL;
  const cpuProd = sb.cpuPercentPerCall + tlsAdded;
  const capacityByCpu = Math.floor((CPU_CEILING_PERCENT - fixed) / cpuProd);
  // The relay's own histogram is the relay's latency; the end-to-end one is bounded by the harness.
  // Only levels the driver kept up with count: a saturated driver sent the relay less than the level.
  const capacityByLatency = sb.histCallsDriverOk ?? sb.e2eCallsPerCore;
  const maxLevel = Math.max(...sb.levels);
  const saturated = sb.driverSaturatedAt !== null && sb.driverSaturatedAt <= maxLevel ? `; the driver saturated at ${sb.driverSaturatedAt} calls, so no level from there counts` : '';
  const latencyBasis =
    sb.histCallsDriverOk !== null
      ? capacityByLatency >= maxLevel
        ? `every call held, no drops, relay-own histogram within target at every measured level (up to ${maxLevel}): nothing is claimed beyond ${maxLevel}`
        : `every call held, no drops, relay-own histogram within target up to ${capacityByLatency} calls${saturated}`
      : `end-to-end within target up to ${capacityByLatency} calls`;
  const podCapacityCalls = roundDown(Math.min(capacityByCpu, capacityByLatency), 10);
  // Rounded down to 10 like the capacity, but never up to it (a tiny run's capacity of 10 gives 6).
  const share = podCapacityCalls * TARGET_SHARE;
  const targetActiveCallsPerPod = share >= 10 ? Math.floor(share / 10) * 10 : Math.floor(share);
  const cpuAtCapacityPercent = fixed + cpuProd * podCapacityCalls;
  // A pod's event loop uses one core at most; below half a core, request what capacity uses.
  const cpuRequestMillis = cpuAtCapacityPercent > 50 ? 1000 : roundUp(cpuAtCapacityPercent * 10 * MEMORY_HEADROOM, 100);
  const perCallKB = Math.max(sb.rssKBPerCall ?? 0, (sb.heapKBPerCall ?? 0) + Math.max(0, sb.externalKBPerCall ?? 0));
  const memoryAtCapacityMiB = (sb.rssFixedMB ?? 0) + (perCallKB * podCapacityCalls) / 1024;
  const memoryRequestMiB = roundUp(memoryAtCapacityMiB * MEMORY_HEADROOM, 64);
  return {
    modelLeg: leg,
    tlsAddedPercent: tlsAdded,
    cpuPercentPerCallProd: cpuProd,
    capacityByCpu,
    capacityByLatency,
    latencyBasis,
    podCapacityCalls,
    targetActiveCallsPerPod,
    cpuAtCapacityPercent,
    cpuRequestMillis,
    memoryPerCallKB: perCallKB,
    memoryAtCapacityMiB,
    memoryRequestMiB,
    memoryLimitMiB: roundUp(2 * memoryAtCapacityMiB, 64),
  };
}

// --- markdown -----------------------------------------------------------------------------------------

function table(rows: ReadonlyArray<ReadonlyArray<string>>): string {
  const [head, ...body] = rows;
  if (!head) return '';
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...body.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const ms = (v: number | null | undefined): string => fmt(v, 3);
const yes = (ok: boolean): string => (ok ? 'met' : '**missed**');

function latencyRows(report: BenchReport): string[][] {
  const kinds = [...new Set(report.runs.map((r) => r.relay))];
  const levels = [...new Set(report.runs.map((r) => r.level))].sort((a, b) => a - b);
  const rows: string[][] = [
    ['calls', 'relay', 'held', 'e2e p50 / p99 / p999 (ms, worst dir.)', 'relay-own hist p50 / p99 (ms)', 'p99 above floor (ms)', 'CPU %', 'GC\'d heap MiB', 'RSS MiB', 'drops', 'driver CPU % / lag p99 ms', 'other CPU % core0/1'],
  ];
  for (const level of levels) {
    const floor = report.runs.find((r) => r.relay === 'floor' && r.level === level);
    for (const kind of kinds) {
      const r = report.runs.find((x) => x.relay === kind && x.level === level);
      if (!r) continue;
      const h = r.switchboardHistogram;
      const p99 = e2e(r, 'p99');
      const fp99 = floor ? e2e(floor, 'p99') : null;
      rows.push([
        String(level),
        kind,
        `${r.driver.callsHeld}/${r.driver.callsTarget}`,
        `${ms(e2e(r, 'p50'))} / ${ms(p99)} / ${ms(e2e(r, 'p999'))}`,
        h ? `${ms(worst(h.callerToModel.p50Ms, h.modelToCaller.p50Ms))} / ${ms(worst(h.callerToModel.p99Ms, h.modelToCaller.p99Ms))}` : '-',
        kind === 'floor' || p99 === null || fp99 === null ? '-' : ms(p99 - fp99),
        fmt(r.relayCpuPercent, 1),
        fmt(r.heapMB, 1) + (r.heapSource === 'no-gc' ? ' (no GC)' : ''),
        fmt(r.rssMB, 1),
        String(dropsOf(r)),
        `${fmt(r.driver.driver.cpuPercent, 0)} / ${fmt(r.driver.driver.loopLagP99Ms, 1)}${r.driver.driver.saturated ? ' (saturated)' : ''}`,
        r.otherCpuPercent ? `${fmt(r.otherCpuPercent.core0, 0)}/${fmt(r.otherCpuPercent.core1, 0)}` : '-',
      ]);
    }
  }
  return rows;
}

/** The CPU line as fitted: levels, fixed cost, slope, R². */
function cpuLineText(c: RelayCapacity): string {
  return (
    `${fmt(c.cpuFixedPercent, 1)} % fixed + ${fmt(c.cpuPercentPerCall, 3)} % a call, least-squares fit over levels ${c.cpuFitLevels.join(', ')} ` +
    `(${c.cpuFitUnsaturated ? 'every call held, driver not saturated' : 'FEWER THAN TWO unsaturated levels: fitted on every level with calls held'}), R² = ${fmt(c.cpuFitR2, 3)}`
  );
}

/** Why no sizing came out of the run. */
function noSizing(sb: RelayCapacity | undefined): string {
  if (!sb) return 'No Switchboard run: no sizing';
  if (sb.cpuPercentPerCall !== null && sb.cpuPercentPerCall <= 0) return `CPU line not usable (slope ≤ 0): ${cpuLineText(sb)}; no capacity is derived from this run`;
  return 'Not enough levels to fit a CPU line (two levels with calls held are needed): no capacity is derived from this run';
}

/** How the end-to-end latency is judged, for the report's text. */
function judgedText(holdMs: number): string {
  return holdMs > 0
    ? `Switchboard sends ${holdMs / FRAME_MS + 1} frames per model append (MODEL_APPEND_FRAMES), so its caller→model end-to-end latency includes a designed hold of up to ${holdMs} ms a frame; ` +
        "Switchboard's latency is therefore judged on model→caller only, end to end and in the relay-own histogram (`switchboard_frame_relay_seconds`, whose caller→model side also runs until the append is sent); its caller→model figures are shown, and compared with the baseline's net of the hold. The baseline and the floor have no hold: worst direction."
    : 'One frame per model append (no hold): every relay is judged on the worst direction end to end.';
}

const DIRS = [
  ['callerToModel', 'caller→model'],
  ['modelToCaller', 'model→caller'],
] as const;

/** Issue 18's targets, each measured in this run, with a verdict. */
function targetRows(b: BenchReport, sb: RelayCapacity, bl: RelayCapacity | undefined, hold: number): string[] {
  const runs = (relay: RelayKind): RunResult[] => b.runs.filter((r) => r.relay === relay).sort((x, y) => x.level - y.level);
  const rows: string[][] = [['target', 'measured', 'verdict']];
  const maxLevel = Math.max(...sb.levels);
  // 2x the baseline's calls per core, by the capacity rule on both, same run.
  if (bl) {
    const perLevel = runs('switchboard').flatMap((s) => {
      const t = b.runs.find((r) => r.relay === 'baseline' && r.level === s.level);
      return t && s.relayCpuPercent > 0 ? [{ level: s.level, x: t.relayCpuPercent / s.relayCpuPercent }] : [];
    });
    const perLevelTxt = perLevel.length === 0 ? '-' : perLevel.map((l) => `${l.level}: ${l.x.toFixed(2)}x`).join(', ');
    const ratioNow = sb.ruleCalls !== null && bl.ruleCalls !== null && bl.ruleCalls > 0 ? sb.ruleCalls / bl.ruleCalls : null;
    const capped = sb.ruleCalls !== null && sb.callsAtCeiling !== null && sb.ruleCalls < sb.callsAtCeiling;
    rows.push([
      `>= ${TARGETS.baselineRatio}x the baseline's calls per core (capacity rule: min(calls at ${CPU_CEILING_PERCENT} % CPU on the CPU line, highest level held), same run)`,
      `Switchboard ${fmt(sb.ruleCalls, 0)} (${CPU_CEILING_PERCENT} % CPU at ${fmt(sb.callsAtCeiling, 0)}, held up to ${sb.heldUpTo}) vs baseline ${fmt(bl.ruleCalls, 0)} (${CPU_CEILING_PERCENT} % CPU at ${fmt(bl.callsAtCeiling, 0)}, held up to ${bl.heldUpTo}): ` +
        `${ratioNow === null ? '-' : `${ratioNow.toFixed(2)}x`}${capped ? ` (Switchboard capped by the highest level held, ${sb.heldUpTo}: a lower bound)` : ''}; per-level CPU ratio baseline/Switchboard: ${perLevelTxt}`,
      ratioNow === null ? '**not measured** (no usable CPU line)' : yes(ratioNow >= TARGETS.baselineRatio),
    ]);
    // Per-frame p99 <= the baseline's, per direction, per level.
    for (const [dir, name] of DIRS) {
      const net = dir === 'callerToModel' && hold > 0;
      const cells: string[] = [];
      let ok = true;
      let any = false;
      for (const s of runs('switchboard')) {
        const t = b.runs.find((r) => r.relay === 'baseline' && r.level === s.level);
        const sp = s.driver[dir].latencyMs.p99;
        const tp = t?.driver[dir].latencyMs.p99 ?? null;
        if (sp === null || tp === null) continue;
        any = true;
        const v = net ? Math.max(0, sp - hold) : sp;
        if (v > tp) ok = false;
        cells.push(`${s.level}: ${ms(v)} vs ${ms(tp)}${v > tp ? ' (missed)' : ''}`);
      }
      rows.push([
        `per-frame p99 <= the baseline's, ${name}, at each level`,
        any ? `Switchboard vs baseline end-to-end p99 ms${net ? ` (Switchboard net of the ${hold} ms append hold)` : ''}: ${cells.join('; ')}` : 'no level with both',
        any ? yes(ok) : '-',
      ]);
    }
  }
  // Zero drops up to the knee.
  const sbRuns = runs('switchboard');
  const dropsAt = sbRuns.find((r) => dropsOf(r) > 0);
  const latKnee = latencyKnee(sbRuns, hold);
  const dropsOk = dropsAt === undefined || (latKnee !== null && dropsAt.level >= latKnee);
  rows.push([
    'zero drops up to the knee',
    `${dropsAt ? `${dropsOf(dropsAt)} dropped at ${dropsAt.level} calls (first level with drops)` : `no drops at any measured level (up to ${maxLevel})`}; latency knee ${latKnee === null ? 'not reached' : `at ${latKnee} calls`}`,
    yes(dropsOk),
  ]);
  rows.push([
    `<= ${TARGETS.heapKBPerCall} KB heap per call`,
    `${fmt(sb.heapKBPerCall, 1)} KB/call (${sb.heapGcd ? "slope of the GC'd heap" : 'slope of heap readings WITHOUT a forced GC: noisy'})`,
    sb.heapKBPerCall === null ? '-' : yes(sb.heapKBPerCall <= TARGETS.heapKBPerCall),
  ]);
  rows.push([
    `fixed RSS <= ${TARGETS.fixedRssMB} MB (${fmt(FIXED_RSS_TARGET_MIB, 1)} MiB)`,
    `${fmt(sb.rssFixedMB, 1)} MiB (intercept of the RSS line over the levels, under the bench)`,
    sb.rssFixedMB === null ? '-' : yes(sb.rssFixedMB <= FIXED_RSS_TARGET_MIB),
  ]);
  const turn = sbRuns.map((r) => r.switchboardHistogram?.turn).filter((t) => t !== undefined && t.meanMs !== null && t.count > 0);
  rows.push([
    `turn latency added by batching <= ${TARGETS.turnAddedP50Ms} ms p50`,
    'not measured by this run (the bench times no turn on the baseline or the floor' +
      (turn.length > 0 ? `; Switchboard's own turn-latency mean, 100 ms buckets: ${turn.map((t) => fmt(t!.meanMs, 0)).join(', ')} ms` : '') +
      `${hold > 0 ? `; the append hold is at most ${hold} ms a frame by design` : ''})`,
    '-',
  ]);
  rows.push([
    `>= ${TARGETS.callsPerCore} calls/core (stretch ${TARGETS.stretchCallsPerCore}) at relay-added p50 <= ${TARGETS.p50Ms} ms, p99 <= ${TARGETS.p99Ms} ms, p999 <= ${TARGETS.p999Ms} ms, zero drops — end to end (judged as below)`,
    `${sb.e2eCallsPerCore} calls (highest measured level meeting all)`,
    yes(sb.e2eCallsPerCore >= TARGETS.callsPerCore),
  ]);
  rows.push([
    `the same, relay-own histogram (\`switchboard_frame_relay_seconds\`, p50 <= ${TARGETS.p50Ms} ms, p99 <= ${TARGETS.p99Ms} ms, ${hold > 0 ? 'model→caller' : 'both directions'})`,
    sb.histCallsPerCore === null ? 'no histogram' : `${sb.histCallsPerCore} calls (measured levels up to ${maxLevel})`,
    sb.histCallsPerCore === null ? '-' : yes(sb.histCallsPerCore >= TARGETS.callsPerCore),
  ]);
  return [table(rows), '', judgedText(hold)];
}

function saturation(report: BenchReport, sb: RelayCapacity, size: Sizing | undefined): string[] {
  const sbRuns = report.runs.filter((r) => r.relay === 'switchboard').sort((a, b) => a.level - b.level);
  const floorRuns = report.runs.filter((r) => r.relay === 'floor').sort((a, b) => a.level - b.level);
  const firstLevel = (rs: RunResult[], bad: (r: RunResult) => boolean): number | null => rs.find(bad)?.level ?? null;
  const limits: Array<{ what: string; at: number | null; note: string }> = [
    { what: 'end-to-end latency target (Switchboard)', at: firstLevel(sbRuns, (r) => !meetsE2e(r, appendHoldMs(report))), note: `first measured level missing p50 <= ${TARGETS.p50Ms} / p99 <= ${TARGETS.p99Ms} / p999 <= ${TARGETS.p999Ms} ms end to end (${appendHoldMs(report) > 0 ? 'model→caller: caller→model carries the append hold' : 'worst direction'})` },
    { what: 'harness floor (callers + sim model + kernel, no relay logic)', at: firstLevel(floorRuns, (r) => (e2e(r, 'p99') ?? Infinity) > TARGETS.p99Ms), note: 'first level where the splice-only floor relay itself has p99 > 2 ms' },
    { what: 'bench driver (one Node process)', at: firstLevel(sbRuns, (r) => r.driver.driver.saturated), note: 'driver CPU > 85 % or loop lag p99 > 20 ms' },
    { what: 'relay-own histogram target', at: firstLevel(sbRuns, (r) => r.switchboardHistogram !== null && !meetsHist(r, appendHoldMs(report))), note: `inside the relay: arrival to hand-off${appendHoldMs(report) > 0 ? ', model→caller (caller→model includes the append hold)' : ''}` },
    { what: 'frame drops', at: firstLevel(sbRuns, (r) => dropsOf(r) > 0), note: 'lost or backpressure-dropped frames' },
    ...(size?.modelLeg === 'tls'
      ? [{ what: `relay CPU at ${CPU_CEILING_PERCENT} % of a core (TLS model leg, as production)`, at: sb.callsAtCeiling, note: 'from the CPU line measured over TLS; beyond the measured levels if larger' }]
      : [
          { what: `relay CPU at ${CPU_CEILING_PERCENT} % of a core (loopback, projected)`, at: sb.callsAtCeiling, note: 'from the CPU line; beyond the measured levels if larger' },
          { what: `relay CPU at ${CPU_CEILING_PERCENT} % of a core with TLS to the model (projected)`, at: size?.capacityByCpu ?? null, note: `+${fmt(TLS_PERCENT_PER_CALL, 2)} %/call (published: 40 µs a TLS send)` },
        ]),
  ];
  const hit = limits.filter((l) => l.at !== null).sort((a, b) => (a.at ?? 0) - (b.at ?? 0));
  const out = [table([['limit', 'reached at (calls)', 'how it is judged'], ...limits.map((l) => [l.what, l.at === null ? 'not reached' : String(l.at), l.note])])];
  const first = hit[0];
  if (first) {
    out.push('', `**First to saturate: ${first.what}, at ${first.at} calls.**`);
    const fl = limits[1]!;
    if (fl.at !== null && first.at !== null && fl.at <= first.at) {
      out.push('The floor relay (no relay logic at all) misses the end-to-end p99 at the same level or earlier, so that limit is the harness and the kernel, not Switchboard: the relay-own histogram and CPU are the relay\'s figures.');
    }
  }
  return out;
}

/** The whole of docs/capacity.md. */
export function renderReport(input: ReportInput, plotFiles: ReadonlyArray<{ name: string; title: string }>): string {
  const b = input.bench;
  const sb = relayCapacity(b, 'switchboard');
  const bl = relayCapacity(b, 'baseline');
  const fl = relayCapacity(b, 'floor');
  const leg = modelLeg(b);
  const size = sb ? sizing(sb, leg) : undefined;
  const hold = appendHoldMs(b);
  const o = b.options;
  const tlsSessions = b.runs.filter((r) => r.relay === 'switchboard').reduce((n, r) => n + (r.modelTlsUpgrades ?? 0), 0);
  const L: string[] = [];
  const p = (...lines: string[]): void => {
    L.push(...lines);
  };
  p(
    '# Capacity',
    '',
    `<!-- Generated by \`npx tsx bench/capacity-report.ts\`; do not edit by hand: rerun it (bench/README.md). -->`,
    '',
    `From \`${relative(ROOT, input.benchPath) || input.benchPath}\` (bench started ${b.startedAt}): ${b.machine.cpuModel}, ${b.machine.cores} cores, Node ${b.machine.node}; ${b.machine.note}. ` +
      `Levels ${o.levels.join(', ')} concurrent calls, ${o.seconds} s window each, ramp ${o.rampPerSec} calls/s` +
      `${o.metricsOff ? ', with a FRAME_METRICS=false Switchboard' : ''}${(o as { floor?: boolean }).floor ? ', with the harness floor relay' : ''}. ` +
      (leg === 'tls'
        ? `Model leg over TLS, as production (\`--tls\`: ${tlsSessions} Switchboard model sessions arrived on TLS sockets).`
        : o.tls
          ? '**`--tls` was given but not every Switchboard run reached the model over TLS**: the figures are treated as loopback.'
          : 'Model leg on loopback `ws` (no TLS): production\'s TLS cost is estimated, not measured; regenerate with `--tls`.') +
      (b.switchboardNodeFlags ? ` Switchboard ran as \`node ${[...b.switchboardNodeFlags, 'dist/src/main.js'].join(' ')}\`.` : ''),
    '',
  );
  const shared = b.runs.filter((r) => r.otherCpuPercent && Math.max(r.otherCpuPercent.core0, r.otherCpuPercent.core1) > 10);
  if (shared.length > 0) {
    p(`> **Shared machine**: in ${shared.length} of ${b.runs.length} windows other processes used more than 10 % of a core (last column of the latency table). Tail latencies of those windows include their interference; CPU and memory figures are unaffected.`, '');
  }

  p('## Against the targets', '');
  if (sb) p(...targetRows(b, sb, bl, hold), '');

  p('## Calls per core and per pod', '');
  p(
    'A pod runs one relay process, whose event loop uses one core at most and has no CPU limit, so calls per pod = calls per core; the pod\'s CPU request is what it uses at capacity plus head-room (Sizing, below). ' +
      `"At ${CPU_CEILING_PERCENT} % CPU" is where the CPU line (fixed cost + slope × calls) reaches ${CPU_CEILING_PERCENT} % of the core.`,
    '',
  );
  const capRows: string[][] = [['relay', 'e2e targets held up to', 'relay-own hist held up to', 'CPU %/call (slope)', 'fixed CPU %', 'CPU line R²', `calls at ${CPU_CEILING_PERCENT} % CPU`, 'calls/core if CPU-bound (100 %)']];
  for (const c of [sb, bl, fl]) {
    if (!c) continue;
    capRows.push([
      c.relay,
      String(c.e2eCallsPerCore),
      c.histCallsPerCore === null ? '-' : String(c.histCallsPerCore),
      fmt(c.cpuPercentPerCall, 3),
      fmt(c.cpuFixedPercent, 1),
      fmt(c.cpuFitR2, 3),
      fmt(c.callsAtCeiling, 0),
      c.cpuPercentPerCall ? fmt(100 / c.cpuPercentPerCall, 0) : '-',
    ]);
  }
  p(table(capRows), '');

  p('## Memory per call', '');
  const memRows: string[][] = [['relay', 'heap KB/call (slope)', 'external + array buffers KB/call', 'RSS KB/call (slope)', 'RSS fixed MiB']];
  for (const c of [sb, bl, fl]) if (c) memRows.push([c.relay, fmt(c.heapKBPerCall, 1) + (c.heapGcd ? '' : ' (no GC)'), fmt(c.externalKBPerCall, 1), fmt(c.rssKBPerCall, 1), fmt(c.rssFixedMB, 1)]);
  p(
    table(memRows),
    '',
    'Memory is binary throughout: MiB = 2^20 bytes, KB per call = KiB (1024 bytes) of the MiB slopes. Heap is read after a full GC forced through the relay\'s inspector (`HeapProfiler.collectGarbage`, then `process.memoryUsage()`), with every call still up, at each level; the slope over levels is the cost per call. RSS slopes are noisier: V8 and glibc keep freed pages.',
    '',
  );

  p('## Latency by level, with the harness floor', '');
  p(
    '"e2e" is relay-added latency end to end on loopback: the stamp written by the caller (or the sim model) read on the far side, worst direction. ' +
      'The **floor** relay (bench/floor-relay.ts) is Switchboard\'s stack doing nothing but splice: its row is what the callers, the sim model, the kernel and two loopback hops cost. ' +
      '"p99 above floor" is Switchboard\'s (or the baseline\'s) p99 minus the floor\'s at the same level: a rough attribution (percentiles do not subtract exactly).',
    '',
    table(latencyRows(b)),
    '',
  );

  p('## The knee', '');
  for (const c of [sb, bl, fl]) {
    if (!c) continue;
    const k = knee(b.runs.filter((r) => r.relay === c.relay), hold);
    p(
      `- ${c.relay}: ${
        k === null
          ? `no knee over the measured levels (judged p99 never more than double the lowest level's, ${ms(judgedE2e(b.runs.filter((r) => r.relay === c.relay).sort((x, y) => x.level - y.level)[0]!, 'p99', hold))} ms, and no drops)`
          : k.cause === 'drops'
            ? `${k.drops} frames dropped at ${k.at} calls (judged p99 ${ms(k.p99At)} ms; ${ms(k.p99Lowest)} ms at ${k.lowest})`
            : `judged p99 ${ms(k.p99At)} ms at ${k.at} calls, more than double the ${ms(k.p99Lowest)} ms at ${k.lowest} calls`
      }.`,
    );
  }
  p('', `A knee is the first level where the judged end-to-end p99 is more than double the lowest level's, or where frames are dropped. ${judgedText(hold)}`, '');

  p('## What saturates first', '');
  if (sb) p(...saturation(b, sb, size), '');

  p('## Sizing: HPA target and pod resources', '');
  if (sb && size) {
    const fixedTxt = fmt(Math.max(0, sb.cpuFixedPercent ?? 0), 1);
    p(
      `**The rule.** ${CAPACITY_RULE}`,
      '',
      `This run's CPU line: ${cpuLineText(sb)}.`,
      '',
      size.modelLeg === 'tls'
        ? `This run measured the model leg over TLS, as production runs it: the CPU line (fitted on levels ${sb.cpuFitLevels.join(', ')}) is used as measured, nothing added.`
        : 'This run\'s model leg was loopback `ws`; production\'s is TLS, and a `ws` send over TLS is published at ~40 µs. ' +
            `At 50 frames/s that adds ${fmt(TLS_PERCENT_PER_CALL, 2)} % of a core per call, which the sizing adds to the loopback slope (fitted on levels ${sb.cpuFitLevels.join(', ')}). Regenerate with \`--tls\` to measure it instead.`,
      '',
      '```',
      size.modelLeg === 'tls'
        ? `CPU per call (production)   = ${fmt(size.cpuPercentPerCallProd, 3)} % of a core (measured, model leg over TLS)`
        : `CPU per call (production)   = ${fmt(sb.cpuPercentPerCall, 3)} % (measured, loopback) + ${fmt(TLS_PERCENT_PER_CALL, 3)} % (TLS, estimated) = ${fmt(size.cpuPercentPerCallProd, 3)} % of a core`,
      `capacity by CPU             = (${CPU_CEILING_PERCENT} % ceiling - ${fixedTxt} % fixed) / ${fmt(size.cpuPercentPerCallProd, 3)} % = ${size.capacityByCpu} calls`,
      `capacity by latency         = ${size.latencyBasis}`,
      `podCapacityCalls            = min of the two, rounded down to 10 = ${size.podCapacityCalls}`,
      `targetActiveCallsPerPod     = ${TARGET_SHARE * 100} % of capacity (docs/autoscaling.md), rounded down to 10 = ${size.targetActiveCallsPerPod}`,
      `CPU at capacity             = ${fixedTxt} % + ${fmt(size.cpuPercentPerCallProd, 3)} % x ${size.podCapacityCalls} = ${fmt(size.cpuAtCapacityPercent, 1)} % of a core -> request ${size.cpuRequestMillis}m, no CPU limit`,
      `memory per call             = max(RSS slope ${fmt(sb.rssKBPerCall, 1)}, heap ${fmt(sb.heapKBPerCall, 1)} + external ${fmt(sb.externalKBPerCall, 1)}) = ${fmt(size.memoryPerCallKB, 1)} KB`,
      `memory at capacity          = ${fmt(sb.rssFixedMB, 1)} MiB fixed + ${fmt(size.memoryPerCallKB, 1)} KiB x ${size.podCapacityCalls} = ${fmt(size.memoryAtCapacityMiB, 1)} MiB`,
      `memory request              = x ${MEMORY_HEADROOM} headroom, rounded up to 64 = at least ${size.memoryRequestMiB}Mi; limit = 2 x at capacity = at least ${size.memoryLimitMiB}Mi`,
      '```',
      '',
      'The chart (`deploy/helm/switchboard/values.yaml`, and `values-production.yaml` beside it) is where these figures live for the relay and the docs: `autoscaling.podCapacityCalls` (also the relay\'s `MAX_ACTIVE_CALLS`, which the capacity alert and dashboard read back from the pods) and `autoscaling.targetActiveCallsPerPod` as computed here, memory request and limit at least these minimums (more head-room is fine, less is not). `npx tsx bench/capacity-report.ts` prints the values to set; `test/docs/sizing-copies.test.ts` checks that both values files and every copy in the docs agree with this block.',
      '',
      'The HPA (or KEDA) scales on `switchboard_active_calls` averaged per pod with `autoscaling.targetActiveCallsPerPod`; the 40 % between target and capacity absorbs arrivals during the HPA\'s reaction time (docs/autoscaling.md, `scripts/hpa-sim.ts`).',
      '',
    );
  } else {
    p(`${noSizing(sb)}.`, `The rule: ${CAPACITY_RULE}`, '');
  }

  p('## Against the baseline relay', '');
  if (sb && bl) {
    const at = (relay: RelayKind, level: number): RunResult | undefined => b.runs.find((r) => r.relay === relay && r.level === level);
    const rows: string[][] = [['calls', 'CPU % sb / baseline', 'e2e p99 ms sb / baseline', 'GC\'d heap MiB sb / baseline', 'RSS MiB sb / baseline', 'CPU ratio']];
    for (const level of [...new Set(b.runs.map((r) => r.level))].sort((x, y) => x - y)) {
      const s = at('switchboard', level);
      const t = at('baseline', level);
      if (!s || !t) continue;
      rows.push([String(level), `${fmt(s.relayCpuPercent, 1)} / ${fmt(t.relayCpuPercent, 1)}`, `${ms(e2e(s, 'p99'))} / ${ms(e2e(t, 'p99'))}`, `${fmt(s.heapMB, 1)} / ${fmt(t.heapMB, 1)}`, `${fmt(s.rssMB, 1)} / ${fmt(t.rssMB, 1)}`, ratio(s.relayCpuPercent, t.relayCpuPercent)]);
    }
    p('Same run, same drivers, same machine (bench/baseline-relay.ts, written like the public Twilio + OpenAI Realtime Node sample):', '', table(rows), '');
  }
  p(
    '### The published baseline figures — another measurement',
    '',
    'Measured separately (other day, other drivers: 10 turns per call, 10 % barge-in); compare shapes, not digits:',
    '',
    table([
      ['calls', 'relay CPU %', 'p50 / p99 ms', 'RSS MB'],
      ...PUBLISHED_BASELINE.map((r) => [String(r.calls), r.cpuPercent === null ? 'saturated' : String(r.cpuPercent), `${r.p50Ms} / ${r.p99Ms}`, String(r.rssMB)]),
    ]),
    '',
    `That is ~0.4 % of a core per call (~250 calls per core if CPU-bound; 200 calls at 81 %); this run's Switchboard: ${fmt(sb?.cpuPercentPerCall, 3)} %/call` +
      `${sb?.cpuPercentPerCall ? ` (${(0.4 / sb.cpuPercentPerCall).toFixed(1)}x fewer CPU per call than the published figure)` : ''}.`,
    '',
  );

  const scenario = input.load?.result.scenario.name;
  p(scenario === undefined ? '## Load run' : `## Load: scenario \`${scenario}\` (\`npm run load -- --scenario ${scenario}\`)`, '');
  if (input.load) {
    const r = input.load.result;
    const m = r.summary.metrics;
    const tv = (name: string, k: string): string => fmt(m[name]?.values[k] ?? null, 1);
    p(
      `From ${input.load.source}. Scenario \`${r.scenario.name}\`: ${r.scenario.description}` +
        `${input.load.source.startsWith('the bench run') && o.loadSeconds !== undefined ? ` (plan squeezed to ${o.loadSeconds} s by \`--load-seconds\`)` : ''}.`,
      '',
      table([
        ['calls placed', 'completed', 'failed', 'refused', 'dropped', 'elapsed s', 'thresholds'],
        [String(r.calls.placed), String(r.calls.completed), String(r.calls.failed), String(r.calls.refused), String(r.calls.dropped), fmt(r.elapsedMs / 1000, 1), r.ok ? 'all held' : '**crossed**'],
      ]),
      '',
      table([
        ['trend (ms)', 'med', 'p(95)', 'p(99)', 'max', 'count'],
        ...['call_turn_latency', 'call_frame_gap'].map((n) => [n, tv(n, 'med'), tv(n, 'p(95)'), tv(n, 'p(99)'), tv(n, 'max'), String(m[n]?.values.count ?? 0)]),
      ]),
      '',
      table([['threshold', 'actual', 'ok'], ...r.thresholds.map((t) => [`${t.metric} ${t.expression}`, t.actual === null ? (t.note ?? '-') : fmt(t.actual, 3), t.ok ? 'ok' : '**FAIL**'])]),
      '',
    );
    const rel = input.load.relay;
    if (rel) {
      p(
        `Relay during the run (pinned like the bench): ${fmt(rel.cpuPercent, 1)} % of one core on average, peak RSS ${fmt(rel.rssMBMax, 1)} MiB, ` +
          `GC'd heap ${rel.gcMemory ? fmt(rel.gcMemory.heapUsed / 2 ** 20, 1) : '-'} MiB with ${rel.peakCalls} calls up.`,
        '',
      );
    }
  } else {
    p('No load run given: run the bench with `--load steady`, or pass `--load <file>` (the JSON of `npm run -s load -- --scenario steady --json`).', '');
  }

  p('## Plots', '');
  for (const f of plotFiles) p(`![${f.title}](capacity/${f.name})`, '');
  p(
    '## Regenerate',
    '',
    'On an idle 2-core machine (bench/README.md; about 16 minutes, 25 at most):',
    '',
    '```sh',
    REGENERATE_COMMAND,
    '```',
    '',
  );
  return L.join('\n');
}

// --- the chart ----------------------------------------------------------------------------------------

/** The values files that carry the sizing (the relay's MAX_ACTIVE_CALLS, the HPA target, resources). */
export const VALUES_FILES = ['deploy/helm/switchboard/values.yaml', 'deploy/helm/switchboard/values-production.yaml'] as const;

interface SizingValues {
  autoscaling?: { podCapacityCalls?: number; targetActiveCallsPerPod?: number };
  resources?: { requests?: { memory?: string }; limits?: { memory?: string } };
}

const mebibytes = (q: string | undefined): number | null => {
  const m = /^(\d+)(Mi|Gi)$/.exec(q ?? '');
  return m ? Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1) : null;
};

/**
 * What each values file should change for this sizing: one line per file, `ok` when it already
 * carries the capacity and target and at least the memory minimums (a file without `resources`
 * inherits values.yaml's).
 */
export function chartAdvice(size: Sizing, files: ReadonlyArray<{ path: string; text: string }>): string[] {
  return files.map(({ path, text }) => {
    const v = (parse(text) ?? {}) as SizingValues;
    const want: string[] = [];
    if (v.autoscaling?.podCapacityCalls !== size.podCapacityCalls) want.push(`autoscaling.podCapacityCalls: ${size.podCapacityCalls} (now ${v.autoscaling?.podCapacityCalls ?? 'unset'})`);
    if (v.autoscaling?.targetActiveCallsPerPod !== size.targetActiveCallsPerPod) want.push(`autoscaling.targetActiveCallsPerPod: ${size.targetActiveCallsPerPod} (now ${v.autoscaling?.targetActiveCallsPerPod ?? 'unset'})`);
    const req = v.resources?.requests?.memory;
    const lim = v.resources?.limits?.memory;
    if (req !== undefined && (mebibytes(req) ?? 0) < size.memoryRequestMiB) want.push(`resources.requests.memory: at least ${size.memoryRequestMiB}Mi (now ${req})`);
    if (lim !== undefined && (mebibytes(lim) ?? 0) < size.memoryLimitMiB) want.push(`resources.limits.memory: at least ${size.memoryLimitMiB}Mi (now ${lim})`);
    return want.length === 0 ? `${path}: ok` : `${path}: set ${want.join('; ')}`;
  });
}

// --- files ---------------------------------------------------------------------------------------------

/**
 * Why a bench JSON cannot be reported (empty when it can): a relay run or the load run that failed
 * (the bench's `failures`), or a relay and level the options asked for with no run in the JSON (an
 * older bench that did not record its failures). A report of the runs that happened to survive
 * would read as a success.
 */
export function benchRefusal(bench: BenchReport): string[] {
  const why = (bench.failures ?? []).map((f) => `${f.relay}${f.level === null ? '' : ` at ${f.level} calls`} failed: ${f.error}`);
  for (const level of bench.options.levels) {
    for (const kind of benchKinds(bench.options)) {
      if (!bench.runs.some((r) => r.relay === kind && r.level === level) && !why.some((w) => w.startsWith(`${kind} at ${level} calls `))) why.push(`${kind} at ${level} calls: no run in the JSON`);
    }
  }
  if (bench.options.load !== undefined && !bench.load && !why.some((w) => w.startsWith('load '))) why.push(`load scenario ${bench.options.load}: no result in the JSON`);
  return why;
}

/** Newest bench JSON in `dir` by name (names carry the ISO start time). */
export function newestBenchJson(dir: string): string | undefined {
  const files = readdirSync(dir).filter((f) => /^bench-.*\.json$/.test(f)).sort();
  const last = files[files.length - 1];
  return last ? join(dir, last) : undefined;
}

/** A LoadResult from `npm run load -- --json` output (npm's "> script" header lines tolerated) or a bench JSON with `load`. */
export function readLoadJson(path: string): { result: LoadResult; relay?: LoadRun['relay'] } {
  const text = readFileSync(path, 'utf8');
  const start = text.indexOf('{');
  if (start < 0) throw new Error(`${path}: no JSON object`);
  const v = JSON.parse(text.slice(start)) as Partial<BenchReport> & Partial<LoadResult>;
  if (v.load) return v.load;
  if (v.scenario && v.calls && v.summary && v.thresholds) return { result: v as LoadResult };
  throw new Error(`${path}: neither a load result nor a bench JSON with a load run`);
}

export interface WriteOptions {
  benchPath: string;
  loadPath?: string;
  outPath: string;
  plotsDir: string;
}

const PLOT_TITLES: Record<string, string> = {
  p99: 'Relay-added p99 (end to end, worst direction) against concurrent calls',
  cpu: 'Relay CPU against concurrent calls',
  rss: 'Relay RSS against concurrent calls',
  heap: "Relay heap after a forced GC against concurrent calls",
};

/** Reads the JSON(s), writes the plots (the bench's own SVGs when present, else redrawn) and the markdown. */
export function writeCapacityReport(o: WriteOptions): { markdown: string; plots: string[]; sizing: Sizing | undefined } {
  const bench = JSON.parse(readFileSync(o.benchPath, 'utf8')) as BenchReport;
  const refused = benchRefusal(bench);
  if (refused.length > 0) throw new Error(`${o.benchPath}: refused, the bench did not complete (nothing written):\n  ${refused.join('\n  ')}`);
  const input: ReportInput = { bench, benchPath: o.benchPath };
  if (o.loadPath) input.load = { ...readLoadJson(o.loadPath), source: `\`${relative(ROOT, o.loadPath) || o.loadPath}\`` };
  else if (bench.load) input.load = { ...bench.load, source: 'the bench run\'s `--load` scenario (same relay build, same pinning)' };
  mkdirSync(o.plotsDir, { recursive: true });
  const base = o.benchPath.replace(/\.json$/, '');
  const drawn = plots(bench.runs, base);
  const written: Array<{ name: string; title: string }> = [];
  for (const d of drawn) {
    const kind = /-(\w+)\.svg$/.exec(d.path)?.[1] ?? 'plot';
    let svg = d.svg;
    try {
      if (statSync(d.path).isFile()) svg = readFileSync(d.path, 'utf8');
    } catch {
      // not next to the JSON: redraw from the JSON's numbers
    }
    const name = `${kind}.svg`;
    writeFileSync(join(o.plotsDir, name), svg);
    written.push({ name, title: PLOT_TITLES[kind] ?? kind });
  }
  const markdown = renderReport(input, written).replace(/\(capacity\//g, `(${basename(o.plotsDir)}/`);
  writeFileSync(o.outPath, markdown);
  const sb = relayCapacity(bench, 'switchboard');
  return { markdown, plots: written.map((w) => join(o.plotsDir, w.name)), sizing: sb ? sizing(sb, modelLeg(bench)) : undefined };
}

function main(argv: readonly string[]): number {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: { load: { type: 'string' }, out: { type: 'string' }, plots: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const benchPath = positionals[0] ? resolve(positionals[0]) : newestBenchJson(join(ROOT, 'bench/results'));
  if (!benchPath) {
    console.error('capacity-report: no bench JSON given and none in bench/results (run `npm run bench` first)');
    return 2;
  }
  const outPath = resolve(values.out ?? join(ROOT, 'docs/capacity.md'));
  const r = writeCapacityReport({
    benchPath,
    outPath,
    plotsDir: resolve(values.plots ?? join(dirname(outPath), 'capacity')),
    ...(values.load !== undefined ? { loadPath: resolve(values.load) } : {}),
  });
  console.log(`capacity report: ${outPath} from ${benchPath}`);
  for (const p of r.plots) console.log(`plot: ${p}`);
  if (r.sizing) {
    const z = r.sizing;
    console.log(
      `sizing (${z.modelLeg === 'tls' ? 'model leg over TLS, measured' : 'LOOPBACK run, TLS estimated'}): podCapacityCalls ${z.podCapacityCalls}, ` +
        `targetActiveCallsPerPod ${z.targetActiveCallsPerPod}, memory request >= ${z.memoryRequestMiB}Mi, limit >= ${z.memoryLimitMiB}Mi, cpu request ${z.cpuRequestMillis}m`,
    );
    for (const line of chartAdvice(z, VALUES_FILES.map((f) => ({ path: f, text: readFileSync(join(ROOT, f), 'utf8') })))) console.log(`chart: ${line}`);
    console.log('then the copies test/docs/sizing-copies.test.ts lists (README.md, deploy/README.md, docs/autoscaling.md, docs/observability.md, docs/kubernetes.md)');
  } else {
    const sb = relayCapacity(JSON.parse(readFileSync(benchPath, 'utf8')) as BenchReport, 'switchboard');
    console.log(`sizing: ${noSizing(sb)}`);
  }
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.exit(main(process.argv.slice(2)));
  } catch (err) {
    console.error(`capacity-report: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
