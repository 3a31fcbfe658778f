/**
 * Reading Prometheus text exposition (what GET /metrics answers) for the tools that scrape the relay:
 * the call CLI's latency report, the bench, and the tests. One sample per line,
 * `name{label="value",...} value`; label values may hold escaped quotes, backslashes and newlines.
 */

export interface PromSample {
  labels: Readonly<Record<string, string>>;
  value: number;
}

/** The labels of one sample, unescaped (`\"`, `\\`, `\n`). */
export function parseLabels(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of raw.matchAll(/([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"/g)) out[m[1] ?? ''] = (m[2] ?? '').replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
  return out;
}

/** Every sample of series `name` (exactly that name) whose labels include every pair of `match`. */
export function promSamples(text: string, name: string, match: Readonly<Record<string, string>> = {}): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = parseLabels(m[2] ?? '');
    if (!Object.entries(match).every(([k, v]) => labels[k] === v)) continue;
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (!Number.isNaN(value)) out.push({ labels, value });
  }
  return out;
}

/** The sum of the matching samples of `name`; 0 when there are none. */
export function metricSum(text: string, name: string, match: Readonly<Record<string, string>> = {}): number {
  let total = 0;
  for (const s of promSamples(text, name, match)) total += s.value;
  return total;
}
