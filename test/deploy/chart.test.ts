/**
 * The Helm chart: helm lint and helm template with default and production values, every rendered
 * object validated with kubernetes-models, the drain/probe/security/autoscaling settings that matter
 * asserted, and bad values rejected with a readable message. helm runs once per values set.
 */
/* Rendered YAML is untyped data read by path; the schemas were checked by validateObject above. */
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-argument */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ensureK8sTools } from '../../scripts/k8s-tools.js';
import { BUILTIN_REDIS, CHART, helmTemplate, singleOfKind, run, STREAM_KEY, validateObject, type K8sObject, type RunResult } from './k8s-objects.js';

const PROD = join(CHART, 'values-production.yaml');
interface Values {
  drain: { timeoutSeconds: number; migrateTimeoutSeconds: number; preStopSleepSeconds: number; terminationMarginSeconds: number };
  autoscaling: { minReplicas: number; maxReplicas: number; targetActiveCallsPerPod: number; behavior: unknown };
  ingress: { websocketTimeoutSeconds: number };
}
const defaults = parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Values;
const production = parseYaml(readFileSync(PROD, 'utf8')) as Values;
const appVersion = (parseYaml(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string }).appVersion;

let helm: string;
const rendered: Record<'defaults' | 'production' | 'keda' | 'shortDrain', K8sObject[]> = {
  defaults: [],
  production: [],
  keda: [],
  shortDrain: [],
};
const lint: Record<'defaults' | 'production', RunResult | undefined> = { defaults: undefined, production: undefined };

const template = (args: string[]) => helmTemplate(helm, args);

beforeAll(async () => {
  helm = ensureK8sTools().helm;
  const [ld, lp, d, p, k, s] = await Promise.all([
    run(helm, ['lint', CHART, '--strict']),
    run(helm, ['lint', CHART, '--strict', '-f', PROD]),
    template([]),
    template(['-f', PROD]),
    template(['--set', 'keda.enabled=true', ...BUILTIN_REDIS, '--set', 'redis.persistence.enabled=true', '--set', 'config.transcriptionModel=my-transcribe', ...STREAM_KEY]),
    template(['--set', 'drain.timeoutSeconds=600', '--set', 'config.maxCallSeconds=600', '--set', 'drain.preStopSleepSeconds=5', '--set', 'drain.terminationMarginSeconds=20']),
  ]);
  Object.assign(lint, { defaults: ld, production: lp });
  Object.assign(rendered, { defaults: d, production: p, keda: k, shortDrain: s });
});

function relay(objects: K8sObject[]): K8sObject {
  return singleOfKind(objects, 'Deployment');
}
function container(objects: K8sObject[]): K8sObject {
  return relay(objects).spec.template.spec.containers[0] as K8sObject;
}

describe('helm lint', () => {
  it.each(['defaults', 'production'] as const)('passes with %s values', (which) => {
    const r = lint[which];
    expect(r?.stderr ?? '').not.toMatch(/\[ERROR\]/);
    expect(r?.stdout ?? '').toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(r?.code).toBe(0);
  });
});

describe('every rendered object is valid', () => {
  it.each(['defaults', 'production', 'keda', 'shortDrain'] as const)('%s', (which) => {
    const objects = rendered[which];
    expect(objects.length).toBeGreaterThan(4);
    for (const o of objects) validateObject(o);
  });

  it('renders the expected kinds', () => {
    const kinds = (o: K8sObject[]) => [...new Set(o.map((x) => x.kind))].sort();
    // Pod: the `helm test` hook.
    expect(kinds(rendered.defaults)).toEqual(['ConfigMap', 'Deployment', 'Pod', 'PodDisruptionBudget', 'Secret', 'Service', 'ServiceAccount']);
    expect(kinds(rendered.production)).toEqual([
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'Ingress',
      'NetworkPolicy',
      'Pod',
      'PodDisruptionBudget',
      'PrometheusRule',
      'Service',
      'ServiceAccount',
      'ServiceMonitor',
    ]);
    expect(kinds(rendered.keda)).toContain('ScaledObject');
    // Turning KEDA on turns the scrape of its metric on.
    expect(kinds(rendered.keda)).toContain('ServiceMonitor');
    expect(kinds(rendered.keda)).not.toContain('HorizontalPodAutoscaler');
    expect(kinds(rendered.keda)).toContain('StatefulSet');
  });
});

describe('drain', () => {
  it('derives terminationGracePeriodSeconds from preStop + drain timeout + margin', () => {
    const d = defaults.drain;
    const spec = relay(rendered.defaults).spec.template.spec;
    expect(spec.terminationGracePeriodSeconds).toBe(d.preStopSleepSeconds + d.timeoutSeconds + d.terminationMarginSeconds);
    expect(container(rendered.defaults).lifecycle.preStop.exec.command).toEqual(['sleep', String(d.preStopSleepSeconds)]);
    const env = singleOfKind(rendered.defaults, 'ConfigMap', 'sb-switchboard').data as Record<string, string>;
    expect(env.DRAIN_TIMEOUT_SECONDS).toBe(String(d.timeoutSeconds));
  });

  it('keeps the three in step when the drain timeout changes', () => {
    const spec = relay(rendered.shortDrain).spec.template.spec;
    expect(spec.terminationGracePeriodSeconds).toBe(5 + 600 + 20);
    expect(spec.containers[0].lifecycle.preStop.exec.command).toEqual(['sleep', '5']);
    expect(singleOfKind(rendered.shortDrain, 'ConfigMap', 'sb-switchboard').data.DRAIN_TIMEOUT_SECONDS).toBe('600');
  });

  it('migrate mode (production, Redis): DRAIN_MODE migrate and a grace of about two minutes', () => {
    const d = defaults.drain;
    const spec = relay(rendered.production).spec.template.spec;
    const env = singleOfKind(rendered.production, 'ConfigMap', 'sb-switchboard').data as Record<string, string>;
    expect(env.DRAIN_MODE).toBe('migrate');
    expect(env.DRAIN_TIMEOUT_SECONDS).toBe(String(d.migrateTimeoutSeconds));
    expect(spec.terminationGracePeriodSeconds).toBe(d.preStopSleepSeconds + d.migrateTimeoutSeconds + d.terminationMarginSeconds);
    expect(spec.terminationGracePeriodSeconds).toBeLessThanOrEqual(120);
    // The trial (no Redis) waits for its calls, with the hour-long grace.
    expect((singleOfKind(rendered.defaults, 'ConfigMap', 'sb-switchboard').data as Record<string, string>).DRAIN_MODE).toBe('wait');
  });

  it('rolls out surge-first so drained capacity is replaced before it leaves', () => {
    expect(relay(rendered.production).spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
  });
});

describe('relay pod', () => {
  it('probes /healthz for liveness and start-up and /readyz for readiness on the http port', () => {
    const c = container(rendered.defaults);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(c.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(c.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
  });

  it('runs non-root on a read-only root with no capabilities and no API token', () => {
    const spec = relay(rendered.production).spec.template.spec;
    const c = spec.containers[0];
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(singleOfKind(rendered.production, 'ServiceAccount').automountServiceAccountToken).toBe(false);
    expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } });
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const tmp = spec.volumes.find((v: K8sObject) => v.name === 'tmp');
    expect(tmp.emptyDir.medium).toBe('Memory');
    expect(c.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
  });

  it('uses the chart appVersion as the default image tag and never allows the uWS fallback', () => {
    expect(container(rendered.defaults).image).toBe(`ghcr.io/switchboard/switchboard:${appVersion}`);
    for (const which of ['defaults', 'production', 'keda'] as const) {
      expect(JSON.stringify(rendered[which])).not.toContain('UWS_ALLOW_FALLBACK');
    }
  });

  it('sets a request but no CPU limit, and spreads pods over zones and nodes', () => {
    const c = container(rendered.defaults);
    expect(c.resources.requests.cpu).toBeDefined();
    expect(c.resources.limits.cpu).toBeUndefined();
    const keys = relay(rendered.defaults).spec.template.spec.topologySpreadConstraints.map((t: K8sObject) => t.topologyKey);
    expect(keys).toEqual(['topology.kubernetes.io/zone', 'kubernetes.io/hostname']);
  });

  it('generates one shared stream-token key when none is given', () => {
    const secret = singleOfKind(rendered.defaults, 'Secret');
    expect(String(secret.stringData.STREAM_TOKEN_SECRET).length).toBeGreaterThanOrEqual(32);
    const c = container(rendered.defaults);
    expect(c.envFrom).toContainEqual({ secretRef: { name: 'sb-switchboard' } });
  });

  it('takes secrets, Redis, tenants and Twilio tokens from existing objects in production', () => {
    const c = container(rendered.production);
    const spec = relay(rendered.production).spec.template.spec;
    expect(c.envFrom).toContainEqual({ secretRef: { name: 'switchboard-secrets' } });
    expect(c.env).toContainEqual({ name: 'REDIS_URL', valueFrom: { secretKeyRef: { name: 'switchboard-secrets', key: 'REDIS_URL' } } });
    expect(c.env).toContainEqual({ name: 'REDIS_PASSWORD', valueFrom: { secretKeyRef: { name: 'switchboard-secrets', key: 'REDIS_PASSWORD' } } });
    expect(spec.volumes).toContainEqual(expect.objectContaining({ name: 'tenants', configMap: expect.objectContaining({ name: 'switchboard-tenants' }) }));
    expect(spec.volumes).toContainEqual(expect.objectContaining({ name: 'twilio-tokens', secret: expect.objectContaining({ secretName: 'switchboard-twilio-tokens' }) }));
    const env = singleOfKind(rendered.production, 'ConfigMap', 'sb-switchboard').data as Record<string, string>;
    expect(env.TENANTS_FILE).toBe('/etc/switchboard/tenants/tenants.yaml');
    expect(env.PUBLIC_URL).toBe('https://voice.example.com');
    // The HPA owns the replica count.
    expect(relay(rendered.production).spec.replicas).toBeUndefined();
  });
});

describe('autoscaling', () => {
  it('scales on switchboard_active_calls per pod with the target from values', () => {
    const hpa = singleOfKind(rendered.production, 'HorizontalPodAutoscaler').spec;
    expect(hpa.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'sb-switchboard' });
    expect(hpa.metrics).toEqual([
      {
        type: 'Pods',
        pods: {
          metric: { name: 'switchboard_active_calls' },
          target: { type: 'AverageValue', averageValue: String(production.autoscaling.targetActiveCallsPerPod) },
        },
      },
    ]);
    expect(hpa.minReplicas).toBe(production.autoscaling.minReplicas);
    expect(hpa.maxReplicas).toBe(production.autoscaling.maxReplicas);
  });

  it('scales up at once and down slowly', () => {
    const behavior = singleOfKind(rendered.production, 'HorizontalPodAutoscaler').spec.behavior;
    expect(behavior).toEqual(defaults.autoscaling.behavior);
    expect(behavior.scaleUp.stabilizationWindowSeconds).toBe(0);
    expect(behavior.scaleDown.stabilizationWindowSeconds).toBeGreaterThanOrEqual(900);
  });

  it('renders a KEDA prometheus trigger with the same target and behaviour instead', () => {
    const so = singleOfKind(rendered.keda, 'ScaledObject').spec;
    expect(so.minReplicaCount).toBe(defaults.autoscaling.minReplicas);
    expect(so.maxReplicaCount).toBe(defaults.autoscaling.maxReplicas);
    // cooldownPeriod only applies to scaling to zero: not rendered. Prometheus down: hold max.
    expect(so.cooldownPeriod).toBeUndefined();
    expect(so.fallback).toEqual({ failureThreshold: 3, replicas: defaults.autoscaling.maxReplicas });
    expect(so.advanced.horizontalPodAutoscalerConfig.behavior).toEqual(defaults.autoscaling.behavior);
    const trigger = so.triggers[0];
    expect(trigger.type).toBe('prometheus');
    expect(trigger.metricType).toBe('AverageValue');
    expect(trigger.metadata.threshold).toBe(String(defaults.autoscaling.targetActiveCallsPerPod));
    // Draining (terminating) pods are not capacity: their calls are left out.
    const safe = '[bcdfghjklmnpqrstvwxz2456789]';
    const sel = `namespace="voice",pod=~"sb-switchboard-${safe}{1,10}-${safe}{5}"`;
    expect(trigger.metadata.query).toBe(`sum(switchboard_active_calls{${sel}} unless on(namespace, pod) kube_pod_deletion_timestamp{${sel}})`);
  });

  it('passes the transcription model (an Azure deployment name) only when one is set', () => {
    const env = (objects: K8sObject[]) => singleOfKind(objects, 'ConfigMap', 'sb-switchboard').data as Record<string, string>;
    expect(env(rendered.keda).REALTIME_TRANSCRIPTION_MODEL).toBe('my-transcribe');
    expect(env(rendered.defaults).REALTIME_TRANSCRIPTION_MODEL).toBeUndefined();
  });

  it('points the relay at the built-in Redis when it is enabled', () => {
    const env = singleOfKind(rendered.keda, 'ConfigMap', 'sb-switchboard').data as Record<string, string>;
    expect(env.REDIS_URL).toBe('redis://sb-switchboard-redis:6379');
    expect(env.REDIS_URL).not.toContain('@');
    expect(singleOfKind(rendered.keda, 'Service', '-redis').spec.ports[0].port).toBe(6379);
    expect(singleOfKind(rendered.keda, 'StatefulSet').spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('1Gi');
  });
});

describe('traffic and monitoring', () => {
  it('annotates the ingress for hour-long unbuffered WebSockets and exposes only /twilio', () => {
    const ing = singleOfKind(rendered.production, 'Ingress');
    const a = ing.metadata.annotations ?? {};
    expect(Number(a['nginx.ingress.kubernetes.io/proxy-read-timeout'])).toBeGreaterThanOrEqual(3600);
    expect(Number(a['nginx.ingress.kubernetes.io/proxy-send-timeout'])).toBeGreaterThanOrEqual(3600);
    expect(a['nginx.ingress.kubernetes.io/proxy-buffering']).toBe('off');
    expect(a['cert-manager.io/cluster-issuer']).toBe('letsencrypt');
    expect(ing.spec.tls).toEqual([{ hosts: ['voice.example.com'], secretName: 'switchboard-tls' }]);
    const paths = ing.spec.rules[0].http.paths.map((p: K8sObject) => p.path);
    expect(paths).toEqual(['/twilio']);
  });

  it('selects the relay pods from the Service, PDB and ServiceMonitor', () => {
    const podLabels = relay(rendered.production).spec.template.metadata.labels as Record<string, string>;
    const matches = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => podLabels[k] === v);
    const pdb = singleOfKind(rendered.production, 'PodDisruptionBudget').spec;
    expect(pdb.maxUnavailable).toBe(1);
    expect(matches(pdb.selector.matchLabels)).toBe(true);
    const svc = singleOfKind(rendered.production, 'Service');
    expect(matches(svc.spec.selector)).toBe(true);
    const sm = singleOfKind(rendered.production, 'ServiceMonitor').spec;
    expect(sm.endpoints).toEqual([{ port: 'http', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }]);
    expect(Object.entries(sm.selector.matchLabels).every(([k, v]) => svc.metadata.labels?.[k] === v)).toBe(true);
  });

  it('loads the alert rules and the dashboard from the chart files', () => {
    const rules = singleOfKind(rendered.production, 'PrometheusRule').spec.groups as { name: string; rules: { alert?: string; expr: string }[] }[];
    expect(rules.length).toBeGreaterThan(0);
    expect(rules.flatMap((g) => g.rules).every((r) => typeof r.expr === 'string' && r.expr.length > 0)).toBe(true);
    const dash = singleOfKind(rendered.production, 'ConfigMap', '-dashboard');
    expect(dash.metadata.labels?.grafana_dashboard).toBe('1');
    const json = JSON.parse(String(dash.data['switchboard-dashboard.json'])) as { panels?: unknown[] };
    expect(Array.isArray(json.panels)).toBe(true);
  });
});

describe('bad values are rejected', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-values-'));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const cases: [string, string[], RegExp][] = [
    ['HPA and KEDA both on', ['--set', 'autoscaling.enabled=true', '--set', 'keda.enabled=true', ...BUILTIN_REDIS], /keda\/enabled'?: value must be false/],
    ['a numeric image tag', ['-f', file('tag.yaml', 'image:\n  tag: 1.2\n')], /image\/tag'?: got number, want string/],
    ['a negative drain timeout', ['--set', 'drain.timeoutSeconds=-1'], /drain\/timeoutSeconds'?: minimum: got -1, want 0/],
    ['targetActiveCallsPerPod below 1', ['--set', 'autoscaling.targetActiveCallsPerPod=0'], /targetActiveCallsPerPod'?: minimum: got 0, want 1/],
    ['an unknown key', ['--set', 'replicas=3'], /additional properties 'replicas' not allowed/],
    ['a non-Redis URL', ['--set', 'redis.url=http://cache:6379'], /redis\/url/],
    ['a short websocket timeout', ['--set', 'ingress.websocketTimeoutSeconds=60'], /websocketTimeoutSeconds'?: minimum: got 60, want 3,?600/],
    ['autoscaling without shared Redis', ['--set', 'autoscaling.enabled=true'], /more than one replica needs shared state: set redis\.url/],
    ['KEDA without shared Redis', ['--set', 'keda.enabled=true'], /more than one replica needs shared state: set redis\.url/],
    ['a target above pod capacity', ['--set', 'autoscaling.enabled=true', ...BUILTIN_REDIS, '--set', 'autoscaling.targetActiveCallsPerPod=400'], /targetActiveCallsPerPod \(400\) is above autoscaling\.podCapacityCalls \(250\)/],
    ['an ingress without a host', ['--set', 'ingress.enabled=true'], /ingress\.enabled needs ingress\.host/],
    ['no secret at all', ['--set', 'secrets.create=false'], /set secrets\.existingSecret/],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    const r = await run(helm, ['template', 'sb', CHART, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });
});
