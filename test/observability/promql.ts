/**
 * Test helpers for the dashboard and alert lint: the metric names a PromQL expression reads, the
 * names the relay really exports, Grafana variable substitution, and promtool invocation.
 * PromQL validity itself is left to promtool (the real parser); this only finds selectors.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createMetrics } from '../../src/telemetry/index.js';

const run = promisify(execFile);

/** Debian's prometheus package; test/global-setup.ts installs it when missing. */
export const PROMTOOL = 'promtool';

/** Words that look like identifiers in PromQL but are not metric names. */
const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'atan2',
  'inf',
  'nan',
]);

/**
 * Metric names selected by a PromQL expression. Strings, label matchers, ranges, grouping clauses
 * and numbers are blanked first, so what is left is functions (followed by `(`), keywords and names.
 */
export function metricNames(expr: string): Set<string> {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    // numbers and durations (1e9, 0.005, 5m, 1h30m): a letter run glued to a digit is not a name
    .replace(/(?<![A-Za-z0-9_:])\d[\d.]*(?:[eE][+-]?\d+)?[A-Za-z0-9]*/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    const id = m[1];
    if (id === undefined || m[2] !== undefined || KEYWORDS.has(id.toLowerCase())) continue;
    names.add(id);
  }
  return names;
}

/**
 * Every series name the relay's /metrics exposes: its registry (Node defaults included) with the
 * `_bucket`/`_sum`/`_count` series of each histogram and summary (a histogram's bare name is not a series).
 */
export async function exportedSeriesNames(): Promise<Set<string>> {
  const metrics = createMetrics();
  try {
    const names = new Set<string>();
    for (const m of await metrics.registry.getMetricsAsJSON()) {
      const type = String(m.type);
      // A classic histogram has no series under its bare name: querying it returns nothing.
      if (type !== 'histogram') names.add(m.name);
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
      if (type === 'summary') for (const s of ['_sum', '_count']) names.add(m.name + s);
    }
    return names;
  } finally {
    metrics.close();
  }
}

/** Grafana's built-in interval variables, replaced by a representative duration. */
const BUILTIN_DURATIONS = ['__rate_interval', '__interval', '__range'];

/**
 * Replaces Grafana template variables (`$x`, `${x}`, `${x:fmt}`, `[[x]]`) with values that keep the
 * expression valid PromQL: constants by their value, query variables by the all-value regex.
 */
export function substituteVariables(expr: string, constants: ReadonlyMap<string, string>): string {
  return expr.replace(
    /\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g,
    (whole, a?: string, b?: string, c?: string) => {
      const name = a ?? b ?? c ?? '';
      if (BUILTIN_DURATIONS.includes(name)) return '5m';
      const constant = constants.get(name);
      if (constant !== undefined) return constant;
      // Query variables only ever sit inside =~ matchers on this dashboard; `.*` is their allValue.
      if (name.length > 0) return '.*';
      return whole;
    },
  );
}

export interface ToolResult {
  code: number;
  output: string;
}

/** Runs promtool and returns its exit code with stdout and stderr combined; never throws on exit != 0. */
export async function promtool(args: readonly string[], cwd?: string): Promise<ToolResult> {
  try {
    const r = await run(PROMTOOL, [...args], { cwd, timeout: 60_000 });
    return { code: 0, output: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string; message: string };
    if (typeof e.code !== 'number') throw err; // ENOENT etc.: promtool itself is missing
    return { code: e.code, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** GitHub's heading anchor: lower case, punctuation other than `-` and `_` dropped, spaces to `-`. */
export function githubSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}
