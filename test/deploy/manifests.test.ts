/**
 * Plain manifests and the image recipe: kubectl kustomize renders base, production overlay and the
 * k6 Job, every object validates, and they stay in step with the chart. (The Dockerfile: runtime.test.ts.)
 */
/* Rendered YAML is untyped data read by path; the schemas were checked by validateObject. */
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ensureK8sTools } from '../../scripts/k8s-tools.js';
import { CHART, helmTemplate, singleOfKind, parseObjects, run, validateObject, type K8sObject } from './k8s-objects.js';

const ROOT = resolve(import.meta.dirname, '../..');
const chartValues = parseYaml(readFileSync(join(ROOT, 'deploy/helm/switchboard/values.yaml'), 'utf8')) as {
  autoscaling: { behavior: unknown; targetActiveCallsPerPod: number };
  drain: { timeoutSeconds: number; migrateTimeoutSeconds: number; preStopSleepSeconds: number; terminationMarginSeconds: number };
};
const rendered: Record<'base' | 'production' | 'loadtest' | 'chart', K8sObject[]> = { base: [], production: [], loadtest: [], chart: [] };

beforeAll(async () => {
  const { kubectl, helm } = ensureK8sTools();
  const render = async (dir: string) => {
    const r = await run(kubectl, ['kustomize', join(ROOT, dir)]);
    if (r.code !== 0) throw new Error(`kubectl kustomize ${dir} failed:\n${r.stderr}`);
    return parseObjects(r.stdout);
  };
  const [b, p, l, c] = await Promise.all([
    render('deploy/k8s/base'),
    render('deploy/k8s/overlays/production'),
    render('deploy/k8s/loadtest'),
    helmTemplate(helm, ['-f', join(CHART, 'values-production.yaml')]),
  ]);
  Object.assign(rendered, { base: b, production: p, loadtest: l, chart: c });
});

describe('kustomize', () => {
  it.each(['base', 'production', 'loadtest'] as const)('%s renders valid objects', (which) => {
    expect(rendered[which].length).toBeGreaterThan(1);
    for (const o of rendered[which]) validateObject(o);
  });

  it('production puts everything in its namespace with the pinned image and a wider HPA', () => {
    const objs = rendered.production;
    for (const o of objs.filter((x) => x.kind !== 'Namespace')) expect(o.metadata.namespace).toBe('switchboard');
    const dep = singleOfKind(objs, 'Deployment');
    expect(dep.spec.template.spec.containers[0].image).toBe('ghcr.io/switchboard/switchboard:0.1.0');
    const hpa = singleOfKind(objs, 'HorizontalPodAutoscaler').spec;
    expect([hpa.minReplicas, hpa.maxReplicas]).toEqual([3, 40]);
    expect(singleOfKind(objs, 'ConfigMap').data.PUBLIC_URL).toBe('https://voice.example.com');
    const a = singleOfKind(objs, 'Ingress').metadata.annotations ?? {};
    expect(Number(a['nginx.ingress.kubernetes.io/proxy-read-timeout'])).toBeGreaterThanOrEqual(3600);
    expect(a['nginx.ingress.kubernetes.io/proxy-buffering']).toBe('off');
  });

  it('rolls the pods on a config change: the ConfigMap name carries a content hash the Deployment references', async () => {
    const cm = singleOfKind(rendered.production, 'ConfigMap', '').metadata.name;
    expect(cm).toMatch(/^switchboard-[a-z0-9]{10}$/);
    const envFrom = singleOfKind(rendered.production, 'Deployment').spec.template.spec.containers[0].envFrom as { configMapRef?: { name: string } }[];
    expect(envFrom.map((e) => e.configMapRef?.name).filter(Boolean)).toEqual([cm]);
    // An overlay changing one setting yields another name, so the pod template changes and pods roll.
    const dir = mkdtempSync(join(tmpdir(), 'sb-kust-'));
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      `resources: [${relative(dir, join(ROOT, 'deploy/k8s/overlays/production'))}]\nconfigMapGenerator:\n  - name: switchboard\n    behavior: merge\n    literals: [LOG_LEVEL=debug]\n`,
    );
    const r = await run(ensureK8sTools().kubectl, ['kustomize', dir]);
    expect(r.stderr).toBe('');
    const changed = parseObjects(r.stdout);
    const name = singleOfKind(changed, 'ConfigMap').metadata.name;
    expect(singleOfKind(changed, 'ConfigMap').data.LOG_LEVEL).toBe('debug');
    expect(name).toMatch(/^switchboard-[a-z0-9]{10}$/);
    expect(name).not.toBe(cm);
    expect(singleOfKind(changed, 'Deployment').spec.template.spec.containers[0].envFrom[0].configMapRef.name).toBe(name);
  });

  it('keeps grace period, preStop and DRAIN_TIMEOUT_SECONDS in step, as the chart does', () => {
    const dep = singleOfKind(rendered.production, 'Deployment');
    const spec = dep.spec.template.spec;
    const drain = Number(singleOfKind(rendered.production, 'ConfigMap').data.DRAIN_TIMEOUT_SECONDS);
    const sleep = Number(spec.containers[0].lifecycle.preStop.exec.command[1]);
    expect(spec.terminationGracePeriodSeconds).toBe(sleep + drain + chartValues.drain.terminationMarginSeconds);
    // Calls move to other pods on SIGTERM, as with the chart's production values.
    expect(singleOfKind(rendered.production, 'ConfigMap').data.DRAIN_MODE).toBe('migrate');
    expect(drain).toBe(chartValues.drain.migrateTimeoutSeconds);
    expect(sleep).toBe(chartValues.drain.preStopSleepSeconds);
  });

  it('production has the chart production NetworkPolicy (less the helm test rule)', () => {
    const kustomized = singleOfKind(rendered.production, 'NetworkPolicy').spec;
    const chart = singleOfKind(rendered.chart, 'NetworkPolicy').spec;
    const notHelmTest = (r: K8sObject) => !JSON.stringify(r.from).includes('helm-test');
    expect(kustomized.ingress).toEqual(chart.ingress.filter(notHelmTest));
    expect(kustomized.egress).toEqual(chart.egress);
    expect(kustomized.policyTypes).toEqual(['Ingress', 'Egress']);
    const podLabels = singleOfKind(rendered.production, 'Deployment').spec.template.metadata.labels as Record<string, string>;
    expect(Object.entries(kustomized.podSelector.matchLabels).every(([k, v]) => podLabels[k] === v)).toBe(true);
  });

  it('keeps node autoscalers off live calls and restarts a dead relay promptly, as the chart does', () => {
    const kustomized = singleOfKind(rendered.production, 'Deployment').spec.template;
    const chart = singleOfKind(rendered.chart, 'Deployment').spec.template;
    for (const key of ['cluster-autoscaler.kubernetes.io/safe-to-evict', 'karpenter.sh/do-not-disrupt']) {
      expect(kustomized.metadata.annotations[key], key).toBe(chart.metadata.annotations[key]);
    }
    expect(kustomized.spec.containers[0].livenessProbe.terminationGracePeriodSeconds).toBe(chart.spec.containers[0].livenessProbe.terminationGracePeriodSeconds);
  });

  it('uses the chart HPA metric, target and behaviour', () => {
    const hpa = singleOfKind(rendered.base, 'HorizontalPodAutoscaler').spec;
    expect(hpa.metrics[0].pods.metric.name).toBe('switchboard_active_calls');
    expect(hpa.metrics[0].pods.target).toEqual({ type: 'AverageValue', averageValue: String(chartValues.autoscaling.targetActiveCallsPerPod) });
    expect(hpa.behavior).toEqual(chartValues.autoscaling.behavior);
  });

  it('runs the k6 call storm from the loadtest ConfigMaps with every -e variable defined', () => {
    const job = singleOfKind(rendered.loadtest, 'Job');
    const c = job.spec.template.spec.containers[0];
    const args = c.args as string[];
    expect(args[0]).toBe('run');
    const params = singleOfKind(rendered.loadtest, 'ConfigMap').data as Record<string, string>;
    const defined = new Set([...Object.keys(params), ...(c.env as { name: string }[]).map((e) => e.name)]);
    const vars = args.flatMap((a, i) => (args[i - 1] === '-e' ? [a] : []));
    expect(vars.length).toBeGreaterThanOrEqual(4);
    for (const v of vars) {
      const m = /^([A-Z_]+)=\$\(([A-Z_]+)\)$/.exec(v);
      expect(m, v).not.toBeNull();
      expect(defined.has(m?.[2] ?? '')).toBe(true);
    }
    expect(job.spec.backoffLimit).toBe(0);
  });

  it('mounts every file call-storm.js loads where its relative imports look for it, from the ConfigMaps the READMEs create', () => {
    const spec = singleOfKind(rendered.loadtest, 'Job').spec.template.spec;
    const c = spec.containers[0];
    // ConfigMap name -> the repo folder it is made from (`--from-file=DIR/`: the folder's own files).
    const created = (readme: string): Map<string, string> =>
      new Map(
        [...readFileSync(join(ROOT, readme), 'utf8').matchAll(/create configmap (switchboard-loadtest-\S+) --from-file=(\S+?)\/?\s/g)].map((m) => [m[1]!, m[2]!]),
      );
    const folders = created('deploy/README.md');
    expect([...created('loadtest/README.md')]).toEqual([...folders]);
    const configMapOf = new Map((spec.volumes as { name: string; configMap?: { name: string } }[]).map((v) => [v.name, v.configMap?.name]));
    // Repo folder -> where the Job mounts it.
    const mountOf = new Map<string, string>();
    for (const m of c.volumeMounts as { name: string; mountPath: string }[]) {
      const cm = configMapOf.get(m.name);
      if (cm === undefined) continue;
      expect(folders.has(cm), `ConfigMap ${cm} is created in deploy/README.md`).toBe(true);
      mountOf.set(folders.get(cm)!, m.mountPath);
    }
    const inContainer = (file: string): string => {
      const at = mountOf.get(posix.dirname(file));
      expect(at, `${file}: its folder is mounted`).toBeDefined();
      return posix.join(at ?? '/missing', posix.basename(file));
    };
    const entry = 'loadtest/call-storm.js';
    expect((c.args as string[]).at(-1)).toBe(inContainer(entry));
    const seen = new Set<string>();
    const queue = [entry];
    for (let i = 0; i < queue.length && i < 100; i++) {
      const file = queue[i]!;
      const text = readFileSync(join(ROOT, file), 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"](\.[^'"]+)['"]/gm)) {
        const target = posix.join(posix.dirname(file), m[1]!);
        expect(existsSync(join(ROOT, target)), `${file} imports ${m[1]}`).toBe(true);
        expect(posix.resolve(posix.dirname(inContainer(file)), m[1]!), `${file} imports ${m[1]}`).toBe(inContainer(target));
        if (!seen.has(target)) queue.push(target);
        seen.add(target);
      }
    }
    // The scripts load the shared caller from src/sim/portable (plain JS k6 runs as it is).
    expect([...seen].filter((f) => f.startsWith('src/')).sort()).toEqual([
      'src/sim/portable/audio.js',
      'src/sim/portable/caller-core.js',
      'src/sim/portable/caller-report.js',
      'src/sim/portable/caller-stream.js',
      'src/sim/portable/twilio-http.js',
    ]);
  });
});
