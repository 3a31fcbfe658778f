/**
 * README and docs/ say what the code does, both ways: every environment variable, metric, label
 * value, close code and error code the docs name exists in the code, and every one the code has is
 * documented. The docs are parsed as an operator reads them (tables and lists); the code is read
 * from its own constants where it has them and from its source where it does not.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_VARIABLES } from '../../src/config.js';
import { CloseCode, ErrorCodes } from '../../src/errors.js';
import { CALL_OUTCOMES } from '../../src/call/lifecycle.js';
import { createMetrics, DROP_REASONS } from '../../src/telemetry/index.js';

const ROOT = join(import.meta.dirname, '../..');
const read = (p: string): string => readFileSync(join(ROOT, p), 'utf8');
const README = read('README.md');
const DOCS = readdirSync(join(ROOT, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .map((f) => ({ file: `docs/${f}`, text: read(`docs/${f}`) }));
const OBSERVABILITY = read('docs/observability.md');
const ALL_DOCS = [{ file: 'README.md', text: README }, ...DOCS];

function srcFiles(dir = 'src'): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? srcFiles(`${dir}/${e.name}`) : e.name.endsWith('.ts') ? [`${dir}/${e.name}`] : [],
  );
}
const SRC = srcFiles().map((file) => ({ file, text: read(file) }));

/** The text of a markdown section: from its heading to the next heading of the same or a higher level. */
function section(md: string, heading: string): string {
  const lines = md.split('\n');
  const start = lines.findIndex((l) => /^#+ /.test(l) && l.replace(/^#+ /, '') === heading);
  if (start < 0) throw new Error(`no section "${heading}"`);
  const level = /^#+/.exec(lines[start]!)![0].length;
  const end = lines.findIndex((l, i) => i > start && /^#+ /.test(l) && /^#+/.exec(l)![0].length <= level);
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

/** The body rows of the first table in `md`, as cells (`\|` inside a cell is not a separator). */
function tableRows(md: string): string[][] {
  const rows = md.split('\n').filter((l) => l.trimStart().startsWith('|'));
  return rows
    .slice(2)
    .map((l) => l.trim().slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim()));
}

/** Every `code span` of the text. */
const codeSpans = (text: string): string[] => [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!);
/** The code spans of the paragraph that starts with `label`. */
function listAfter(md: string, label: string): string[] {
  const at = md.indexOf(label);
  if (at < 0) throw new Error(`no "${label}" list`);
  return codeSpans(md.slice(at, md.indexOf('\n\n', at)));
}
const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort();

describe('environment variables', () => {
  it('README "Configuration" lists exactly the variables config.ts reads', () => {
    const documented = tableRows(section(README, 'Configuration')).flatMap((row) => codeSpans(row[0]!));
    expect(sorted(documented)).toEqual(sorted(ENV_VARIABLES));
  });

  /** Named in the docs but read by something other than config.ts (or not a variable at all). */
  const NOT_OURS: Record<string, string> = {
    NODE_EXTRA_CA_CERTS: 'read by Node itself',
    NODE_OPTIONS: 'read by Node itself',
    OTEL_EXPORTER_OTLP_HEADERS: 'read by the OpenTelemetry exporter',
    OTEL_TRACES_SAMPLER: 'read by the OpenTelemetry SDK',
    OTEL_TRACES_SAMPLER_ARG: 'read by the OpenTelemetry SDK',
    OTEL_RESOURCE_ATTRIBUTES: 'read by the OpenTelemetry env detector',
    REDACT_PATHS: 'a constant in src/telemetry/logger.ts',
    PROD_NODE_VERSION: 'a constant in .ci/run',
    SWITCHBOARD_CI_CACHE: 'read by .ci/run',
    MODEL_ERROR_LABELS: 'a constant in src/model/model-errors.ts',
    GET: 'a Redis command',
    HSETNX: 'a Redis command',
    TENANT_: 'a value: the default of ADMIN_SECRET_ENV_PREFIX',
    TENANT_ACME_TWILIO_AUTH_TOKEN: 'an example tenant secret variable (operators choose these names)',
  };
  /** Constants of the code the docs name (`MAX_RENEWALS`): fine as long as the code declares them. */
  const declared = (name: string): boolean => SRC.some(({ text }) => new RegExp(`\\bconst ${name}\\b`).test(text));

  it('every variable-like name in README and docs/ is one the relay reads (or a known outside one)', () => {
    const known = new Set([...ENV_VARIABLES, ...Object.keys(NOT_OURS)]);
    const unknown = ALL_DOCS.flatMap(({ file, text }) =>
      codeSpans(text)
        .filter((s) => /^[A-Z][A-Z0-9_]{2,}$/.test(s) && !known.has(s) && !declared(s))
        .map((s) => `${file}: ${s}`),
    );
    expect(unknown).toEqual([]);
    expect(read('src/telemetry/logger.ts')).toContain('export const REDACT_PATHS');
  });
});

describe('metrics', () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const inCode = sorted(metrics.registry.getMetricsAsArray().map((m) => m.name));
  metrics.close();
  const names = (cell: string): string[] => codeSpans(cell).filter((s) => s.startsWith('switchboard_')).map((s) => s.replace(/\{.*$/, ''));

  it('README "Metrics" and the observability catalogue list exactly the metrics the relay exports', () => {
    expect(sorted(tableRows(section(README, 'Metrics')).flatMap((r) => names(r[0]!)))).toEqual(inCode);
    expect(sorted(tableRows(section(OBSERVABILITY, 'Metric catalogue')).flatMap((r) => names(r[0]!)))).toEqual(inCode);
  });

  it('every switchboard_ metric named anywhere in README or docs/ exists', () => {
    const exported = new Set(inCode);
    const unknown = ALL_DOCS.flatMap(({ file, text }) =>
      // Not the middle of a recording rule's name (`tenant:switchboard_call_seconds:increase1h`).
      [...text.matchAll(/(?<![:\w])switchboard_[a-z0-9_]+/g)]
        .map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))
        .filter((n) => !exported.has(n))
        .map((n) => `${file}: ${n}`),
    );
    expect(sorted(unknown)).toEqual([]);
  });

  const catalogueRow = (metric: string): string[] => {
    const row = tableRows(section(OBSERVABILITY, 'Metric catalogue')).find((r) => r[0] === `\`${metric}\``);
    if (!row) throw new Error(`${metric} not in the catalogue`);
    return row;
  };

  it('documents every call outcome and drop reason, and no other', () => {
    const labelValues = (label: string) => listAfter(OBSERVABILITY, label).filter((v) => /^[a-z_]+$/.test(v));
    expect(sorted(labelValues('Call outcomes:'))).toEqual(sorted(CALL_OUTCOMES));
    expect(sorted(labelValues('Drop reasons:'))).toEqual(sorted(DROP_REASONS));
    expect(catalogueRow('switchboard_calls_total')[2]).toContain(`(${CALL_OUTCOMES.length}, \`CallOutcome\`)`);
    expect(catalogueRow('switchboard_frames_dropped_total')[2]).toContain(`(${DROP_REASONS.length}, \`DropReason\`)`);
  });

  it('documents every tool-call outcome, and no other', () => {
    const type = /export type ToolOutcome = ([^;]+);/.exec(read('src/tools/tool-runner.ts'))![1]!;
    const inCodeOutcomes = [...type.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]!);
    const cell = catalogueRow('switchboard_tool_call_seconds')[2]!;
    expect(sorted(codeSpans(cell.slice(cell.indexOf('`outcome`') + 9)))).toEqual(sorted(inCodeOutcomes));
  });

  it('documents every webhook route and outcome the relay counts, and no other', () => {
    const counted = SRC.flatMap(({ text }) => [...text.matchAll(/webhooks\.labels\((?:'([a-z_]+)'|\w+), '([a-z_]+)'\)/g)]);
    const routes = counted.flatMap((m) => (m[1] ? [m[1]] : []));
    const outcomes = counted.map((m) => m[2]!);
    const cell = catalogueRow('switchboard_webhooks_total')[2]!;
    const [routePart, outcomePart] = cell.split('`outcome`');
    // Routes also come in as a variable (the shared form parser): the documented ones must include every literal.
    const values = (text: string) => codeSpans(text).filter((v) => /^[a-z_]+$/.test(v));
    expect(sorted(values(routePart!).filter((s) => s !== 'route'))).toEqual(expect.arrayContaining(sorted(routes)));
    expect(sorted(values(outcomePart!))).toEqual(sorted(outcomes));
  });
});

describe('close codes and error codes', () => {
  it('README lists every close code the relay sends, and only those', () => {
    const byName = CloseCode as Record<string, number>;
    const sent = Object.keys(byName).filter((name) => SRC.some(({ file, text }) => file !== 'src/errors.ts' && new RegExp(`CloseCode\\.${name}\\b`).test(text)));
    const documented = tableRows(section(README, 'Media-socket close codes')).map((r) => Number(r[0]));
    expect(documented.sort()).toEqual(sent.map((n) => byName[n]!).sort());
  });

  it('README lists exactly the error codes of src/errors.ts', () => {
    const text = section(README, 'Error codes');
    const list = text.slice(text.indexOf('field):')); // after "… in log lines (`code` field):"
    expect(sorted(codeSpans(list).filter((s) => /^[a-z]+(_[a-z]+)*$/.test(s)))).toEqual(sorted(ErrorCodes));
  });
});

describe('the docs stand on their own', () => {
  const GUIDES = [...ALL_DOCS, ...['bench/README.md', 'loadtest/README.md', 'deploy/README.md'].map((file) => ({ file, text: read(file) }))];

  it('cite no document outside the repository (the repo\'s own docs/*.md are fine) and no internal issue numbers (an upstream `owner/repo issue #N` is fine)', () => {
    const outside = GUIDES.flatMap(({ file, text }) =>
      [...text.matchAll(/(?<!docs\/)\b(SPEC|PERFORMANCE|PROTOCOLS|STYLE)\.md\b|(?<![\w.-]+\/[\w.-]+ )\bissue #?\d+\b/gi)].map((m) => `${file}: ${m[0]}`),
    );
    expect(outside).toEqual([]);
  });

  it('nor does any code, test, script, chart or manifest (every text file outside node_modules, dist and results)', () => {
    const TEXT = /\.(ts|js|mjs|cjs|json|ya?ml|tpl|sh|md|txt)$|^(Dockerfile|run)$/;
    const SKIP = new Set(['node_modules', 'dist', 'results', '.git', 'coverage']);
    const walk = (dir: string): string[] =>
      readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
        if (SKIP.has(e.name)) return [];
        const path = dir === '.' ? e.name : `${dir}/${e.name}`;
        return e.isDirectory() ? walk(path) : TEXT.test(e.name) ? [path] : [];
      });
    const files = ['src', 'test', 'scripts', 'bench', 'loadtest', 'deploy', '.ci'].flatMap((d) => walk(d)).concat('Dockerfile');
    expect(files.length).toBeGreaterThan(300);
    const outside = files.flatMap((file) =>
      [...(existsSync(join(ROOT, file)) ? read(file) : '').matchAll(/\b(SPEC|PERFORMANCE|PROTOCOLS|STYLE)\.md\b|\.\.\/shared\b/g)].map((m) => `${file}: ${m[0]}`),
    );
    expect(outside).toEqual([]);
  });

  it('name the image the chart and the manifests deploy', () => {
    const repository = /^image:\n {2}repository: (\S+)/m.exec(read('deploy/helm/switchboard/values.yaml'))![1]!;
    expect(read('deploy/k8s/base/kustomization.yaml')).toContain(`newName: ${repository}`);
    const named = GUIDES.flatMap(({ file, text }) => [...text.matchAll(/\bghcr\.io\/[\w./-]+/g)].map((m) => ({ file, image: m[0].replace(/:.*$/, '') })));
    expect(named.filter((n) => n.image !== repository)).toEqual([]);
  });
});
