/**
 * Replays a call arrival curve through the Kubernetes HPA algorithm with the chart's autoscaling
 * values, to see pods, calls per pod and refused calls over time. It models no relay internals.
 *
 * Usage: npx tsx scripts/hpa-sim.ts [--arrivals storm|ramp] [--json] [--values path/to/values.yaml]
 *        [--startup SECONDS] [--metric-lag SECONDS] [--seed N]
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';

/** One HPA scaling policy (autoscaling/v2 HPAScalingPolicy). */
export interface ScalingPolicy {
  type: 'Pods' | 'Percent';
  value: number;
  periodSeconds: number;
}

/** autoscaling/v2 HPAScalingRules. */
export interface ScalingRules {
  stabilizationWindowSeconds: number;
  selectPolicy: 'Max' | 'Min' | 'Disabled';
  policies: ScalingPolicy[];
}

/** The chart's autoscaling values the simulation reads, plus the drain timeout. */
export interface AutoscalingSettings {
  minReplicas: number;
  maxReplicas: number;
  targetActiveCallsPerPod: number;
  podCapacityCalls: number;
  behavior: { scaleUp: ScalingRules; scaleDown: ScalingRules };
  drainTimeoutSeconds: number;
}

/** A call arrival curve: mean new calls per second at second t, and how long a call lasts. */
export interface ArrivalCurve {
  name: string;
  durationSeconds: number;
  rate(t: number): number;
  /** Median call length in seconds (lognormal, sigma 0.6, capped at 1 hour). */
  medianCallSeconds: number;
}

export interface SimOptions {
  settings: AutoscalingSettings;
  curve: ArrivalCurve;
  /** Seconds from scale-up decision to a ready pod (scheduling, image pull, start-up probe). */
  podStartupSeconds?: number;
  /** Age of the metric the HPA sees: scrape interval + adapter cache. */
  metricLagSeconds?: number;
  /** HPA controller sync period (kube-controller-manager --horizontal-pod-autoscaler-sync-period). */
  syncPeriodSeconds?: number;
  /** Seconds between samples in the result. */
  sampleEverySeconds?: number;
  seed?: number;
}

export interface SimSample {
  t: number;
  arrivalsPerSecond: number;
  desiredReplicas: number;
  readyPods: number;
  startingPods: number;
  drainingPods: number;
  activeCalls: number;
  avgCallsPerReadyPod: number;
  maxCallsPerPod: number;
  refusedInInterval: number;
}

export interface SimResult {
  curve: string;
  settings: AutoscalingSettings;
  samples: SimSample[];
  totals: {
    offered: number;
    accepted: number;
    refused: number;
    completed: number;
    /** Calls still running when their draining pod hit drain.timeoutSeconds. */
    cutByDrainTimeout: number;
    stillActive: number;
    peakReplicas: number;
    peakCallsPerPod: number;
    scaleEvents: { t: number; from: number; to: number }[];
  };
}

// HPA defaults (kube-controller-manager): 10 % tolerance around the target, 15 s sync.
const TOLERANCE = 0.1;

interface Pod {
  id: number;
  createdAt: number;
  readyAt: number;
  /** Set when the Deployment scaled it away: it takes no new calls and drains. */
  terminatingAt: number | undefined;
  /** End times of the calls it holds. */
  calls: number[];
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function poisson(lambda: number, rnd: () => number): number {
  if (lambda <= 0) return 0;
  // Knuth is exact and fast enough for the tens of calls per second these curves reach.
  const limit = Math.exp(-lambda);
  let k = 0;
  for (let p = rnd(); p > limit && k < 10_000; p *= rnd()) k++;
  return k;
}

function normal(rnd: () => number): number {
  const u = Math.max(rnd(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
}

function changesWithin(events: readonly { t: number; delta: number }[], now: number, period: number, sign: 1 | -1): number {
  let sum = 0;
  for (const e of events) if (e.t > now - period && Math.sign(e.delta) === sign) sum += Math.abs(e.delta);
  return sum;
}

/** The replica count the HPA's rate policies allow, as kube-controller-manager computes it. */
export function scaleLimit(
  rules: ScalingRules,
  direction: 'up' | 'down',
  current: number,
  events: readonly { t: number; delta: number }[],
  now: number,
): number {
  if (rules.selectPolicy === 'Disabled') return current;
  let result = direction === 'up' ? (rules.selectPolicy === 'Max' ? -Infinity : Infinity) : rules.selectPolicy === 'Max' ? Infinity : -Infinity;
  for (const p of rules.policies) {
    const added = changesWithin(events, now, p.periodSeconds, 1);
    const deleted = changesWithin(events, now, p.periodSeconds, -1);
    const start = current - added + deleted;
    let proposed: number;
    if (direction === 'up') {
      proposed = p.type === 'Pods' ? start + p.value : Math.ceil(start * (1 + p.value / 100));
      result = rules.selectPolicy === 'Max' ? Math.max(result, proposed) : Math.min(result, proposed);
    } else {
      // Go's int32() truncation, as upstream.
      proposed = p.type === 'Pods' ? start - p.value : Math.trunc(start * (1 - p.value / 100));
      result = rules.selectPolicy === 'Max' ? Math.min(result, proposed) : Math.max(result, proposed);
    }
  }
  return result;
}

/** Run the arrival curve through the HPA loop, one-second steps. Deterministic for a given seed. */
export function simulate(opts: SimOptions): SimResult {
  const s = opts.settings;
  const startup = opts.podStartupSeconds ?? 30;
  const lag = opts.metricLagSeconds ?? 30;
  const sync = opts.syncPeriodSeconds ?? 15;
  const sampleEvery = opts.sampleEverySeconds ?? 60;
  const rnd = mulberry32(opts.seed ?? 7);
  const maxCall = 3600;

  let nextId = 0;
  const newPod = (t: number, ready: boolean): Pod => ({
    id: nextId++,
    createdAt: t,
    readyAt: ready ? t : t + startup,
    terminatingAt: undefined,
    calls: [],
  });
  let pods: Pod[] = Array.from({ length: s.minReplicas }, () => newPod(-3600, true));
  let replicas = s.minReplicas;
  const recommendations: { t: number; replicas: number }[] = [];
  const scaleEvents: { t: number; delta: number }[] = [];
  const history: Map<number, number>[] = []; // per second: pod id -> active calls
  const samples: SimSample[] = [];
  const totals: SimResult['totals'] = {
    offered: 0,
    accepted: 0,
    refused: 0,
    completed: 0,
    cutByDrainTimeout: 0,
    stillActive: 0,
    peakReplicas: replicas,
    peakCallsPerPod: 0,
    scaleEvents: [],
  };
  let rr = 0;
  let refusedInInterval = 0;

  for (let t = 0; t < opts.curve.durationSeconds; t++) {
    // 1. Calls end; draining pods past their drain timeout cut what is left and go away.
    for (const pod of pods) {
      const before = pod.calls.length;
      pod.calls = pod.calls.filter((end) => end > t);
      totals.completed += before - pod.calls.length;
    }
    pods = pods.filter((pod) => {
      if (pod.terminatingAt === undefined) return true;
      if (pod.calls.length === 0) return false;
      if (t - pod.terminatingAt >= s.drainTimeoutSeconds) {
        totals.cutByDrainTimeout += pod.calls.length;
        return false;
      }
      return true;
    });

    // 2. New calls, round-robin over ready pods that are not terminating (ingress-nginx default).
    const serving = pods.filter((p) => p.terminatingAt === undefined && p.readyAt <= t);
    const arrivals = poisson(opts.curve.rate(t), rnd);
    for (let i = 0; i < arrivals; i++) {
      totals.offered++;
      const pod = serving.length > 0 ? serving[rr++ % serving.length] : undefined;
      if (pod === undefined || pod.calls.length >= s.podCapacityCalls) {
        totals.refused++;
        refusedInInterval++;
        continue;
      }
      const length = Math.min(maxCall, Math.max(5, opts.curve.medianCallSeconds * Math.exp(0.6 * normal(rnd))));
      pod.calls.push(t + Math.round(length));
      totals.accepted++;
    }
    const snapshot = new Map<number, number>();
    for (const pod of pods) {
      snapshot.set(pod.id, pod.calls.length);
      totals.peakCallsPerPod = Math.max(totals.peakCallsPerPod, pod.calls.length);
    }
    history.push(snapshot);

    // 3. The HPA loop.
    if (t % sync === 0) {
      const seen = history[Math.max(0, t - lag)] ?? snapshot;
      const live = pods.filter((p) => p.terminatingAt === undefined); // terminating pods are ignored
      // A pod has a metric once it was ready when the (lagging) sample was taken.
      const withMetric = live.filter((p) => p.readyAt <= t - lag && seen.has(p.id));
      const missing = live.length - withMetric.length;
      const sum = withMetric.reduce((a, p) => a + (seen.get(p.id) ?? 0), 0);
      let desired = replicas;
      if (withMetric.length > 0) {
        const ratio = sum / withMetric.length / s.targetActiveCallsPerPod;
        if (Math.abs(ratio - 1) > TOLERANCE) {
          desired = Math.ceil(ratio * withMetric.length);
          if (missing > 0 && ratio > 1) {
            // Upstream: on scale-up, pods without a metric count as 0, damping the step.
            const damped = sum / (withMetric.length + missing) / s.targetActiveCallsPerPod;
            desired = damped <= 1 || Math.abs(damped - 1) <= TOLERANCE ? replicas : Math.ceil(damped * (withMetric.length + missing));
          }
        }
      }
      // Stabilisation: the lowest recent recommendation bounds a rise, the highest bounds a fall.
      let up = desired;
      let down = desired;
      for (const r of recommendations) {
        if (r.t > t - s.behavior.scaleUp.stabilizationWindowSeconds) up = Math.min(up, r.replicas);
        if (r.t > t - s.behavior.scaleDown.stabilizationWindowSeconds) down = Math.max(down, r.replicas);
      }
      recommendations.push({ t, replicas: desired });
      const keep = Math.max(s.behavior.scaleUp.stabilizationWindowSeconds, s.behavior.scaleDown.stabilizationWindowSeconds);
      while (recommendations.length > 0 && (recommendations[0]?.t ?? t) <= t - keep) recommendations.shift();
      let next = replicas;
      if (next < up) next = up;
      if (next > down) next = down;
      if (next > replicas) next = Math.min(next, s.maxReplicas, scaleLimit(s.behavior.scaleUp, 'up', replicas, scaleEvents, t));
      else if (next < replicas) next = Math.max(next, s.minReplicas, scaleLimit(s.behavior.scaleDown, 'down', replicas, scaleEvents, t));
      next = Math.min(s.maxReplicas, Math.max(s.minReplicas, next));
      if (next !== replicas) {
        scaleEvents.push({ t, delta: next - replicas });
        totals.scaleEvents.push({ t, from: replicas, to: next });
        if (next > replicas) {
          for (let i = replicas; i < next; i++) pods.push(newPod(t, false));
        } else {
          // ReplicaSet deletion order: not-ready first, then the most recently ready.
          const victims = live
            .slice()
            .sort((a, b) => Number(a.readyAt <= t) - Number(b.readyAt <= t) || b.readyAt - a.readyAt)
            .slice(0, replicas - next);
          for (const v of victims) v.terminatingAt = t;
        }
        replicas = next;
        totals.peakReplicas = Math.max(totals.peakReplicas, replicas);
      }
    }

    if (t % sampleEvery === 0 || t === opts.curve.durationSeconds - 1) {
      const ready = pods.filter((p) => p.terminatingAt === undefined && p.readyAt <= t);
      const active = pods.reduce((a, p) => a + p.calls.length, 0);
      samples.push({
        t,
        arrivalsPerSecond: Math.round(opts.curve.rate(t) * 100) / 100,
        desiredReplicas: replicas,
        readyPods: ready.length,
        startingPods: pods.filter((p) => p.terminatingAt === undefined && p.readyAt > t).length,
        drainingPods: pods.filter((p) => p.terminatingAt !== undefined).length,
        activeCalls: active,
        avgCallsPerReadyPod: ready.length > 0 ? Math.round(ready.reduce((a, p) => a + p.calls.length, 0) / ready.length) : 0,
        maxCallsPerPod: pods.reduce((a, p) => Math.max(a, p.calls.length), 0),
        refusedInInterval,
      });
      refusedInInterval = 0;
    }
  }
  totals.stillActive = pods.reduce((a, p) => a + p.calls.length, 0);
  return { curve: opts.curve.name, settings: s, samples, totals };
}

/** Linear interpolation over (second, calls/s) points. */
export function piecewise(points: readonly (readonly [number, number])[]): (t: number) => number {
  return (t) => {
    for (let i = 1; i < points.length; i++) {
      const [t0, r0] = points[i - 1] ?? [0, 0];
      const [t1, r1] = points[i] ?? [0, 0];
      if (t <= t1) return t1 === t0 ? r1 : r0 + ((r1 - r0) * (t - t0)) / (t1 - t0);
    }
    return points[points.length - 1]?.[1] ?? 0;
  };
}

/** The built-in curves: `storm` (a k6 call-storm spike) and `ramp` (a business-day rise and fall). */
export const CURVES: Record<'storm' | 'ramp', ArrivalCurve> = {
  storm: {
    name: 'storm',
    durationSeconds: 5400,
    medianCallSeconds: 150,
    // 1 call/s, then within a minute 12 calls/s for 10 minutes, then 2 calls/s.
    rate: piecewise([[0, 1], [600, 1], [660, 12], [1260, 12], [1320, 2], [5400, 2]]),
  },
  ramp: {
    name: 'ramp',
    durationSeconds: 5400,
    medianCallSeconds: 150,
    rate: piecewise([[0, 0.5], [1800, 10], [2400, 10], [3600, 0.5], [5400, 0.5]]),
  },
};

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function mergeValues(base: unknown, over: unknown): unknown {
  if (typeof base !== 'object' || base === null || Array.isArray(base)) return over ?? base;
  if (typeof over !== 'object' || over === null || Array.isArray(over)) return over ?? base;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) out[k] = mergeValues(out[k], v);
  return out;
}

/**
 * The chart's autoscaling and drain values: values.yaml, with an overrides file (e.g.
 * values-production.yaml) merged over it the way helm merges `-f`.
 */
export function loadChartSettings(overridesPath?: string): AutoscalingSettings {
  const defaults: unknown = parseYaml(readFileSync(join(ROOT, 'deploy/helm/switchboard/values.yaml'), 'utf8'));
  const overrides: unknown = overridesPath === undefined ? {} : parseYaml(readFileSync(overridesPath, 'utf8'));
  const v = mergeValues(defaults, overrides) as {
    autoscaling: Omit<AutoscalingSettings, 'drainTimeoutSeconds'>;
    drain: { timeoutSeconds: number };
  };
  const a = v.autoscaling;
  return {
    minReplicas: a.minReplicas,
    maxReplicas: a.maxReplicas,
    targetActiveCallsPerPod: a.targetActiveCallsPerPod,
    podCapacityCalls: a.podCapacityCalls,
    behavior: a.behavior,
    drainTimeoutSeconds: v.drain.timeoutSeconds,
  };
}

function formatTable(r: SimResult): string {
  const head = ['t(min)', 'calls/s', 'replicas', 'ready', 'starting', 'draining', 'active', 'avg/pod', 'max/pod', 'refused'];
  const rows = r.samples.map((x) => [
    (x.t / 60).toFixed(0),
    x.arrivalsPerSecond.toFixed(1),
    x.desiredReplicas,
    x.readyPods,
    x.startingPods,
    x.drainingPods,
    x.activeCalls,
    x.avgCallsPerReadyPod,
    x.maxCallsPerPod,
    x.refusedInInterval,
  ].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]?.length ?? 0)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
  const t = r.totals;
  const s = r.settings;
  return [
    `curve ${r.curve}: target ${s.targetActiveCallsPerPod} calls/pod, capacity ${s.podCapacityCalls}, replicas ${s.minReplicas}-${s.maxReplicas}`,
    line(head),
    ...rows.map(line),
    `offered ${t.offered}, accepted ${t.accepted}, refused ${t.refused} (${((100 * t.refused) / Math.max(1, t.offered)).toFixed(2)} %), ` +
      `cut by drain timeout ${t.cutByDrainTimeout}, peak replicas ${t.peakReplicas}, peak calls on one pod ${t.peakCallsPerPod}`,
  ].join('\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      arrivals: { type: 'string', default: 'storm' },
      json: { type: 'boolean', default: false },
      values: { type: 'string' },
      startup: { type: 'string', default: '30' },
      'metric-lag': { type: 'string', default: '30' },
      seed: { type: 'string', default: '7' },
    },
  });
  const name = values.arrivals;
  if (name !== 'storm' && name !== 'ramp') {
    console.error(`--arrivals must be storm or ramp, got ${name}`);
    process.exit(2);
  }
  const result = simulate({
    settings: loadChartSettings(values.values),
    curve: CURVES[name],
    podStartupSeconds: Number(values.startup),
    metricLagSeconds: Number(values['metric-lag']),
    seed: Number(values.seed),
  });
  console.log(values.json ? JSON.stringify(result, null, 2) : formatTable(result));
}
