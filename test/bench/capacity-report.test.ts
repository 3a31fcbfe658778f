/**
 * bench/capacity-report.ts renders docs/capacity.md from a committed bench JSON (a tiny real run with
 * the floor relay and a smoke load scenario): every section, the sizing arithmetic, plots, load input.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CAPACITY_RULE, REGENERATE_COMMAND, appendHoldMs, benchRefusal, chartAdvice, judgedE2e, knee, meetsE2e, modelLeg, readLoadJson, relayCapacity, renderReport, sizing, writeCapacityReport } from '../../bench/capacity-report.js';
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
    for (const h of ['# Capacity', '## Against the targets', '## Calls per core and per pod', '## Memory per call', '## Latency by level, with the harness floor', '## The knee', '## What saturates first', '## Sizing: HPA target and pod resources', '## Against the baseline relay', '### The published baseline figures — another measurement', '## Load: scenario `smoke` (`npm run load -- --scenario smoke`)', '## Plots', '## Regenerate']) {
      expect(md).toContain(h);
    }
    // Each level has a floor, a Switchboard and a baseline row.
    for (const level of [4, 8]) for (const relay of ['floor', 'switchboard', 'baseline']) expect(md).toMatch(new RegExp(`\\| ${level} \\| ${relay} \\| ${level}/${level} \\|`));
    expect(md).toContain(REGENERATE_COMMAND);
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
    // The fixture is a loopback run: the TLS cost is added as an estimate.
    expect(modelLeg(bench)).toBe('loopback');
    const s = sizing(sb, modelLeg(bench))!;
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
    // The knee: p99 more than double the lowest level's, or drops.
    expect(knee([at(50, 0.5), at(100, 0.8), at(200, 1.9), at(300, 2.5)])).toEqual({ lowest: 50, p99Lowest: 0.5, at: 200, p99At: 1.9, drops: 0, cause: 'p99' });
    expect(knee([at(50, 0.5), at(100, 0.6)])).toBeNull();
    const dropped = at(100, 0.6);
    expect(knee([at(50, 0.5), { ...dropped, driver: { ...dropped.driver, modelToCaller: { ...dropped.driver.modelToCaller, received: dropped.driver.modelToCaller.sent - 3 } } }])).toMatchObject({ at: 100, drops: 3, cause: 'drops' });
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
    // The values to set, and what each values file must change (the fixture's tiny run: capacity 10).
    expect(res.stdout).toContain('sizing (LOOPBACK run, TLS estimated): podCapacityCalls 10, targetActiveCallsPerPod 6');
    expect(res.stdout).toMatch(/^chart: deploy\/helm\/switchboard\/values\.yaml: set autoscaling\.podCapacityCalls: 10 \(now \d+\)/m);
    expect(res.stdout).toMatch(/^chart: deploy\/helm\/switchboard\/values-production\.yaml: set /m);
    expect(readFileSync(join(out, 'cli.md'), 'utf8')).toContain('# Capacity');
  }, 30_000);

  it('refuses a bench where a relay or a level failed: non-zero exit, nothing written', () => {
    expect(benchRefusal(bench)).toEqual([]);
    const failed: BenchReport = { ...bench, runs: bench.runs.filter((r) => !(r.relay === 'switchboard' && r.level === 8)), failures: [{ relay: 'switchboard', level: 8, error: 'switchboard exited with 1 (see sb.log)' }] };
    // An older JSON without `failures`: the missing run gives it away; a lost load run too.
    const { load: _load, ...noLoad } = bench;
    const silent: BenchReport = { ...noLoad, runs: bench.runs.filter((r) => r.relay !== 'baseline' || r.level !== 4) };
    expect(benchRefusal(failed)).toEqual(['switchboard at 8 calls failed: switchboard exited with 1 (see sb.log)']);
    expect(benchRefusal(silent)).toEqual(['baseline at 4 calls: no run in the JSON', 'load scenario smoke: no result in the JSON']);
    for (const [name, b] of [['failed.json', failed], ['silent.json', silent]] as const) {
      const file = join(out, name);
      writeFileSync(file, JSON.stringify(b));
      const md = join(out, `${name}.md`);
      const res = spawnSync(process.execPath, ['--import', 'tsx', 'bench/capacity-report.ts', file, '--out', md, '--plots', join(out, `${name}-plots`)], { encoding: 'utf8' });
      expect(res.status).toBe(1);
      expect(res.stderr).toContain('refused, the bench did not complete');
      expect(existsSync(md)).toBe(false);
      expect(existsSync(join(out, `${name}-plots`))).toBe(false);
    }
  }, 30_000);

  describe('sizing from a --tls run', () => {
    const base = bench.runs.find((r) => r.relay === 'switchboard')!;
    type Run = BenchReport['runs'][number];
    /** A Switchboard run at `level` calls: CPU as given, RSS 80 MB + 50 KB a call, heap 20 MB + 30 KB a call. */
    const run = (level: number, cpu: number, o: { saturated?: boolean; histP99?: number; tlsSessions?: number } = {}): Run => {
      const dir = (p99: number) => ({ p50Ms: 0.02, p99Ms: p99, count: 1000 });
      return {
        ...base,
        level,
        relayCpuPercent: cpu,
        cpuPerCallPercent: cpu / level,
        rssMB: 80 + (level * 50) / 1024,
        heapMB: 20 + (level * 30) / 1024,
        heapSource: 'gc',
        gcMemory: { rss: 0, heapTotal: 0, heapUsed: 0, external: 2 ** 20, arrayBuffers: 2 ** 20 },
        switchboardHistogram: { callerToModel: dir(o.histP99 ?? 0.1), modelToCaller: dir(0.1) },
        switchboardDropped: 0,
        modelTlsUpgrades: o.tlsSessions ?? level,
        driver: {
          ...base.driver,
          callsHeld: level,
          callsTarget: level,
          callerToModel: { ...base.driver.callerToModel, sent: 1000, received: 1000 },
          modelToCaller: { ...base.driver.modelToCaller, sent: 1000, received: 1000 },
          driver: { ...base.driver.driver, saturated: o.saturated ?? false },
        },
      };
    };
    const report = (runs: Run[], tls: boolean): BenchReport => {
      const { load: _load, ...rest } = bench;
      return { ...rest, options: { ...bench.options, tls }, runs };
    };
    // 5 % fixed + 0.25 % a call at 100 and 200 calls; at 300 the driver was saturated and sent less.
    const levels = [run(100, 30), run(200, 55), run(300, 62, { saturated: true })];

    it('uses the CPU line measured over TLS as it is, fitted on the levels the driver kept up with', () => {
      const b = report(levels, true);
      expect(modelLeg(b)).toBe('tls');
      const sb = relayCapacity(b, 'switchboard')!;
      expect(sb.cpuFitLevels).toEqual([100, 200]);
      expect(sb.cpuPercentPerCall).toBeCloseTo(0.25, 10);
      expect(sb.cpuFixedPercent).toBeCloseTo(5, 10);
      const s = sizing(sb, modelLeg(b))!;
      // (70 - 5) / 0.25 = 260 by CPU; latency held up to 300, but the driver saturated there, so
      // only 200 counts: capacity 200, target 60 % = 120.
      expect(s).toMatchObject({ modelLeg: 'tls', tlsAddedPercent: 0, capacityByCpu: 260, capacityByLatency: 200, podCapacityCalls: 200, targetActiveCallsPerPod: 120 });
      expect(s.latencyBasis).toContain('the driver saturated at 300 calls');
      // Had the driver kept up at 300: CPU decides, 260 and 150.
      const ok = report([run(100, 30), run(200, 55), run(300, 80)], true);
      expect(sizing(relayCapacity(ok, 'switchboard')!, 'tls')).toMatchObject({ capacityByCpu: 260, capacityByLatency: 300, podCapacityCalls: 260, targetActiveCallsPerPod: 150 });
      // 80 MB + 50 KB x 200 = 89.8 MiB: request x 1.25 -> 128Mi, limit x 2 -> 192Mi.
      expect(s.memoryPerCallKB).toBeCloseTo(50, 6);
      expect(s).toMatchObject({ memoryRequestMiB: 128, memoryLimitMiB: 192, cpuRequestMillis: 1000 });
      const md = renderReport({ bench: b, benchPath: FIXTURE }, []);
      expect(md).toContain('Model leg over TLS, as production (`--tls`: 600 Switchboard model sessions arrived on TLS sockets).');
      expect(md).toContain('CPU per call (production)   = 0.250 % of a core (measured, model leg over TLS)');
      expect(md).toContain('podCapacityCalls            = min of the two, rounded down to 10 = 200');
      expect(md).toContain('targetActiveCallsPerPod     = 60 % of capacity (docs/autoscaling.md), rounded down to 10 = 120');
      expect(md).toContain('fitted on levels 100, 200');
      // The rule with its numbers, and this run's CPU line with its R² (an exact line: 1).
      expect(md).toContain(`**The rule.** ${CAPACITY_RULE}`);
      for (const n of ['70 % of one core', 'p50 ≤ 0.3 ms and p99 ≤ 2 ms', 'least-squares fit', 'over the unsaturated levels', '60 % of the capacity', 'rounded down to a multiple of 10']) expect(CAPACITY_RULE).toContain(n);
      expect(md).toContain("This run's CPU line: 5.0 % fixed + 0.250 % a call, least-squares fit over levels 100, 200 (every call held, driver not saturated), R² = 1.000.");
    });

    it('says a CPU line with a slope <= 0 is not usable, rather than "not enough levels"', () => {
      // A loopback run at 20 and 40 calls whose CPU fell (noise on a busy machine).
      const b = report([run(20, 12), run(40, 10)], false);
      expect(sizing(relayCapacity(b, 'switchboard')!, 'loopback')).toBeUndefined();
      const md = renderReport({ bench: b, benchPath: FIXTURE }, []);
      expect(md).toContain('CPU line not usable (slope ≤ 0): 14.0 % fixed + -0.100 % a call, least-squares fit over levels 20, 40');
      expect(md).not.toContain('Not enough levels');
      expect(renderReport({ bench: report([run(20, 12)], false), benchPath: FIXTURE }, [])).toContain('Not enough levels to fit a CPU line (two levels with calls held are needed)');
    });

    it('docs/autoscaling.md states the same capacity rule as the report', () => {
      const doc = readFileSync('docs/autoscaling.md', 'utf8').replace(/\s+/g, ' ');
      expect(doc).toContain(CAPACITY_RULE);
    });

    it('adds the TLS estimate to a loopback run, and to a --tls run whose sessions did not arrive over TLS', () => {
      for (const b of [report(levels, false), report(levels.map((r) => ({ ...r, modelTlsUpgrades: 0 })), true)]) {
        expect(modelLeg(b)).toBe('loopback');
        // (70 - 5) / (0.25 + 0.2) = 144 -> 140; 60 % = 84 -> 80.
        expect(sizing(relayCapacity(b, 'switchboard')!, modelLeg(b))).toMatchObject({ tlsAddedPercent: 0.2, capacityByCpu: 144, podCapacityCalls: 140, targetActiveCallsPerPod: 80 });
      }
      expect(renderReport({ bench: report(levels.map((r) => ({ ...r, modelTlsUpgrades: 0 })), true), benchPath: FIXTURE }, [])).toContain('was given but not every Switchboard run reached the model over TLS');
    });

    it('judges issue 18\'s targets, Switchboard\'s caller→model net of the designed append hold', () => {
      const lat = (p50: number, p99: number) => ({ count: 1000, p50, p99, p999: p99, max: p99 });
      const withLat = (r: Run, c2m: ReturnType<typeof lat>, m2c: ReturnType<typeof lat>, relay: Run['relay'] = r.relay): Run => ({
        ...r,
        relay,
        ...(relay === 'baseline' ? { switchboardHistogram: null, switchboardDropped: null } : {}),
        driver: { ...r.driver, callerToModel: { ...r.driver.callerToModel, latencyMs: c2m }, modelToCaller: { ...r.driver.modelToCaller, latencyMs: m2c } },
      });
      // Two frames per append (the default): caller→model p50 ~12 ms and p99 ~28 ms at every level, by design.
      // The relay-own caller→model histogram runs until the append is sent: p99 ~22 ms too.
      const sbRuns = [run(50, 17.5, { histP99: 22 }), run(100, 30, { histP99: 22 }), run(150, 42.5, { histP99: 22 })].map((r) => withLat(r, lat(12, 28), lat(0.2, 0.8)));
      // The baseline: 2 % fixed + 0.5 % a call -> 70 % at 136 calls.
      const blRuns = [run(50, 27), run(100, 52), run(150, 77)].map((r) => withLat(r, lat(0.3, 1.2), lat(0.3, 0.9), 'baseline'));
      const b = report([...sbRuns, ...blRuns], true);
      expect(appendHoldMs(b)).toBe(20);
      expect(appendHoldMs({ options: { ...b.options, sbEnv: { MODEL_APPEND_FRAMES: '1' } } })).toBe(0);
      expect(judgedE2e(sbRuns[0]!, 'p99', 20)).toBe(0.8);
      expect(meetsE2e(sbRuns[0]!, 20)).toBe(true);
      expect(meetsE2e(sbRuns[0]!, 0)).toBe(false);
      expect(knee(sbRuns, 20)).toBeNull();
      const sb = relayCapacity(b, 'switchboard')!;
      expect(sb.e2eCallsPerCore).toBe(150);
      expect(sb.histCallsDriverOk).toBe(150);
      expect(sizing(sb, 'tls')).toMatchObject({ capacityByLatency: 150, podCapacityCalls: 150 });
      // With one frame per append there is no hold: the same figures would be a miss at every level.
      const oneFrame = { ...b, options: { ...b.options, sbEnv: { MODEL_APPEND_FRAMES: '1' } } };
      expect(relayCapacity(oneFrame, 'switchboard')).toMatchObject({ e2eCallsPerCore: 0, histCallsDriverOk: 0 });
      const md = renderReport({ bench: b, benchPath: FIXTURE }, []);
      expect(md).not.toContain('First to saturate: end-to-end latency target');
      expect(md).toContain('- switchboard: no knee over the measured levels');
      expect(md).toContain("Switchboard's latency is therefore judged on model→caller only");
      // 2x by the capacity rule: Switchboard min(260 at 70 %, held up to 150) = 150 vs baseline 136: 1.10x.
      expect(md).toMatch(/\| >= 2x the baseline's calls per core [^|]* \| Switchboard 150 \(70 % CPU at 260, held up to 150\) vs baseline 136 [^|]*: 1\.10x \(Switchboard capped by the highest level held, 150: a lower bound\); per-level CPU ratio baseline\/Switchboard: 50: 1\.54x, 100: 1\.73x, 150: 1\.81x \| \*\*missed\*\* \|/);
      expect(md).toMatch(/\| per-frame p99 <= the baseline's, caller→model, at each level \| [^|]*net of the 20 ms append hold\): 50: 8\.000 vs 1\.200 \(missed\)[^|]*\| \*\*missed\*\* \|/);
      expect(md).toMatch(/\| per-frame p99 <= the baseline's, model→caller, at each level \| [^|]*50: 0\.800 vs 0\.900;[^|]*\| met \|/);
      expect(md).toMatch(/\| zero drops up to the knee \| no drops at any measured level \(up to 150\); latency knee not reached \| met \|/);
      expect(md).toMatch(/\| <= 32 KB heap per call \| 30\.0 KB\/call [^|]*\| met \|/);
      expect(md).toMatch(/\| fixed RSS <= 90 MB \(85\.8 MiB\) \| 80\.0 MiB [^|]*\| met \|/);
      // 90 MB is 85.8 MiB: an intercept of 87 MiB misses it.
      const fat = report([...sbRuns, ...blRuns].map((r) => (r.relay === 'switchboard' ? { ...r, rssMB: (r.rssMB ?? 0) + 7 } : r)), true);
      expect(renderReport({ bench: fat, benchPath: FIXTURE }, [])).toMatch(/\| fixed RSS <= 90 MB \(85\.8 MiB\) \| 87\.0 MiB [^|]*\| \*\*missed\*\* \|/);
      expect(md).toMatch(/\| turn latency added by batching <= 20 ms p50 \| not measured by this run/);
    });

    it('never claims more than the highest level held within the latency target', () => {
      // One frame per append: the caller→model histogram is judged too (with more, it carries the hold).
      const one = report([run(100, 30), run(200, 55, { histP99: 2.5 }), run(300, 80)], true);
      const b = { ...one, options: { ...one.options, sbEnv: { MODEL_APPEND_FRAMES: '1' } } };
      expect(sizing(relayCapacity(b, 'switchboard')!, 'tls')).toMatchObject({ capacityByLatency: 100, podCapacityCalls: 100, targetActiveCallsPerPod: 60 });
      // CPU would allow 260, but only 150 calls were measured: 150.
      const short = report([run(100, 30), run(150, 42.5)], true);
      expect(sizing(relayCapacity(short, 'switchboard')!, 'tls')).toMatchObject({ capacityByCpu: 260, podCapacityCalls: 150, targetActiveCallsPerPod: 90 });
    });

    it('says what each values file must change', () => {
      const s = sizing(relayCapacity(report([run(100, 30), run(200, 55), run(300, 80)], true), 'switchboard')!, 'tls')!;
      const lines = chartAdvice(s, [
        { path: 'values.yaml', text: 'autoscaling:\n  podCapacityCalls: 190\n  targetActiveCallsPerPod: 110\nresources:\n  requests:\n    memory: 64Mi\n  limits:\n    memory: 768Mi\n' },
        { path: 'values-production.yaml', text: 'autoscaling:\n  podCapacityCalls: 260\n  targetActiveCallsPerPod: 150\n' },
      ]);
      expect(lines).toEqual([
        'values.yaml: set autoscaling.podCapacityCalls: 260 (now 190); autoscaling.targetActiveCallsPerPod: 150 (now 110); resources.requests.memory: at least 128Mi (now 64Mi)',
        'values-production.yaml: ok',
      ]);
    });
  });

  it('bench/README.md gives the same regeneration command as the report', () => {
    expect(readFileSync('bench/README.md', 'utf8')).toContain(REGENERATE_COMMAND);
  });
});
