/**
 * The relay's own latency for a call, from two scrapes of its /metrics: Prometheus histogram
 * deltas read as exact means (from `_sum` and `_count`) and bucket bounds, with histogram_quantile's
 * interpolation kept as an estimate. Used by `npm run call` and the bench.
 */

/** Cumulative bucket counts keyed by upper bound (`Infinity` for +Inf). */
export type Buckets = Map<number, number>;

function parseLabels(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of raw.matchAll(/([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"/g)) out[m[1] ?? ''] = (m[2] ?? '').replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
  return out;
}

/**
 * The `_bucket` series of histogram `name` from Prometheus text, summed over series whose labels
 * include every pair of `match`.
 */
export function histogramBuckets(text: string, name: string, match: Readonly<Record<string, string>> = {}): Buckets {
  const out: Buckets = new Map();
  const prefix = `${name}_bucket`;
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const m = /^(\w+)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== prefix) continue;
    const labels = parseLabels(m[2] ?? '');
    if (!Object.entries(match).every(([k, v]) => labels[k] === v)) continue;
    const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
    const v = Number(m[3]);
    if (Number.isNaN(le) || Number.isNaN(v)) continue;
    out.set(le, (out.get(le) ?? 0) + v);
  }
  return out;
}

/**
 * Quantile `q` of the observations made between two scrapes of one histogram, estimated as
 * Prometheus's histogram_quantile does (linear within the bucket; the highest finite bound when it
 * falls in +Inf). Returns the observation count too; value is null when nothing was observed.
 */
export function quantileFromBucketDeltas(q: number, before: Buckets, after: Buckets): { value: number | null; count: number } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const deltas = bounds.map((le) => Math.max(0, (after.get(le) ?? 0) - (before.get(le) ?? 0)));
  const count = bounds.length > 0 && bounds[bounds.length - 1] === Infinity ? (deltas[deltas.length - 1] ?? 0) : Math.max(0, ...deltas);
  if (count <= 0) return { value: null, count: 0 };
  const rank = Math.min(1, Math.max(0, q)) * count;
  for (let i = 0; i < bounds.length; i++) {
    const upper = bounds[i] ?? 0;
    const cum = deltas[i] ?? 0;
    if (cum < rank) continue;
    if (upper === Infinity) {
      const finite = bounds.filter((b) => b !== Infinity);
      return { value: finite.length > 0 ? (finite[finite.length - 1] ?? null) : null, count };
    }
    const lower = i === 0 ? 0 : (bounds[i - 1] ?? 0);
    const prev = i === 0 ? 0 : (deltas[i - 1] ?? 0);
    const inBucket = cum - prev;
    return { value: inBucket > 0 ? lower + (upper - lower) * ((rank - prev) / inBucket) : upper, count };
  }
  return { value: null, count };
}

/**
 * The upper bound of the bucket quantile `q` falls in: all that a histogram knows for sure ("p99 is
 * at most 0.5 s"). Interpolating inside the bucket, as histogram_quantile does, invents a value that
 * for a handful of observations can lie above every one of them. `overflow`: it fell in +Inf, above
 * the highest finite bound (which is then returned).
 */
export function quantileBucketBound(q: number, before: Buckets, after: Buckets): { atMost: number | null; overflow: boolean } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const deltas = bounds.map((le) => Math.max(0, (after.get(le) ?? 0) - (before.get(le) ?? 0)));
  const count = deltas[deltas.length - 1] ?? 0;
  if (count <= 0) return { atMost: null, overflow: false };
  const rank = Math.min(1, Math.max(0, q)) * count;
  const i = deltas.findIndex((cum) => cum >= rank);
  const upper = bounds[i] ?? Infinity;
  if (upper !== Infinity) return { atMost: upper, overflow: false };
  const finite = bounds.filter((b) => b !== Infinity);
  return { atMost: finite[finite.length - 1] ?? null, overflow: true };
}

/** `_sum` of histogram `name` from Prometheus text, summed over matching series (null: no such series). */
export function histogramSum(text: string, name: string, match: Readonly<Record<string, string>> = {}): number | null {
  let sum: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}_sum`)) continue;
    const m = /^(\w+)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== `${name}_sum`) continue;
    const labels = parseLabels(m[2] ?? '');
    if (!Object.entries(match).every(([k, v]) => labels[k] === v)) continue;
    const v = Number(m[3]);
    if (!Number.isNaN(v)) sum = (sum ?? 0) + v;
  }
  return sum;
}

/**
 * One histogram between two scrapes. `meanMs` is exact (from `_sum` and `_count`); `p50AtMostMs`
 * and `p99AtMostMs` are bucket bounds (`…Overflow`: above the highest bound); `p50Ms`/`p99Ms` are
 * interpolated inside the bucket like histogram_quantile (estimates, for many observations).
 */
export interface HistogramDelta {
  count: number;
  meanMs: number | null;
  p50AtMostMs: number | null;
  p99AtMostMs: number | null;
  p99Overflow: boolean;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface RelayLatency {
  frames: Record<'caller_to_model' | 'model_to_caller', HistogramDelta>;
  turn: HistogramDelta;
}

const toMs = (s: number | null): number | null => (s === null ? null : Math.round(s * 1e6) / 1e3);

/** The relay's latency for one call from two /metrics scrapes (process-wide: exact when the call ran alone). */
export function relayLatency(before: string, after: string): RelayLatency {
  const q = (name: string, match: Record<string, string> = {}): HistogramDelta => {
    const b = histogramBuckets(before, name, match);
    const a = histogramBuckets(after, name, match);
    const p50 = quantileFromBucketDeltas(0.5, b, a);
    const count = p50.count;
    const sumAfter = histogramSum(after, name, match);
    const sumDelta = sumAfter === null ? null : sumAfter - (histogramSum(before, name, match) ?? 0);
    const p99Bound = quantileBucketBound(0.99, b, a);
    return {
      count,
      meanMs: count > 0 && sumDelta !== null ? toMs(sumDelta / count) : null,
      p50AtMostMs: toMs(quantileBucketBound(0.5, b, a).atMost),
      p99AtMostMs: toMs(p99Bound.atMost),
      p99Overflow: p99Bound.overflow,
      p50Ms: toMs(p50.value),
      p99Ms: toMs(quantileFromBucketDeltas(0.99, b, a).value),
    };
  };
  return {
    frames: {
      caller_to_model: q('switchboard_frame_relay_seconds', { direction: 'caller_to_model' }),
      model_to_caller: q('switchboard_frame_relay_seconds', { direction: 'model_to_caller' }),
    },
    turn: q('switchboard_turn_latency_seconds'),
  };
}
