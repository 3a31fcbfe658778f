/**
 * Pure numbers for the bench: latency samples and percentiles, per-call slopes, the text table and
 * hand-written SVG line plots. No sockets, no processes: the driver and run.ts feed these.
 */

/** Latency samples in µs, kept in a growable typed array (no per-sample allocation). */
export class Samples {
  private buf: Float64Array;
  private n = 0;
  /** Samples beyond `cap` are counted but not kept (a bounded run cannot grow without limit). */
  dropped = 0;

  constructor(
    initial = 4096,
    private readonly cap = 4_000_000,
  ) {
    this.buf = new Float64Array(initial);
  }

  get count(): number {
    return this.n;
  }

  add(v: number): void {
    if (this.n === this.buf.length) {
      if (this.n >= this.cap) {
        this.dropped++;
        return;
      }
      const next = new Float64Array(Math.min(this.cap, this.buf.length * 2));
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = v;
  }

  /** Sorted copy of the samples. */
  sorted(): Float64Array {
    return this.buf.slice(0, this.n).sort();
  }

  clear(): void {
    this.n = 0;
    this.dropped = 0;
  }
}

/**
 * Nearest-rank percentile of ascending `sorted` (q in 0..1); null when empty. Nearest rank, not
 * interpolation: a p999 of 1000 samples is the largest, which is what a tail figure should say.
 */
export function percentile(sorted: ArrayLike<number>, q: number): number | null {
  const n = sorted.length;
  if (n === 0) return null;
  const rank = Math.min(n, Math.max(1, Math.ceil(q * n)));
  return sorted[rank - 1] ?? null;
}

export interface Quantiles {
  count: number;
  p50: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
}

/** p50/p99/p999/max of samples, in the samples' unit. */
export function quantiles(samples: Samples | ArrayLike<number>): Quantiles {
  const sorted = samples instanceof Samples ? samples.sorted() : Float64Array.from(samples).sort();
  return {
    count: sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    p999: percentile(sorted, 0.999),
    max: sorted.length > 0 ? (sorted[sorted.length - 1] ?? null) : null,
  };
}

/**
 * Least-squares slope of y over x (per-call cost from measurements at several call counts; the
 * intercept is the process's fixed cost). Null with fewer than two distinct x values.
 */
export function slope(points: ReadonlyArray<{ x: number; y: number }>): number | null {
  if (points.length < 2) return null;
  const mx = points.reduce((s, p) => s + p.x, 0) / points.length;
  const my = points.reduce((s, p) => s + p.y, 0) / points.length;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? null : num / den;
}

/** Least-squares line y = intercept + slope·x; null with fewer than two distinct x values. */
export function linearFit(points: ReadonlyArray<{ x: number; y: number }>): { slope: number; intercept: number; r2: number | null } | null {
  const m = slope(points);
  if (m === null) return null;
  const mx = points.reduce((s, p) => s + p.x, 0) / points.length;
  const my = points.reduce((s, p) => s + p.y, 0) / points.length;
  const intercept = my - m * mx;
  // R²: the share of y's variance the line explains (null when y does not vary: nothing to explain).
  const ssTot = points.reduce((s, p) => s + (p.y - my) ** 2, 0);
  const ssRes = points.reduce((s, p) => s + (p.y - (intercept + m * p.x)) ** 2, 0);
  return { slope: m, intercept, r2: ssTot === 0 ? null : 1 - ssRes / ssTot };
}

/** A fixed-width text table: first row is the header; numbers right-aligned, text left-aligned. */
export function formatTable(rows: ReadonlyArray<ReadonlyArray<string>>): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const numeric = /^[-+]?[\d.,]+[%x]?$|^-$|^n\/a$/;
  const line = (r: ReadonlyArray<string>): string =>
    r.map((c, i) => (numeric.test(c) && i > 0 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  const out = rows.map(line);
  if (out.length > 0) out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return out.join('\n');
}

/** Fixed decimals, '-' for null/NaN. */
export function fmt(v: number | null | undefined, decimals = 2): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(decimals);
}

/** a/b as "1.23x", '-' when either is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a === null || a === undefined || b === null || b === undefined || b === 0 || !Number.isFinite(a) || !Number.isFinite(b)) return '-';
  return `${(a / b).toFixed(2)}x`;
}

export interface Series {
  name: string;
  color: string;
  points: ReadonlyArray<{ x: number; y: number | null }>;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" axis maximum: 1, 2 or 5 times a power of ten at or above v. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A line plot as a standalone SVG document (no dependency; opens in any browser). */
export function svgLinePlot(o: { title: string; xLabel: string; yLabel: string; series: readonly Series[] }): string {
  const W = 640;
  const H = 400;
  const L = 70;
  const R = 20;
  const T = 40;
  const B = 50;
  const xs = o.series.flatMap((s) => s.points.map((p) => p.x));
  const ys = o.series.flatMap((s) => s.points.map((p) => p.y).filter((y): y is number => y !== null && Number.isFinite(y)));
  const xMax = niceMax(Math.max(1, ...xs));
  const yMax = niceMax(Math.max(0, ...ys));
  const px = (x: number): number => L + (x / xMax) * (W - L - R);
  const py = (y: number): number => H - B - (Math.min(y, yMax) / yMax) * (H - T - B);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const yv = (yMax * i) / 5;
    const xv = (xMax * i) / 5;
    parts.push(
      `<line x1="${L}" x2="${W - R}" y1="${py(yv)}" y2="${py(yv)}" stroke="#ddd"/>`,
      `<text x="${L - 6}" y="${py(yv) + 4}" text-anchor="end">${+yv.toPrecision(3)}</text>`,
      `<text x="${px(xv)}" y="${H - B + 16}" text-anchor="middle">${+xv.toPrecision(3)}</text>`,
    );
  }
  parts.push(
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">${esc(o.yLabel)}</text>`,
  );
  o.series.forEach((s, i) => {
    const pts = s.points.filter((p): p is { x: number; y: number } => p.y !== null && Number.isFinite(p.y));
    if (pts.length > 0) {
      parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ')}"/>`);
      for (const p of pts) parts.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
    parts.push(
      `<rect x="${L + 10}" y="${T + 4 + i * 18}" width="12" height="12" fill="${s.color}"/>`,
      `<text x="${L + 28}" y="${T + 14 + i * 18}">${esc(s.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
