/**
 * The alert rules as Prometheus sees them: `promtool check rules` and `promtool test rules` on the
 * shipped files, plus the contract around them (labels, annotations, runbook anchors, test coverage).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { exportedSeriesNames, githubSlug, metricNames, promtool } from './promql.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const ALERTS = 'deploy/helm/switchboard/files/switchboard-alerts.yaml';
const ALERT_TESTS = 'deploy/observability/alerts.test.yaml';
const DOC = 'docs/observability.md';

/** Series Prometheus itself writes for every target; the only names alerts may use beyond /metrics. */
const SCRAPE_SERIES = new Set(['up']);

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: (AlertRule | { record: string; expr: string })[] }[];
}
interface AlertTestFile {
  tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] | null }[] }[];
}

async function alertRules(): Promise<AlertRule[]> {
  const file = parse(await readFile(root + ALERTS, 'utf8')) as RuleFile;
  return file.groups.flatMap((g) => g.rules).filter((r): r is AlertRule => 'alert' in r);
}

describe('alert rules', () => {
  it('pass promtool check rules', async () => {
    const r = await promtool(['check', 'rules', ALERTS], root);
    expect(r.output).toContain('SUCCESS');
    expect(r.code, r.output).toBe(0);
  });

  it('pass their promtool unit tests (each alert fires and stays quiet as expected)', async () => {
    const r = await promtool(['test', 'rules', ALERT_TESTS], root);
    expect(r.code, r.output).toBe(0);
    expect(r.output).toContain('SUCCESS');
  });

  it('are a plain rule file with top-level groups, as the chart loads it', async () => {
    const file = parse(await readFile(root + ALERTS, 'utf8')) as Record<string, unknown>;
    expect(Object.keys(file)).toEqual(['groups']);
    const names = (await alertRules()).map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(
      expect.arrayContaining([
        'SwitchboardFrameRelayP99High',
        'SwitchboardFramesDropped',
        'SwitchboardTurnLatencyHigh',
        'SwitchboardUpstreamConnectFailures',
        'SwitchboardPodNearCallCapacity',
        'SwitchboardEventLoopLagHigh',
        'SwitchboardCallErrorRatioHigh',
        'SwitchboardTargetDown',
        'SwitchboardRelayAbsent',
        'SwitchboardTenantBudgetNearLimit',
        'SwitchboardTenantBudgetExhausted',
      ]),
    );
  });

  it('carry severity, summary, description and a runbook anchor that exists in the docs', async () => {
    const doc = await readFile(root + DOC, 'utf8');
    const anchors = new Set(
      doc
        .split('\n')
        .filter((l) => /^#{1,6} /.test(l))
        .map((l) => githubSlug(l.replace(/^#+ /, ''))),
    );
    for (const rule of await alertRules()) {
      expect(['warning', 'critical'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toMatch(/\S/);
      expect(rule.annotations?.description, rule.alert).toMatch(/\S/);
      const url = rule.annotations?.runbook_url ?? '';
      const m = /\/docs\/observability\.md#([\w-]+)$/.exec(url);
      expect(m, `${rule.alert} runbook_url ${url}`).not.toBeNull();
      expect(m?.[1]).toBe(rule.alert.toLowerCase());
      expect(anchors.has(m?.[1] ?? ''), `${DOC} has no heading for #${m?.[1]}`).toBe(true);
    }
  });

  it('read only series the relay exports (or Prometheus writes per target)', async () => {
    const known = await exportedSeriesNames();
    for (const rule of await alertRules()) {
      const unknown = [...metricNames(rule.expr)].filter((n) => !known.has(n) && !SCRAPE_SERIES.has(n));
      expect(unknown, `${rule.alert} reads unknown series`).toEqual([]);
    }
  });

  it('each have a unit test where they fire and one where they stay quiet', async () => {
    const tests = parse(await readFile(root + ALERT_TESTS, 'utf8')) as AlertTestFile;
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const rule of await alertRules()) {
      const mine = cases.filter((c) => c.alertname === rule.alert);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${rule.alert} never fires in a test`,
      ).toBe(true);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${rule.alert} is never shown quiet`,
      ).toBe(true);
    }
  });
});

describe('metricNames (the lint helper)', () => {
  it('finds selectors and skips functions, keywords, label names, strings and numbers', () => {
    const names = metricNames(
      'histogram_quantile(0.99, sum by (pod, le) (rate(a_bucket{x="y{z} b"}[5m] offset 1h))) > 1e-3 ' +
        'and on (ns) b / ignoring (reason) group_left c * 60 unless absent(up{job=~"s.*"} == 1)',
    );
    expect([...names].sort()).toEqual(['a_bucket', 'b', 'c', 'up']);
  });
});
