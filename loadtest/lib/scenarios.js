// @ts-check
/**
 * The load-test scenarios as data (arrival plan, call mix, thresholds), the per-call scripts, call
 * classification and the threshold logic. No Node or k6 imports: k6-adapter.js and node-driver.ts run it.
 */

import { FRAME_BYTES, readSpeechMarker } from '../../src/sim/portable/audio.js';

// --- metric names ----------------------------------------------------------------------------------

/**
 * Custom metric names, the same in k6 (`k6/metrics`) and in the Node driver's summary.
 * Trends are milliseconds.
 */
export const METRICS = /** @type {const} */ ({
  /** Trend: caller stopped speaking -> first reply audio at the caller. */
  turnLatency: 'call_turn_latency',
  /** Trend: gap between consecutive media messages within one reply (p99 is the jitter figure). */
  frameGap: 'call_frame_gap',
  /** Trend: the webhook POST's round trip (TwiML answered). */
  webhookLatency: 'call_webhook_latency',
  /** Trend: how long each connected call's Media Stream lasted. */
  callDuration: 'call_duration',
  /** Counters: one of these three is 1 for every call placed (0 added to the others). */
  callsCompleted: 'calls_completed',
  callsFailed: 'calls_failed',
  callsRefused: 'calls_refused',
  /** Rates over calls placed. */
  failureRate: 'call_failure_rate',
  refusalRate: 'call_refusal_rate',
  /** Counters over all calls. */
  turns: 'call_turns',
  marksEchoed: 'marks_echoed',
  clears: 'clears',
  bargeIns: 'barge_ins',
  dtmfSent: 'dtmf_sent',
  /** Counter: calls moved to a new Media Stream (REST update or after-stream redirect), one per move. */
  moves: 'call_moves',
  /** Trend: a moved call's old stream ended (`stop`, or the abnormal close) -> the new stream's `start` sent. */
  moveGap: 'call_move_gap',
  /** Trend: the same start -> the first model audio heard on the new stream. */
  moveAudioGap: 'call_move_audio_gap',
});

/** @typedef {'trend' | 'counter' | 'rate'} MetricType */

/** @type {Readonly<Record<string, MetricType>>} */
export const METRIC_TYPES = {
  [METRICS.turnLatency]: 'trend',
  [METRICS.frameGap]: 'trend',
  [METRICS.webhookLatency]: 'trend',
  [METRICS.callDuration]: 'trend',
  [METRICS.callsCompleted]: 'counter',
  [METRICS.callsFailed]: 'counter',
  [METRICS.callsRefused]: 'counter',
  [METRICS.failureRate]: 'rate',
  [METRICS.refusalRate]: 'rate',
  [METRICS.turns]: 'counter',
  [METRICS.marksEchoed]: 'counter',
  [METRICS.clears]: 'counter',
  [METRICS.bargeIns]: 'counter',
  [METRICS.dtmfSent]: 'counter',
  [METRICS.moves]: 'counter',
  [METRICS.moveGap]: 'trend',
  [METRICS.moveAudioGap]: 'trend',
};

// --- scenarios -------------------------------------------------------------------------------------

/**
 * How calls arrive. `iterations`: a fixed number of calls, at most `vus` at once (k6
 * shared-iterations). `vus`: hold `vus` calls up, each replaced when it ends, for `durationS`
 * (k6 constant-vus). `arrival`: new calls per minute ramping linearly between stage targets
 * (k6 ramping-arrival-rate, timeUnit 1m so fractional per-second rates stay integers), at most
 * `maxVUs` at once; a call that finds no free VU is dropped, as k6 does.
 * @typedef {{ kind: 'iterations', vus: number, iterations: number, maxDurationS: number }
 *   | { kind: 'vus', vus: number, durationS: number }
 *   | { kind: 'arrival', startPerMin: number, stages: Array<{ durationS: number, targetPerMin: number }>,
 *       preAllocatedVUs: number, maxVUs: number }} ArrivalPlan
 */

/**
 * What each call does. `bargeInRate`/`dtmfRate`: the share of turns (after the first) that
 * interrupt the previous reply / press a key instead of speaking, spread evenly over calls.
 * @typedef {{ turns: number, bargeInRate: number, dtmfRate: number, bargeInAfterMs: number,
 *   hangupAfterMs: number, maxCallMs: number, replyTimeoutMs: number }} CallMix
 */

/**
 * k6 threshold expressions per metric (`'p(95)<1500'`, `'count>0'`, `'rate<0.01'`), exactly as in
 * k6's `options.thresholds`.
 * @typedef {Record<string, Array<string | { threshold: string, abortOnFail?: boolean }>>} Thresholds
 */

/**
 * Relays restarted one at a time during the run, as a rollout does: `relays` relay processes behind
 * one service, the first SIGTERM `firstAtS` into the run, each next one `everyS` after the previous
 * replacement is ready. Only the Node driver sets this up (loadtest/rolling-restart.ts); under k6
 * the restarts are the operator's (e.g. `kubectl rollout restart`).
 * @typedef {{ relays: number, firstAtS: number, everyS: number }} RestartPlan
 */

/**
 * @typedef {{ name: string, description: string, plan: ArrivalPlan, mix: CallMix,
 *   gracefulStopS: number, thresholds: Thresholds, restart?: RestartPlan }} Scenario
 */

/** Turn latency p95 and frame-gap p99 targets, ms (the relay adds well under 10 ms: docs/capacity.md). */
const TURN_P95_MS = 1500;
const FRAME_GAP_P99_MS = 150;

/** @type {Thresholds} */
const STRICT = {
  [METRICS.callsCompleted]: ['count>0'],
  [METRICS.callsFailed]: ['count<1'],
  [METRICS.callsRefused]: ['count<1'],
  [METRICS.turnLatency]: [`p(95)<${TURN_P95_MS}`],
  [METRICS.frameGap]: [`p(99)<${FRAME_GAP_P99_MS}`],
  [METRICS.marksEchoed]: ['count>0'],
};

/** @type {Thresholds} */
const UNDER_LOAD = {
  [METRICS.callsCompleted]: ['count>0'],
  [METRICS.failureRate]: ['rate<0.01'],
  // Busy answers are allowed under a storm (tenant concurrency limits), in bounded numbers.
  [METRICS.refusalRate]: ['rate<0.05'],
  [METRICS.turnLatency]: [`p(95)<${TURN_P95_MS}`],
  [METRICS.frameGap]: [`p(99)<${FRAME_GAP_P99_MS}`],
  [METRICS.marksEchoed]: ['count>0'],
};

/** @type {CallMix} */
const BASE_MIX = {
  turns: 3,
  bargeInRate: 0.1,
  dtmfRate: 0.1,
  bargeInAfterMs: 300,
  hangupAfterMs: 200,
  maxCallMs: 120_000,
  replyTimeoutMs: 10_000,
};

/** @type {Readonly<Record<string, Scenario>>} */
export const SCENARIOS = {
  smoke: {
    name: 'smoke',
    description: 'five calls at once, two turns each, one barge-in in two calls: does it work at all',
    plan: { kind: 'iterations', vus: 5, iterations: 5, maxDurationS: 60 },
    mix: { ...BASE_MIX, turns: 2, bargeInRate: 0.5, dtmfRate: 0 },
    gracefulStopS: 30,
    thresholds: { ...STRICT, [METRICS.clears]: ['count>0'] },
  },
  steady: {
    name: 'steady',
    description: '100 concurrent calls for 5 minutes, each replaced as it ends: steady-state capacity',
    plan: { kind: 'vus', vus: 100, durationS: 300 },
    mix: { ...BASE_MIX, turns: 6 },
    gracefulStopS: 120,
    thresholds: UNDER_LOAD,
  },
  storm: {
    name: 'storm',
    description: 'arrival-rate spike: 1/s ramps to 20/s in 10 s, holds 30 s, falls back: call set-up under a burst',
    plan: {
      kind: 'arrival',
      startPerMin: 60,
      stages: [
        { durationS: 10, targetPerMin: 60 },
        { durationS: 10, targetPerMin: 1200 },
        { durationS: 30, targetPerMin: 1200 },
        { durationS: 10, targetPerMin: 60 },
      ],
      preAllocatedVUs: 200,
      maxVUs: 1000,
    },
    mix: { ...BASE_MIX, turns: 2 },
    gracefulStopS: 120,
    thresholds: UNDER_LOAD,
  },
  soak: {
    name: 'soak',
    description: '50 concurrent ten-turn calls for 30 minutes: leaks, drift and slow degradation',
    plan: { kind: 'vus', vus: 50, durationS: 1800 },
    mix: { ...BASE_MIX, turns: 10 },
    gracefulStopS: 180,
    thresholds: UNDER_LOAD,
  },
  'barge-in': {
    name: 'barge-in',
    description: '20 concurrent calls for 2 minutes where every later turn interrupts the reply: clear and mark handling',
    plan: { kind: 'vus', vus: 20, durationS: 120 },
    mix: { ...BASE_MIX, turns: 4, bargeInRate: 1, dtmfRate: 0 },
    gracefulStopS: 60,
    thresholds: { ...UNDER_LOAD, [METRICS.clears]: ['count>0'], [METRICS.bargeIns]: ['count>0'] },
  },
  'rolling-restart': {
    name: 'rolling-restart',
    description: '30 concurrent eight-turn calls for 90 s while 3 relays behind one service restart one at a time: calls lost, moved, gaps',
    plan: { kind: 'vus', vus: 30, durationS: 90 },
    mix: { ...BASE_MIX, turns: 8, bargeInRate: 0, dtmfRate: 0 },
    gracefulStopS: 120,
    thresholds: {
      [METRICS.callsCompleted]: ['count>0'],
      [METRICS.failureRate]: ['rate<0.01'],
      [METRICS.refusalRate]: ['rate<0.05'],
      [METRICS.turnLatency]: [`p(95)<${TURN_P95_MS}`],
      // Old stream stopped -> new stream started, per moved call (docs: gap p99 within 1.5 s).
      [METRICS.moveGap]: ['p(99)<1500'],
    },
    restart: { relays: 3, firstAtS: 10, everyS: 5 },
  },
};

/** @returns {string[]} */
export function scenarioNames() {
  return Object.keys(SCENARIOS);
}

/**
 * @param {string} name @returns {Scenario}
 * @throws {Error} naming the known scenarios when `name` is not one.
 */
export function getScenario(name) {
  const s = Object.prototype.hasOwnProperty.call(SCENARIOS, name) ? SCENARIOS[name] : undefined;
  if (!s) throw new Error(`unknown scenario ${JSON.stringify(name)}: one of ${scenarioNames().join(', ')}`);
  return s;
}

/** @param {number} s */
function secs(s) {
  return `${Math.max(1, Math.round(s))}s`;
}

/** Total seconds an arrival plan lasts. @param {ArrivalPlan} plan */
export function planDurationS(plan) {
  switch (plan.kind) {
    case 'iterations':
      return plan.maxDurationS;
    case 'vus':
      return plan.durationS;
    case 'arrival':
      return plan.stages.reduce((n, st) => n + st.durationS, 0);
  }
}

/**
 * A scenario resized: `scale` multiplies calls (VUs, iterations, arrival rates), `durationS`
 * stretches or squeezes the plan to that many seconds (stages keep their proportions).
 * @param {Scenario} s @param {{ scale?: number, durationS?: number }} o @returns {Scenario}
 */
export function scaleScenario(s, o) {
  const f = o.scale ?? 1;
  if (!(f > 0)) throw new Error(`scale must be > 0 (got ${f})`);
  if (o.durationS !== undefined && !(o.durationS > 0)) throw new Error(`duration must be > 0 s (got ${o.durationS})`);
  const n = (/** @type {number} */ x) => Math.max(1, Math.round(x * f));
  const p = s.plan;
  /** @type {ArrivalPlan} */
  let plan;
  switch (p.kind) {
    case 'iterations':
      plan = { kind: 'iterations', vus: n(p.vus), iterations: n(p.iterations), maxDurationS: o.durationS ?? p.maxDurationS };
      break;
    case 'vus':
      plan = { kind: 'vus', vus: n(p.vus), durationS: o.durationS ?? p.durationS };
      break;
    case 'arrival': {
      const stretch = o.durationS === undefined ? 1 : o.durationS / planDurationS(p);
      plan = {
        kind: 'arrival',
        startPerMin: Math.round(p.startPerMin * f),
        stages: p.stages.map((st) => ({ durationS: st.durationS * stretch, targetPerMin: Math.round(st.targetPerMin * f) })),
        preAllocatedVUs: n(p.preAllocatedVUs),
        maxVUs: n(p.maxVUs),
      };
      break;
    }
  }
  // Restarts keep their place in a stretched or squeezed run.
  const stretch = o.durationS === undefined ? 1 : o.durationS / planDurationS(p);
  const restart = s.restart ? { ...s.restart, firstAtS: s.restart.firstAtS * stretch, everyS: s.restart.everyS * stretch } : undefined;
  return { ...s, plan, ...(restart ? { restart } : {}) };
}

/**
 * The k6 `options.scenarios` entry for a plan (`exec` defaults to the script's default function).
 * @param {Scenario} s @returns {Record<string, unknown>}
 */
export function k6ScenarioOptions(s) {
  const p = s.plan;
  const gracefulStop = secs(s.gracefulStopS);
  switch (p.kind) {
    case 'iterations':
      return { executor: 'shared-iterations', vus: p.vus, iterations: p.iterations, maxDuration: secs(p.maxDurationS) };
    case 'vus':
      return { executor: 'constant-vus', vus: p.vus, duration: secs(p.durationS), gracefulStop };
    case 'arrival':
      return {
        executor: 'ramping-arrival-rate',
        startRate: p.startPerMin,
        timeUnit: '1m',
        preAllocatedVUs: p.preAllocatedVUs,
        maxVUs: p.maxVUs,
        stages: p.stages.map((st) => ({ duration: secs(st.durationS), target: st.targetPerMin })),
        gracefulStop,
      };
  }
}

/**
 * Start offsets (ms) of the calls of an arrival plan: the k-th call starts when the integral of the
 * piecewise-linear rate reaches k, as k6's ramping-arrival-rate schedules iterations.
 * @param {Extract<ArrivalPlan, { kind: 'arrival' }>} plan @param {number} [maxCalls] bound on the list
 * @returns {number[]}
 */
export function arrivalOffsetsMs(plan, maxCalls = 1_000_000) {
  /** @type {number[]} */
  const out = [];
  let t0 = 0;
  let done = 0; // calls scheduled before this stage (the integral so far)
  let r0 = plan.startPerMin / 60;
  for (const st of plan.stages) {
    const d = st.durationS;
    const r1 = st.targetPerMin / 60;
    const inStage = ((r0 + r1) / 2) * d;
    const a = (r1 - r0) / (2 * d);
    for (let k = Math.ceil(done - 1e-9); k < done + inStage - 1e-9 && out.length < maxCalls; k++) {
      const n = k - done; // calls into this stage
      let t;
      if (Math.abs(a) < 1e-12) t = r0 > 0 ? n / r0 : 0;
      else t = (-r0 + Math.sqrt(Math.max(0, r0 * r0 + 4 * a * n))) / (2 * a);
      out.push(Math.round((t0 + Math.min(d, Math.max(0, t))) * 1000));
    }
    done += inStage;
    t0 += d;
    r0 = r1;
  }
  return out;
}

// --- per-call scripts ------------------------------------------------------------------------------

/** Caller lines that reach the model's tools (quote, service area) without ending the call. */
const PHRASES = [
  'Hi, I have a leaking tap in the kitchen.',
  'What does drain cleaning cost?',
  'Do you serve postcode 10001?',
  'Could someone come round on Tuesday morning?',
  'It drips about once a second.',
  'Is there a call-out fee?',
];

/** True for about `rate` of consecutive `k`, evenly spread (no RNG: k6 and Node agree). @param {number} rate @param {number} k */
function evenly(rate, k) {
  return Math.floor((k + 1) * rate + 1e-9) > Math.floor(k * rate + 1e-9);
}

/**
 * The caller-core CallScript for call number `callIndex` (0-based) of a scenario: turns cycling
 * through caller lines; later turns barge in or press a key at the mix's rates; the caller hangs
 * up shortly after the last reply, as a person would.
 * @param {CallMix} mix @param {number} callIndex
 * @returns {import('../../src/sim/portable/caller-core.js').CallScript}
 */
export function callScript(mix, callIndex) {
  /** @type {import('../../src/sim/portable/caller-core.js').CallTurn[]} */
  const turns = [];
  const later = Math.max(0, mix.turns - 1);
  for (let j = 0; j < mix.turns; j++) {
    const k = callIndex * later + (j - 1);
    const say = /** @type {string} */ (PHRASES[(callIndex + j) % PHRASES.length]);
    if (j > 0 && evenly(mix.dtmfRate, k)) turns.push({ say: '', dtmf: String((callIndex + j) % 10) });
    // Offset so that equal rates do not land barge-ins and key presses on the same turns.
    else if (j > 0 && evenly(mix.bargeInRate, k + 5)) turns.push({ say, bargeInAfterMs: mix.bargeInAfterMs });
    else turns.push({ say });
  }
  return { turns, hangupAfterMs: mix.hangupAfterMs, maxCallMs: mix.maxCallMs, replyTimeoutMs: mix.replyTimeoutMs };
}

/**
 * Where to open the Media Stream: the `<Stream url>` path on BASE_URL, so an in-cluster run
 * measures the relay and not the ingress, while the upgrade is still signed over the TwiML URL.
 * With `publicUrl`, only a stream on it is redirected to BASE_URL: a call moved to another host
 * (a REST update's TwiML) is dialled where that TwiML says.
 * @param {string} baseUrl @param {string} streamUrl @param {string} [publicUrl]
 */
export function streamDialUrl(baseUrl, streamUrl, publicUrl) {
  if (publicUrl !== undefined && !streamUrl.startsWith(publicUrl.replace(/^http/i, 'ws').replace(/\/+$/, ''))) return streamUrl;
  const path = /^wss?:\/\/[^/]+(\/.*)?$/i.exec(streamUrl)?.[1] ?? '/twilio/media';
  return baseUrl.replace(/^http/i, 'ws') + path;
}

// --- outcomes --------------------------------------------------------------------------------------

/** Relay close codes that mean "busy", not broken (src/errors.ts CloseCode: draining, overCapacity). */
const BUSY_CLOSE = [4005, 4013];
/** Relay close codes of a call that ended as planned (normal, callEnded). */
const NORMAL_CLOSE = [1000, 4011];

/**
 * The fields of a Node CallReport / the k6 adapter's record that decide a call's outcome.
 * @typedef {{ stage: 'unreachable' | 'rejected' | 'not-connected' | 'stream-failed' | 'connected',
 *   webhookStatus: number | null, closeCode: number | null, endedBy: string | null,
 *   errors: readonly string[], turns: readonly unknown[], turnsPlanned: number }} CallFacts
 */

/**
 * completed: the whole script ran and the call ended cleanly. refused: the relay said no politely
 * (unknown number or busy TwiML, HTTP 429/503, busy close code). failed: anything else.
 * @param {CallFacts} c @returns {{ outcome: 'completed' | 'failed' | 'refused', reason: string }}
 */
export function classifyCall(c) {
  const busyHttp = c.webhookStatus === 429 || c.webhookStatus === 503;
  switch (c.stage) {
    case 'not-connected':
      return { outcome: 'refused', reason: 'TwiML without <Connect><Stream> (unknown number or busy)' };
    case 'unreachable':
      return { outcome: 'failed', reason: c.errors[0] ?? 'webhook unreachable' };
    case 'rejected':
      return busyHttp
        ? { outcome: 'refused', reason: `webhook answered HTTP ${c.webhookStatus}` }
        : { outcome: 'failed', reason: c.errors[0] ?? `webhook answered HTTP ${c.webhookStatus ?? 0}` };
    case 'stream-failed':
      return { outcome: 'failed', reason: c.errors[0] ?? 'media stream did not open' };
    case 'connected':
      break;
  }
  if (c.endedBy === 'relay' && c.closeCode !== null && BUSY_CLOSE.includes(c.closeCode)) {
    return { outcome: 'refused', reason: `relay closed the stream with ${c.closeCode} (busy)` };
  }
  if (c.errors.length > 0) return { outcome: 'failed', reason: c.errors[0] ?? '' };
  if (c.endedBy === 'timeout') return { outcome: 'failed', reason: 'call ran past maxCallMs' };
  if (c.endedBy === 'relay' && (c.closeCode === null || !NORMAL_CLOSE.includes(c.closeCode))) {
    return { outcome: 'failed', reason: `relay closed the stream with ${c.closeCode ?? 'no code'}` };
  }
  if (c.turns.length < c.turnsPlanned) {
    return { outcome: 'failed', reason: `only ${c.turns.length} of ${c.turnsPlanned} turns ran` };
  }
  return { outcome: 'completed', reason: '' };
}

/**
 * One call's contribution to the run's metrics, the same for k6 and the Node driver: its outcome,
 * a value for every counter (0 included, so k6 thresholds always see the metric), and its turn
 * latencies.
 * @param {CallFacts} facts @param {import('../../src/sim/portable/caller-core.js').CallerReport | null} report
 * @returns {{ outcome: 'completed' | 'failed' | 'refused', reason: string,
 *   counters: Record<string, number>, turnLatencies: number[], moveGaps: number[], moveAudioGaps: number[] }}
 */
export function callOutcomeMetrics(facts, report) {
  const { outcome, reason } = classifyCall(facts);
  const turns = report ? report.turns : [];
  /** @type {number[]} */
  const turnLatencies = [];
  let bargeIns = 0;
  for (const t of turns) {
    if (t.turnLatencyMs !== null) turnLatencies.push(t.turnLatencyMs);
    if (t.bargeIn) bargeIns++;
  }
  /** @type {number[]} */
  const moveGaps = [];
  /** @type {number[]} */
  const moveAudioGaps = [];
  const legs = report ? report.legs : [];
  for (const l of legs.slice(1)) {
    if (l.gapMs !== null) moveGaps.push(l.gapMs);
    if (l.firstAudioMs !== null) moveAudioGaps.push(l.firstAudioMs);
  }
  return {
    outcome,
    reason,
    counters: {
      [METRICS.callsCompleted]: outcome === 'completed' ? 1 : 0,
      [METRICS.callsFailed]: outcome === 'failed' ? 1 : 0,
      [METRICS.callsRefused]: outcome === 'refused' ? 1 : 0,
      [METRICS.turns]: turns.length,
      [METRICS.marksEchoed]: report ? report.marksEchoed : 0,
      [METRICS.clears]: report ? report.clears : 0,
      [METRICS.bargeIns]: bargeIns,
      [METRICS.dtmfSent]: report ? report.dtmfSent : 0,
      [METRICS.moves]: Math.max(0, legs.length - 1),
    },
    turnLatencies,
    moveGaps,
    moveAudioGaps,
  };
}

/**
 * A caller-core `onAudio` hook that reports the gap between consecutive media messages of one
 * reply. A reply starts with the spoken-text marker's chunk 0 (audio.js), so gaps across the
 * caller's own turn, a barge-in or a new reply are not counted, as in caller-core's max gap.
 * @param {(gapMs: number) => void} onGap
 * @returns {(bytes: Uint8Array, nowMs: number) => void}
 */
export function frameGapTap(onGap) {
  let last = -1;
  return (bytes, nowMs) => {
    const marker = bytes.length >= FRAME_BYTES ? readSpeechMarker(bytes) : undefined;
    if (last >= 0 && !(marker && marker.index === 0)) onGap(nowMs - last);
    last = nowMs;
  };
}

// --- summary and thresholds -------------------------------------------------------------------------

/**
 * The end-of-test summary in k6's handleSummary shape: `metrics[name].values` holds
 * `avg, min, med, max, p(N)` for trends, `count, rate` for counters, `rate, passes, fails` for rates.
 * @typedef {{ metrics: Record<string, { type: MetricType, values: Record<string, number> }> }} Summary
 */

/**
 * The quantile `q` (0..1) of sorted samples, interpolated between ranks like k6's Trend.
 * @param {readonly number[]} sorted @param {number} q
 */
export function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * Math.min(1, Math.max(0, q));
  const lo = Math.floor(pos);
  const a = /** @type {number} */ (sorted[lo]);
  const b = /** @type {number} */ (sorted[Math.min(sorted.length - 1, lo + 1)]);
  return a + (b - a) * (pos - lo);
}

/**
 * Trend values as k6 reports them, plus p(99) and p(99.9).
 * @param {readonly number[]} samples @returns {Record<string, number>}
 */
export function trendValues(samples) {
  const sorted = Float64Array.from(samples).sort();
  const arr = Array.from(sorted);
  const n = arr.length;
  let sum = 0;
  for (const v of arr) sum += v;
  return {
    count: n,
    avg: n ? sum / n : NaN,
    min: n ? /** @type {number} */ (arr[0]) : NaN,
    med: quantile(arr, 0.5),
    max: n ? /** @type {number} */ (arr[n - 1]) : NaN,
    'p(90)': quantile(arr, 0.9),
    'p(95)': quantile(arr, 0.95),
    'p(99)': quantile(arr, 0.99),
    'p(99.9)': quantile(arr, 0.999),
  };
}

const EXPR = /^\s*(avg|min|max|med|count|rate|value|p\((\d+(?:\.\d+)?)\))\s*(<=|>=|===|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$/;

/**
 * @typedef {{ metric: string, expression: string, actual: number | null, ok: boolean, note?: string }} ThresholdResult
 */

/**
 * Evaluate k6 threshold expressions against a summary, as k6 does at the end of a run. A counter
 * or rate that saw no samples counts as 0; a trend without samples cannot be judged and passes
 * (k6 likewise), so every scenario also asks for `calls_completed count>0`.
 * @param {Summary} summary @param {Thresholds} thresholds
 * @returns {{ ok: boolean, results: ThresholdResult[] }}
 */
export function evaluateThresholds(summary, thresholds) {
  /** @type {ThresholdResult[]} */
  const results = [];
  for (const metric of Object.keys(thresholds)) {
    for (const t of thresholds[metric] ?? []) {
      const expression = typeof t === 'string' ? t : t.threshold;
      const m = EXPR.exec(expression);
      if (!m) {
        results.push({ metric, expression, actual: null, ok: false, note: 'unparseable threshold expression' });
        continue;
      }
      const stat = m[2] !== undefined ? `p(${Number(m[2])})` : /** @type {string} */ (m[1]);
      const op = /** @type {string} */ (m[3]);
      const limit = Number(m[4]);
      const entry = summary.metrics[metric];
      let actual = entry?.values[stat];
      if (actual === undefined && m[2] !== undefined) actual = entry?.values[`p(${m[2]})`];
      const type = entry?.type ?? METRIC_TYPES[metric];
      if (actual === undefined || Number.isNaN(actual)) {
        if (type === 'counter' || type === 'rate') actual = 0;
        else {
          results.push({ metric, expression, actual: null, ok: true, note: 'no samples' });
          continue;
        }
      }
      results.push({ metric, expression, actual, ok: compare(actual, op, limit) });
    }
  }
  return { ok: results.every((r) => r.ok), results };
}

/** @param {number} a @param {string} op @param {number} b */
function compare(a, op, b) {
  switch (op) {
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    case '>=':
      return a >= b;
    case '==':
    case '===':
      return a === b;
    case '!=':
      return a !== b;
    default:
      return false;
  }
}
