/**
 * Lint of the Grafana dashboard the chart provisions: structure Grafana needs, a datasource and
 * queries on every panel, only series the relay exports, and every query parsed by promtool.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { exportedSeriesNames, metricNames, promtool, substituteVariables } from './promql.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARD = 'deploy/helm/switchboard/files/switchboard-dashboard.json';

interface Ref {
  type?: string;
  uid?: string;
}
interface Target {
  refId?: string;
  expr?: string;
  datasource?: Ref;
}
interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: Ref;
  targets?: Target[];
  panels?: Panel[];
  gridPos?: { x: number; y: number; w: number; h: number };
}
interface Variable {
  name: string;
  type: string;
  query?: unknown;
  datasource?: Ref;
}
interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

/** Metrics the product contract (README, Metrics) asks the dashboard to show; each must appear in some query. */
const REQUIRED = [
  'switchboard_active_calls',
  'switchboard_calls_total',
  'switchboard_frame_relay_seconds_bucket',
  'switchboard_frames_dropped_total',
  'switchboard_turn_latency_seconds_bucket',
  'switchboard_tool_call_seconds_bucket',
  'switchboard_tool_call_seconds_count',
  'switchboard_upstream_connect_seconds_bucket',
  'switchboard_upstream_connect_seconds_count',
  'switchboard_event_loop_lag_seconds',
  'switchboard_twilio_messages_invalid_total',
  'switchboard_barge_ins_total',
  'switchboard_webhooks_total',
  'switchboard_tenant_busy_total',
  'switchboard_model_tokens_total',
  'switchboard_call_seconds_total',
  'switchboard_estimated_cost_usd_total',
  'switchboard_budget_used_ratio',
  'switchboard_budget_refusals_total',
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
];

let dashboard: Dashboard;
let raw: string;

/** Panels in layout order, rows' nested panels included (collapsed rows keep theirs inside). */
function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}
function queryPanels(d: Dashboard): Panel[] {
  return allPanels(d).filter((p) => p.type !== 'row');
}
function constants(d: Dashboard): Map<string, string> {
  const m = new Map<string, string>();
  for (const v of d.templating.list)
    if (v.type === 'constant' && typeof v.query === 'string') m.set(v.name, v.query);
  return m;
}
function expressions(d: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of queryPanels(d))
    for (const t of p.targets ?? [])
      out.push({ where: `${p.title ?? p.id} / ${t.refId}`, expr: t.expr ?? '' });
  for (const v of d.templating.list) {
    const q = v.query as { query?: unknown } | undefined;
    if (v.type === 'query' && typeof q?.query === 'string') {
      // label_values(selector, label) is Grafana's, not PromQL: lint its selector.
      const m = /^label_values\((.*),\s*\w+\)$/.exec(q.query);
      out.push({ where: `variable ${v.name}`, expr: m?.[1] ?? q.query });
    }
  }
  return out;
}

beforeAll(async () => {
  raw = await readFile(root + DASHBOARD, 'utf8');
  dashboard = JSON.parse(raw) as Dashboard;
});

describe('Grafana dashboard', () => {
  it('is a provisionable dashboard with a stable uid, schema ~39 and no fixed datasource', () => {
    expect(dashboard.uid).toBe('switchboard-relay');
    expect(dashboard.title).toMatch(/\S/);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    // A provisioned dashboard must not pin an instance-specific datasource uid.
    const uids = [...raw.matchAll(/"uid":\s*"([^"]*)"/g)].map((m) => m[1]);
    expect(
      uids.filter((u) => u !== '${datasource}' && u !== 'switchboard-relay' && u !== '-- Grafana --'),
    ).toEqual([]);
  });

  it('has datasource (prometheus), namespace and pod variables', () => {
    const byName = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(byName.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(byName.get('namespace')).toMatchObject({ type: 'query', datasource: { uid: '${datasource}' } });
    expect(byName.get('pod')).toMatchObject({ type: 'query', datasource: { uid: '${datasource}' } });
  });

  it('gives every panel the datasource variable and at least one query', () => {
    const panels = queryPanels(dashboard);
    expect(panels.length).toBeGreaterThanOrEqual(15);
    for (const p of panels) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect(t.expr, p.title).toMatch(/\S/);
        expect(t.datasource?.uid, p.title).toBe('${datasource}');
      }
      const refIds = (p.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
    }
  });

  it('has unique panel ids and a layout inside the 24-column grid without overlaps', () => {
    const panels = allPanels(dashboard);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const g = p.gridPos;
      expect(g, p.title).toBeDefined();
      if (g === undefined) continue;
      expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
    }
  });

  it('queries only series the relay exports', async () => {
    const known = await exportedSeriesNames();
    const vars = constants(dashboard);
    for (const { where, expr } of expressions(dashboard)) {
      const unknown = [...metricNames(substituteVariables(expr, vars))].filter((n) => !known.has(n));
      expect(unknown, `${where} reads unknown series`).toEqual([]);
    }
  });

  it('shows every metric the relay is asked to expose', () => {
    const used = new Set(
      expressions(dashboard).flatMap(({ expr }) => [
        ...metricNames(substituteVariables(expr, constants(dashboard))),
      ]),
    );
    expect(REQUIRED.filter((n) => !used.has(n))).toEqual([]);
  });

  describe('every query parses as PromQL', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sb-dashboard-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('as recording rules under promtool check rules', async () => {
      const vars = constants(dashboard);
      const exprs = expressions(dashboard);
      const rules = exprs.map(({ expr }, i) => {
        const promql = substituteVariables(expr, vars);
        expect(promql, `unsubstituted variable in ${expr}`).not.toContain('$');
        return { record: `dashboard:query_${i}`, expr: promql };
      });
      const file = join(dir, 'dashboard-rules.yaml');
      await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
      const r = await promtool(['check', 'rules', file]);
      expect(r.code, r.output).toBe(0);
      expect(r.output).toContain(`SUCCESS: ${rules.length} rules found`);
    });

    it('and promtool rejects a broken one (the check can fail)', async () => {
      const file = join(dir, 'broken.yaml');
      await writeFile(
        file,
        stringify({ groups: [{ name: 'x', rules: [{ record: 'x:y', expr: 'sum by (pod (rate(a[5m]))' }] }] }),
      );
      const r = await promtool(['check', 'rules', file]);
      expect(r.code).not.toBe(0);
    });
  });
});
