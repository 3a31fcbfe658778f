/**
 * scripts/hpa-sim.ts: the HPA rate limits match upstream arithmetic, and a short call storm through
 * the chart's settings keeps the simulation's invariants (bounds, capacity, call accounting).
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadChartSettings, piecewise, scaleLimit, simulate, type AutoscalingSettings, type SimResult } from '../../scripts/hpa-sim.js';

const ROOT = resolve(import.meta.dirname, '../..');
const chart = loadChartSettings();

function checkInvariants(r: SimResult, s: AutoscalingSettings): void {
  const t = r.totals;
  expect(t.offered).toBe(t.accepted + t.refused);
  expect(t.accepted).toBe(t.completed + t.cutByDrainTimeout + t.stillActive);
  expect(t.peakCallsPerPod).toBeLessThanOrEqual(s.podCapacityCalls);
  for (const x of r.samples) {
    expect(x.desiredReplicas).toBeGreaterThanOrEqual(s.minReplicas);
    expect(x.desiredReplicas).toBeLessThanOrEqual(s.maxReplicas);
    expect(x.readyPods + x.startingPods).toBe(x.desiredReplicas);
    expect(x.maxCallsPerPod).toBeLessThanOrEqual(s.podCapacityCalls);
  }
  // No scale-down inside the scale-down stabilisation window after a scale-up.
  let lastUp = -Infinity;
  for (const e of t.scaleEvents) {
    if (e.to > e.from) lastUp = e.t;
    else expect(e.t - lastUp).toBeGreaterThanOrEqual(s.behavior.scaleDown.stabilizationWindowSeconds);
  }
}

describe('hpa-sim', () => {
  it('reads the chart defaults', () => {
    expect(chart.targetActiveCallsPerPod).toBe(150);
    expect(chart.podCapacityCalls).toBeGreaterThan(chart.targetActiveCallsPerPod);
    expect(chart.behavior.scaleDown.stabilizationWindowSeconds).toBeGreaterThan(0);
  });

  it('merges an overrides file over the chart defaults, as helm -f does', () => {
    const prod = loadChartSettings(resolve(ROOT, 'deploy/helm/switchboard/values-production.yaml'));
    expect(prod.minReplicas).toBe(3);
    expect(prod.maxReplicas).toBe(40);
    expect(prod.behavior).toEqual(chart.behavior);
  });

  it('applies rate policies as kube-controller-manager does', () => {
    const up = chart.behavior.scaleUp; // 100 % or 4 pods per 30 s, whichever is more
    expect(scaleLimit(up, 'up', 2, [], 0)).toBe(6);
    expect(scaleLimit(up, 'up', 10, [], 0)).toBe(20);
    // 6 pods added 10 s ago: the period started at 4.
    expect(scaleLimit(up, 'up', 10, [{ t: 90, delta: 6 }], 100)).toBe(8);
    const down = chart.behavior.scaleDown; // 10 % or 1 pod per 300 s, whichever removes more
    expect(scaleLimit(down, 'down', 5, [], 0)).toBe(4);
    expect(scaleLimit(down, 'down', 40, [], 0)).toBe(36);
    expect(scaleLimit({ ...down, selectPolicy: 'Disabled' }, 'down', 40, [], 0)).toBe(40);
  });

  it('keeps minReplicas and refuses nothing when no calls arrive', () => {
    const r = simulate({ settings: chart, curve: { name: 'idle', durationSeconds: 600, medianCallSeconds: 60, rate: () => 0 } });
    expect(r.totals.offered).toBe(0);
    expect(r.totals.scaleEvents).toEqual([]);
    expect(r.samples.every((x) => x.desiredReplicas === chart.minReplicas)).toBe(true);
  });

  it('scales out for a storm and back in after it, within its invariants', () => {
    const settings: AutoscalingSettings = {
      ...chart,
      behavior: { ...chart.behavior, scaleDown: { ...chart.behavior.scaleDown, stabilizationWindowSeconds: 300 } },
    };
    const curve = { name: 'short-storm', durationSeconds: 2400, medianCallSeconds: 60, rate: piecewise([[0, 0.5], [120, 0.5], [180, 8], [600, 8], [660, 0.2], [2400, 0.2]]) };
    const r = simulate({ settings, curve, seed: 3 });
    checkInvariants(r, settings);
    expect(r.totals.peakReplicas).toBeGreaterThan(settings.minReplicas);
    expect(r.totals.scaleEvents.some((e) => e.to < e.from)).toBe(true);
    expect(r.totals.cutByDrainTimeout).toBe(0);
    expect(r.samples.at(-1)?.desiredReplicas).toBeLessThan(r.totals.peakReplicas);
    // Deterministic for a seed.
    expect(simulate({ settings, curve, seed: 3 }).totals).toEqual(r.totals);
  });

  it('cuts calls only when a draining pod outlives the drain timeout', () => {
    const settings: AutoscalingSettings = {
      ...chart,
      drainTimeoutSeconds: 30,
      behavior: { ...chart.behavior, scaleDown: { ...chart.behavior.scaleDown, stabilizationWindowSeconds: 60 } },
    };
    const curve = { name: 'long-calls', durationSeconds: 1500, medianCallSeconds: 600, rate: piecewise([[0, 3], [300, 3], [301, 0], [1500, 0]]) };
    const r = simulate({ settings, curve });
    checkInvariants(r, settings);
    expect(r.totals.cutByDrainTimeout).toBeGreaterThan(0);
  });

  it('prints JSON from the command line', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/hpa-sim.ts', '--arrivals', 'ramp', '--json'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
    const r = JSON.parse(stdout) as SimResult;
    expect(r.curve).toBe('ramp');
    expect(r.settings).toEqual(chart);
    expect(r.samples.length).toBeGreaterThan(10);
    checkInvariants(r, chart);
  });
});
