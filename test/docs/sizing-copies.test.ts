/**
 * One source for the sizing numbers: the chart's values.yaml, derived from the bench's sizing block
 * in docs/capacity.md. Every other place that states a pod's capacity, the HPA target or the pod's
 * memory says the same number, and the capacity alert and dashboard state none at all (they read
 * the pods' own MAX_ACTIVE_CALLS back as switchboard_max_active_calls).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const ROOT = join(import.meta.dirname, '../..');
const read = (p: string): string => readFileSync(join(ROOT, p), 'utf8');

interface Values {
  resources: { requests: { cpu: string; memory: string }; limits: { memory: string } };
  autoscaling: { targetActiveCallsPerPod: number; podCapacityCalls: number };
}
const values = parse(read('deploy/helm/switchboard/values.yaml')) as Values;
/** The production overlay repeats the autoscaling figures (and may override resources). */
const production = parse(read('deploy/helm/switchboard/values-production.yaml')) as { autoscaling: Values['autoscaling']; resources?: Values['resources'] };
const CAPACITY = values.autoscaling.podCapacityCalls;
const TARGET = values.autoscaling.targetActiveCallsPerPod;
const mib = (q: string): number => {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`unexpected memory quantity ${q}`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
};

/** Every capture of `re` in `file`, as numbers; at least one, so a reworded sentence fails loudly. */
function stated(file: string, re: RegExp): number[] {
  const found = [...read(file).matchAll(re)].map((m) => Number(m[1]));
  if (found.length === 0) throw new Error(`${file}: no match for ${re}`);
  return found;
}

describe('sizing numbers', () => {
  it('the chart carries the bench sizing block of docs/capacity.md', () => {
    const block = read('docs/capacity.md');
    expect(stated('docs/capacity.md', /^podCapacityCalls {2,}= .* = (\d+)$/gm)).toEqual([CAPACITY]);
    expect(stated('docs/capacity.md', /^targetActiveCallsPerPod {2,}= .* = (\d+)$/gm)).toEqual([TARGET]);
    expect(TARGET).toBeLessThan(CAPACITY);
    // Memory: the bench gives minimums; the chart may give more head-room, never less.
    const mem = /^memory request {2,}= .* at least (\d+)Mi; .* at least (\d+)Mi$/m.exec(block);
    expect(mem, 'memory line of the sizing block').not.toBeNull();
    expect(mib(values.resources.requests.memory)).toBeGreaterThanOrEqual(Number(mem![1]));
    expect(mib(values.resources.limits.memory)).toBeGreaterThanOrEqual(Number(mem![2]));
    const cpu = /-> request (\d+)m, no CPU limit/.exec(block);
    const req = String(values.resources.requests.cpu);
    expect(req.endsWith('m') ? Number(req.slice(0, -1)) : Number(req) * 1000).toBe(Number(cpu![1]));
  });

  it('values-production.yaml carries the same sizing as values.yaml and docs/capacity.md', () => {
    expect(production.autoscaling.podCapacityCalls).toBe(CAPACITY);
    expect(production.autoscaling.targetActiveCallsPerPod).toBe(TARGET);
    const mem = /^memory request {2,}= .* at least (\d+)Mi; .* at least (\d+)Mi$/m.exec(read('docs/capacity.md'));
    const res = production.resources ?? values.resources;
    expect(mib(res.requests.memory)).toBeGreaterThanOrEqual(Number(mem![1]));
    expect(mib(res.limits.memory)).toBeGreaterThanOrEqual(Number(mem![2]));
  });

  it('every doc that states the capacity or the HPA target states the chart values', () => {
    const copies: [string, RegExp, number][] = [
      ['README.md', /The Helm defaults \((\d+) calls per pod/g, CAPACITY],
      ['README.md', /calls per pod, HPA target (\d+)\)/g, TARGET],
      ['docs/autoscaling.md', /`podCapacityCalls: (\d+)`/g, CAPACITY],
      ['docs/autoscaling.md', /`targetActiveCallsPerPod: (\d+)`/g, TARGET],
      ['docs/autoscaling.md', /capacity of (\d+) calls and target \d+ per pod/g, CAPACITY],
      ['docs/autoscaling.md', /capacity of \d+ calls and target (\d+) per pod/g, TARGET],
      ['deploy/README.md', /\| `autoscaling\.podCapacityCalls` \| (\d+) \|/g, CAPACITY],
      ['deploy/README.md', /\| `autoscaling\.targetActiveCallsPerPod` \| (\d+) \|/g, TARGET],
      ['docs/observability.md', /`autoscaling\.podCapacityCalls`, (\d+) by default/g, CAPACITY],
      ['docs/observability.md', /`autoscaling\.targetActiveCallsPerPod`, (\d+) by default/g, TARGET],
      ['docs/observability.md', /`autoscaling\.targetActiveCallsPerPod`,\s+default (\d+) calls per pod/g, TARGET],
      ['docs/observability.md', /averageValue: '(\d+)'/g, TARGET],
      ['docs/observability.md', /more\s+than (\d+) of \d+ calls\)/g, Math.floor(CAPACITY * 0.9)],
      ['docs/observability.md', /more\s+than \d+ of (\d+) calls\)/g, CAPACITY],
    ];
    const wrong = copies.flatMap(([file, re, want]) => stated(file, re).filter((n) => n !== want).map((n) => `${file}: ${re} says ${n}, the chart ${want}`));
    expect(wrong).toEqual([]);
  });

  it('every doc that states the memory limit states the chart value', () => {
    const limit = values.resources.limits.memory;
    const copies: [string, RegExp][] = [
      ['docs/kubernetes.md', /Memory limit (\d+Mi)/g],
      ['deploy/README.md', /(\d+Mi) memory limit/g],
    ];
    for (const [file, re] of copies) {
      const found = [...read(file).matchAll(re)].map((m) => m[1]);
      expect(found.length, `${file}: ${re}`).toBeGreaterThan(0);
      expect(found, file).toEqual(found.map(() => limit));
    }
  });

  it('the capacity alert and the dashboard hold no copy of the capacity: they read it from the pods', () => {
    const alerts = parse(read('deploy/helm/switchboard/files/switchboard-alerts.yaml')) as { groups: { rules: { alert?: string; expr: string }[] }[] };
    const rule = alerts.groups.flatMap((g) => g.rules).find((r) => r.alert === 'SwitchboardPodNearCallCapacity');
    expect(rule?.expr).toContain('switchboard_max_active_calls');
    expect(rule?.expr.replace(/0\.9/g, '')).not.toMatch(/\d{2,}/);
    const dashboard = read('deploy/helm/switchboard/files/switchboard-dashboard.json');
    const capacityExprs = [...dashboard.matchAll(/"expr": "([^"\\]*(?:\\.[^"\\]*)*)"/g)].map((m) => m[1]!).filter((e) => e.includes('max_active_calls'));
    expect(capacityExprs.length).toBeGreaterThanOrEqual(2);
    expect(dashboard).not.toContain('capacity_per_pod');
    for (const e of capacityExprs) expect(e).not.toMatch(/\b\d{2,}\b/);
  });
});
