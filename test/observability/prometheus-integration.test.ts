/**
 * A real Prometheus scraping two real relays that carry simulated calls, asked every dashboard panel
 * query and the autoscaling (prometheus-adapter) query over its HTTP API. Query syntax is promtool's
 * concern (dashboard.test.ts); this checks that each query finds data, with the labels it groups by.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, upgradeSignature, type CallReport } from '../../src/sim/sim-caller.js';
import { demo, eventually, metricValue, scrape, signedPost, startTestRelay } from '../helpers/relay.js';
import { freePort } from '../helpers/redis-server.js';
import { substituteVariables } from './promql.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARD = 'deploy/helm/switchboard/files/switchboard-dashboard.json';
const VALUES = 'deploy/helm/switchboard/values.yaml';
const NAMESPACE = 'test';
const PODS = ['relay-0', 'relay-1'] as const;

/**
 * Panels whose series only exist after an event this test cannot cause cheaply; each is still
 * asked (it must be a query Prometheus accepts) and must come back empty, so a new driver shows up.
 */
const NO_DATA_EXPECTED: Record<string, string> = {
  'Budget used by tenant / A': 'switchboard_budget_used_ratio exists only for tenants with a budget; the test tenant has none',
  'Calls refused over budget (calls/min) / A': 'switchboard_budget_refusals_total needs a tenant over its budget (the refusal itself: test/e2e/usage-billing.test.ts)',
  'Calls refused: tenant at its concurrency limit (calls/min) / A':
    'switchboard_tenant_busy_total needs a tenant at its concurrency limit; the test tenant allows 50 calls at once (the refusal itself: test/e2e/security-concurrency.test.ts)',
};

/** Label values each panel must show, beyond the label names its `by (...)` clauses promise. */
const EXPECTED_VALUES: Record<string, Record<string, string[]>> = {
  'Active calls per pod / A': { pod: [...PODS] },
  'Frame relay time p50 / p99 / p99.9 by direction / A': { direction: ['caller_to_model', 'model_to_caller'] },
  'Frame relay time p99 by pod / A': { pod: [...PODS], direction: ['caller_to_model', 'model_to_caller'] },
  'Upstream connect time p50 / p95 by provider / A': { provider: ['sim'] },
  'Upstream connect failures / A': { provider: ['openai'] },
  'Upstream connect failures / B': { provider: ['openai'] },
  'Event-loop lag by pod / A': { pod: [...PODS] },
  'Tool call time p95 by tool / A': { tool: ['end_call'] },
  'Tool error rate by tool / A': { tool: ['end_call'] },
  'Calls ended by outcome per tenant (calls/min) / A': {
    tenant: ['demo'],
    outcome: ['ended_by_assistant', 'caller_hung_up', 'model_unavailable'],
  },
  'Frames dropped by direction and reason (frames/s) / A': { direction: ['caller_to_model'], reason: ['model_not_ready'] },
  'Invalid Twilio messages by reason (per s) / A': {},
  'Webhooks by route and outcome (per s) / A': { route: ['voice'], outcome: ['ok', 'unknown_number'] },
  'CPU per pod (1 core = 100 %) / A': { pod: [...PODS] },
  'Memory per pod / A': { pod: [...PODS] },
};

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}
interface Panel {
  type: string;
  title?: string;
  targets?: { refId?: string; expr?: string }[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown }[] };
}

let relayA: Relay | undefined; // pod relay-0: the simulated model
let relayB: Relay | undefined; // pod relay-1: a model that accepts TCP and never answers the upgrade
let hangingModel: Server | undefined;
const hungSockets = new Set<Socket>();
let prometheus: ChildProcess | undefined;
let promUrl = '';
let dir = '';
const liveCall = new AbortController();
let live: Promise<CallReport> | undefined;
let queries: { where: string; expr: string }[] = [];

async function query(expr: string): Promise<Sample[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: Sample[] } };
  if (body.status !== 'success' || body.data === undefined) throw new Error(`${expr}: ${body.error ?? res.status}`);
  if (body.data.resultType !== 'vector') throw new Error(`${expr}: ${body.data.resultType}, not a vector`);
  return body.data.result;
}

/** Label names a query's result carries: those of its `by (...)` clauses, without `le`. */
function groupedBy(expr: string): string[] {
  const labels = new Set<string>();
  for (const m of expr.matchAll(/\bby\s*\(([^)]*)\)/g))
    for (const l of (m[1] ?? '').split(',').map((s) => s.trim()))
      if (l !== '' && l !== 'le') labels.add(l);
  return [...labels].sort();
}

function panelQueries(d: Dashboard): { where: string; expr: string }[] {
  const constants = new Map<string, string>();
  for (const v of d.templating.list)
    if (v.type === 'constant' && typeof v.query === 'string') constants.set(v.name, v.query);
  // What Grafana sends with namespace "test" and every pod selected.
  constants.set('namespace', NAMESPACE);
  constants.set('pod', PODS.join('|'));
  const out: { where: string; expr: string }[] = [];
  for (const p of d.panels.flatMap((x) => [x, ...(x.panels ?? [])])) {
    if (p.type === 'row') continue;
    for (const t of p.targets ?? []) out.push({ where: `${p.title} / ${t.refId}`, expr: substituteVariables(t.expr ?? '', constants) });
  }
  return out;
}

/** A media socket that sends garbage before `start`: counted as an invalid message, closed. */
async function garbageStream(relay: Relay): Promise<number> {
  const url = `${relay.url.replace(/^http/, 'ws')}/twilio/media`;
  const ws = new WebSocket(url, { headers: { 'X-Twilio-Signature': upgradeSignature(url, demo.authToken) }, perMessageDeflate: false });
  const closed = new Promise<number>((resolve, reject) => {
    ws.once('close', (code) => resolve(code));
    ws.once('error', reject);
  });
  ws.once('open', () => ws.send('this is not a Twilio message'));
  return closed;
}

async function startPrometheus(targets: { port: number; pod: string }[]): Promise<void> {
  const port = await freePort();
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    scrape_configs: [
      {
        job_name: 'switchboard',
        metrics_path: '/metrics',
        // What the ServiceMonitor's relabelling gives every series in a cluster.
        static_configs: targets.map((t) => ({ targets: [`127.0.0.1:${t.port}`], labels: { namespace: NAMESPACE, pod: t.pod } })),
      },
    ],
  };
  await writeFile(join(dir, 'prometheus.yml'), stringify(config));
  const child = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=info',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  prometheus = child;
  promUrl = `http://127.0.0.1:${port}`;
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`prometheus not ready after 15 s:\n${log}`)), 15_000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`prometheus exited with ${code}:\n${log}`)));
    child.stderr.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('Server is ready to receive web requests')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sb-prometheus-'));
  queries = panelQueries(JSON.parse(await readFile(root + DASHBOARD, 'utf8')) as Dashboard);

  hangingModel = createServer((s) => {
    hungSockets.add(s);
    s.on('close', () => hungSockets.delete(s));
  });
  await new Promise<void>((resolve) => hangingModel!.listen(0, '127.0.0.1', resolve));
  const hangPort = (hangingModel.address() as { port: number }).port;

  // A per-pod cap, as the chart sets it (MAX_ACTIVE_CALLS): the capacity panels read it back.
  relayA = await startTestRelay({ MAX_ACTIVE_CALLS: '190' }, { pod: PODS[0] });
  relayB = await startTestRelay(
    {
      MODEL_PROVIDER: 'openai',
      OPENAI_API_KEY: 'sk-test-not-a-key',
      OPENAI_REALTIME_URL: `ws://127.0.0.1:${hangPort}/v1/realtime`,
      // Two 800 ms attempts hold ~1.8 s of caller audio against a 1 s ring: model_not_ready drops.
      MODEL_CONNECT_TIMEOUT_MS: '800',
      MODEL_CONNECT_ATTEMPTS: '2',
      CALLER_AUDIO_RING_SECONDS: '1',
      MAX_ACTIVE_CALLS: '190',
    },
    { pod: PODS[1] },
  );
  await startPrometheus([
    { port: relayA.port, pod: PODS[0] },
    { port: relayB.port, pod: PODS[1] },
  ]);
  await eventually(
    async () => (await query('up{job="switchboard"} == 1')).length === 2,
    10_000,
    'prometheus scraping both relays',
  );

  // Traffic, concurrently, while Prometheus scrapes every second.
  const a = relayA;
  const b = relayB;
  live = placeCall({
    baseUrl: a.url,
    ...demo,
    signal: liveCall.signal,
    script: { turns: [{ say: 'Hello, I will stay on the line' }], maxCallMs: 120_000, hangupAfterMs: 120_000 },
  });
  const [tools, bargeIn, unavailable, unknown, garbage] = await Promise.all([
    placeCall({
      baseUrl: a.url,
      ...demo,
      script: {
        turns: [
          { say: 'Do you serve postcode 10001?' },
          { say: 'call tool end_call {this is not json}' },
          { say: 'call tool end_call {"reason":"caller is done"}' },
        ],
        maxCallMs: 30_000,
        hangupAfterMs: 10_000,
      },
    }),
    placeCall({
      baseUrl: a.url,
      ...demo,
      script: {
        turns: [{ say: 'Tell me about drains' }, { say: 'Sorry to interrupt, another question', bargeInAfterMs: 300 }],
        maxCallMs: 30_000,
        hangupAfterMs: 1500,
      },
    }),
    placeCall({ baseUrl: b.url, ...demo, script: { turns: [{ say: 'Hello?' }], maxCallMs: 15_000, hangupAfterMs: 5000 } }),
    signedPost(a, '/twilio/voice', { CallSid: randomSid('CA'), AccountSid: demo.accountSid, To: '+15559990000', From: '+15550001111' }),
    garbageStream(a),
  ]);
  expect(tools.errors).toEqual([]);
  expect(tools.closeCode).toBe(4011);
  expect(bargeIn.turns[1]?.bargeIn).toBe(true);
  expect(unavailable.closeCode).toBe(4010);
  expect(unknown.body).toContain('<Hangup/>');
  expect(garbage).toBeGreaterThanOrEqual(4000);
  await eventually(() => a.activeCalls() === 1, 10_000, 'the live call on relay-0');
  // Ended calls are counted when the bridge finishes, just after the caller saw the close.
  await eventually(async () => metricValue(await scrape(a), 'switchboard_active_calls') === 1, 5000, 'relay-0 gauge at 1');
  await eventually(
    async () => metricValue(await scrape(a), 'switchboard_calls_total', { outcome: 'ended_by_assistant' }) === 1,
    5000,
    'the end_call call counted',
  );
  // From here on the relays' counters hold still (but for the live call's frames). rate() needs two
  // samples of a series, and a label set first counted just now has one: wait for two scrapes of
  // each relay after this point (1 s apart, so the later one is more than a second after it).
  const settled = Date.now() / 1000;
  await eventually(
    async () => (await query(`timestamp(up{job="switchboard"}) > ${settled + 1.2}`)).length === 2,
    10_000,
    'two scrapes of both relays after the traffic',
  );

  // Scrapes are 1 s apart: wait until every panel that should have data has it (bounded).
  await eventually(
    async () => {
      for (const q of queries) {
        if (q.where in NO_DATA_EXPECTED) continue;
        if ((await query(q.expr)).length === 0) return false;
      }
      return true;
    },
    20_000,
    'every panel query to return data',
  );
}, 60_000);

afterAll(async () => {
  liveCall.abort();
  await live;
  await relayA?.close();
  await relayB?.close();
  for (const s of hungSockets) s.destroy();
  await new Promise<void>((resolve) => (hangingModel ? hangingModel.close(() => resolve()) : resolve()));
  const p = prometheus;
  if (p && p.exitCode === null && p.signalCode === null) {
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

describe('a real Prometheus scraping relays with calls', () => {
  it('answers every dashboard panel query with data grouped by the labels the panel shows', async () => {
    expect(queries.length).toBeGreaterThanOrEqual(20);
    const problems: string[] = [];
    for (const { where, expr } of queries) {
      const result = await query(expr);
      if (where in NO_DATA_EXPECTED) {
        if (result.length > 0) problems.push(`${where}: now has data, drop it from NO_DATA_EXPECTED`);
        continue;
      }
      if (result.length === 0) {
        problems.push(`${where}: no data for ${expr}`);
        continue;
      }
      const labels = groupedBy(expr);
      for (const s of result) {
        const got = Object.keys(s.metric).sort();
        if (got.join() !== labels.join()) problems.push(`${where}: labels ${got.join()} != ${labels.join()}`);
      }
      for (const [label, values] of Object.entries(EXPECTED_VALUES[where] ?? {})) {
        const seen = new Set(result.map((s) => s.metric[label]));
        for (const v of values) if (!seen.has(v)) problems.push(`${where}: no series with ${label}="${v}" (saw ${[...seen].join(', ')})`);
      }
    }
    expect(problems).toEqual([]);
    // Every value map key names a real panel query, so a renamed panel cannot silently skip its check.
    const names = new Set(queries.map((q) => q.where));
    expect(Object.keys(EXPECTED_VALUES).filter((w) => !names.has(w))).toEqual([]);
    expect(Object.keys(NO_DATA_EXPECTED).filter((w) => !names.has(w))).toEqual([]);
  });

  it('shows the traffic it carried: frames relayed, the live call, failures on relay-1', async () => {
    const value = async (expr: string): Promise<number[]> => (await query(expr)).map((s) => Number(s.value[1]));
    const sel = `namespace="${NAMESPACE}"`;
    // Frames crossed relay-0 model→caller at tens of microseconds, not milliseconds; caller→model
    // includes the append hold (MODEL_APPEND_FRAMES=2 by default: every other frame waits ~20 ms for
    // the next), so its median sits near 10–20 ms by design and is bounded by the hold plus 10 ms.
    const bound: Record<string, number> = { model_to_caller: 0.01, caller_to_model: 0.02 + 0.01 };
    const p50 = await query(
      `histogram_quantile(0.5, sum by (direction, le) (rate(switchboard_frame_relay_seconds_bucket{${sel},pod="${PODS[0]}"}[5m])))`,
    );
    expect(p50).toHaveLength(2);
    for (const s of p50) expect(Number(s.value[1]), s.metric['direction']).toBeLessThan(bound[s.metric['direction'] ?? ''] ?? 0);
    expect(await value(`sum(switchboard_active_calls{${sel},pod="${PODS[0]}"})`)).toEqual([1]);
    expect(await value(`sum(switchboard_active_calls{${sel},pod="${PODS[1]}"})`)).toEqual([0]);
    expect((await value(`sum(switchboard_barge_ins_total{${sel}})`))[0]).toBeGreaterThanOrEqual(1);
    expect((await value(`sum(switchboard_frames_dropped_total{${sel},pod="${PODS[1]}",reason="model_not_ready"})`))[0]).toBeGreaterThan(0);
    expect(await value(`sum(switchboard_calls_total{${sel},pod="${PODS[1]}",outcome="model_unavailable"})`)).toEqual([1]);
    expect(await value(`sum(switchboard_tool_call_seconds_count{${sel},tool="end_call",outcome="invalid_arguments"})`)).toEqual([1]);
  });

  it('serves the HPA metric as prometheus-adapter queries it, per pod', async () => {
    const values = parse(await readFile(root + VALUES, 'utf8')) as {
      autoscaling: { prometheusAdapterRule: { seriesQuery: string; metricsQuery: string; name: { as: string } } };
    };
    const rule = values.autoscaling.prometheusAdapterRule;
    // Discovery: the adapter lists series matching seriesQuery and maps namespace/pod to resources.
    const res = await fetch(`${promUrl}/api/v1/series?match[]=${encodeURIComponent(rule.seriesQuery)}`);
    const series = ((await res.json()) as { data: Record<string, string>[] }).data;
    expect(series.map((s) => s.pod).sort()).toEqual([...PODS]);
    expect(series.every((s) => s.namespace === NAMESPACE && s['__name__'] === rule.name.as)).toBe(true);

    // The HPA asks for pods/*/switchboard_active_calls in the namespace; the adapter fills the template.
    const expr = rule.metricsQuery
      .replace('<<.Series>>', 'switchboard_active_calls')
      .replace('<<.LabelMatchers>>', `namespace="${NAMESPACE}",pod=~"${PODS.join('|')}"`)
      .replace('<<.GroupBy>>', 'pod');
    expect(expr).not.toContain('<<');
    const result = await query(expr);
    expect(Object.fromEntries(result.map((s) => [s.metric['pod'], Number(s.value[1])]))).toEqual({ 'relay-0': 1, 'relay-1': 0 });
    expect(result.every((s) => Object.keys(s.metric).join() === 'pod')).toBe(true);
  });

  it('feeds the dashboard variables: label_values of namespace and pod', async () => {
    const labelValues = async (label: string, match: string): Promise<string[]> => {
      const res = await fetch(`${promUrl}/api/v1/label/${label}/values?match[]=${encodeURIComponent(match)}`);
      return ((await res.json()) as { data: string[] }).data;
    };
    expect(await labelValues('namespace', 'switchboard_active_calls')).toEqual([NAMESPACE]);
    expect(await labelValues('pod', `switchboard_active_calls{namespace=~"${NAMESPACE}"}`)).toEqual([...PODS]);
  });
});
