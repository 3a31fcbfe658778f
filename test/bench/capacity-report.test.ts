/**
 * bench/capacity-report.ts renders docs/capacity.md from a committed bench JSON (a tiny real run with
 * the floor relay and a smoke load scenario): every section, the sizing arithmetic, plots, load input.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { knee, meetsE2e, readLoadJson, relayCapacity, sizing, writeCapacityReport } from '../../bench/capacity-report.js';
import type { BenchReport } from '../../bench/run.js';

const FIXTURE = resolve('test/bench/fixtures/bench-tiny.json');

describe('capacity report', () => {
  const out = mkdtempSync(join(tmpdir(), 'capacity-test-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));
  const bench = JSON.parse(readFileSync(FIXTURE, 'utf8')) as BenchReport;

  it('renders every section from the fixture, with plots redrawn when the SVGs are not beside it', () => {
    const r = writeCapacityReport({ benchPath: FIXTURE, outPath: join(out, 'capacity.md'), plotsDir: join(out, 'capacity') });
    const md = readFileSync(join(out, 'capacity.md'), 'utf8');
    expect(md).toBe(r.markdown);
    for (const h of ['# Capacity', '## Against the targets', '## Calls per core and per pod', '## Memory per call', '## Latency by level, with the harness floor', '## The knee', '## What saturates first', '## Sizing: HPA target and pod resources', '## Against the baseline relay', '### The published baseline figures — another measurement', '## Steady load', '## Plots', '## Regenerate']) {
      expect(md).toContain(h);
    }
    // Each level has a floor, a Switchboard and a baseline row.
    for (const level of [4, 8]) for (const relay of ['floor', 'switchboard', 'baseline']) expect(md).toMatch(new RegExp(`\\| ${level} \\| ${relay} \\| ${level}/${level} \\|`));
    expect(md).toContain('npm run bench -- --metrics-off --floor --load steady && npx tsx bench/capacity-report.ts');
    expect(readdirSync(join(out, 'capacity')).sort()).toEqual(['cpu.svg', 'heap.svg', 'p99.svg', 'rss.svg']);
    for (const p of r.plots) expect(readFileSync(p, 'utf8')).toMatch(/^<svg /);
    expect(md).toContain('![Relay CPU against concurrent calls](capacity/cpu.svg)');
    // The fixture's bench ran a smoke load scenario: its section is filled from the bench JSON.
    expect(md).toMatch(/Scenario `smoke`/);
    expect(md).toMatch(/\| call_turn_latency \| [\d.]+ \|/);
  });

  it('shows the sizing arithmetic consistent with the figures', () => {
    const sb = relayCapacity(bench, 'switchboard')!;
    expect(sb.heapGcd).toBe(true);
    expect(sb.levels).toEqual([4, 8]);
    const s = sizing(sb)!;
    expect(s.cpuPercentPerCallProd).toBeCloseTo(sb.cpuPercentPerCall! + 0.2, 10);
    expect(s.podCapacityCalls % 10).toBe(0);
    expect(s.targetActiveCallsPerPod).toBeLessThanOrEqual(s.podCapacityCalls * 0.6);
    expect(s.memoryLimitMiB).toBeGreaterThanOrEqual(s.memoryRequestMiB);
    const md = readFileSync(join(out, 'capacity.md'), 'utf8');
    expect(md).toContain(`podCapacityCalls            = min of the two, rounded down to 10 = ${s.podCapacityCalls}`);
    expect(md).toContain(`targetActiveCallsPerPod     = 60 % of capacity (docs/autoscaling.md), rounded down to 10 = ${s.targetActiveCallsPerPod}`);
  });

  it('judges targets and finds the knee', () => {
    const base = bench.runs.find((r) => r.relay === 'switchboard')!;
    const at = (level: number, p99: number): BenchReport['runs'][number] => ({
      ...base,
      level,
      driver: { ...base.driver, callsHeld: level, callsTarget: level, modelToCaller: { ...base.driver.modelToCaller, latencyMs: { ...base.driver.modelToCaller.latencyMs, p50: 0.1, p99, p999: p99 } }, callerToModel: { ...base.driver.callerToModel, latencyMs: { ...base.driver.callerToModel.latencyMs, p50: 0.1, p99, p999: p99 } } },
    });
    expect(knee([at(50, 0.5), at(100, 0.8), at(200, 1.9), at(300, 2.5)])).toEqual({ before: 100, at: 200, p99Before: 0.8, p99At: 1.9 });
    expect(knee([at(50, 0.5), at(100, 0.6)])).toBeNull();
    expect(meetsE2e(at(50, 1.5))).toBe(true);
    expect(meetsE2e(at(50, 2.5))).toBe(false);
  });

  it('takes a load run from `npm run load -- --json` output, npm header lines and all', () => {
    const load = bench.load!.result;
    const file = join(out, 'load.txt');
    writeFileSync(file, `\n> switchboard@0.1.0 load\n> tsx loadtest/node-driver.ts --scenario smoke --json\n\n${JSON.stringify(load, null, 2)}\n`);
    expect(readLoadJson(file).result.scenario.name).toBe('smoke');
    const r = writeCapacityReport({ benchPath: FIXTURE, loadPath: file, outPath: join(out, 'with-load.md'), plotsDir: join(out, 'capacity') });
    expect(r.markdown).toContain('load.txt');
    writeFileSync(join(out, 'bad.json'), '{"nope": 1}');
    expect(() => readLoadJson(join(out, 'bad.json'))).toThrow(/neither a load result/);
  });

  it('runs as a command and says where it wrote', () => {
    const res = spawnSync(process.execPath, ['--import', 'tsx', 'bench/capacity-report.ts', FIXTURE, '--out', join(out, 'cli.md')], { encoding: 'utf8' });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(res.stdout).toContain(`capacity report: ${join(out, 'cli.md')}`);
    expect(readFileSync(join(out, 'cli.md'), 'utf8')).toContain('# Capacity');
  }, 30_000);
});
