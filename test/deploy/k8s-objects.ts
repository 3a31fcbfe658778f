/**
 * Test helpers for deploy/: run the extracted helm and kubectl, split multi-document YAML, and
 * validate each object with the kubernetes-models schema for its apiVersion and kind.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';

/** A rendered Kubernetes object, loosely typed: tests read fields by path. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [key: string]: any;
}

type Validatable = { validate(): void };

/**
 * No Gateway API models in this project's dependencies: the HTTPRoute fields the chart renders,
 * checked against the Gateway API v1 CRD's rules (required fields, enums, the Duration pattern,
 * backendRequest within request).
 */
class HTTPRouteShape implements Validatable {
  constructor(private readonly o: K8sObject) {}
  validate(): void {
    const fail = (what: string) => {
      throw new Error(`HTTPRoute: ${what}`);
    };
    const duration = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
    const seconds = (d: string) => [...d.matchAll(/(\d+)(h|ms|m|s)/g)].reduce((t, [, n, u]) => t + Number(n) * { h: 3600, m: 60, s: 1, ms: 0.001 }[u as 'h'], 0);
    interface Rule {
      matches?: { path?: { type?: string; value?: string } }[];
      backendRefs?: { name?: string; port?: number }[];
      timeouts?: { request?: string; backendRequest?: string };
    }
    const spec = this.o.spec as { parentRefs?: { name?: string }[]; hostnames?: string[]; rules?: Rule[] } | undefined;
    if (!spec) fail('spec is required');
    if (!Array.isArray(spec?.parentRefs) || spec.parentRefs.length === 0 || spec.parentRefs.length > 32) fail('spec.parentRefs: 1-32 entries');
    for (const p of spec?.parentRefs ?? []) if (typeof p.name !== 'string' || p.name === '') fail('parentRefs[].name is required');
    for (const h of spec?.hostnames ?? []) if (!/^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(h)) fail(`hostname ${h}`);
    if (!Array.isArray(spec?.rules) || spec.rules.length > 16) fail('spec.rules: at most 16');
    for (const r of spec?.rules ?? []) {
      for (const m of r.matches ?? []) {
        if (!['Exact', 'PathPrefix', 'RegularExpression'].includes(m.path?.type ?? '')) fail(`path type ${m.path?.type}`);
        if (typeof m.path?.value !== 'string' || !m.path.value.startsWith('/')) fail(`path value ${m.path?.value}`);
      }
      for (const b of r.backendRefs ?? []) {
        if (typeof b.name !== 'string' || b.name === '') fail('backendRefs[].name is required');
        if (b.port === undefined || !Number.isInteger(b.port) || b.port < 1 || b.port > 65535) fail(`backendRefs[].port ${b.port}`);
      }
      const t = r.timeouts;
      for (const d of [t?.request, t?.backendRequest]) if (d !== undefined && !duration.test(d)) fail(`timeout ${d} is not a Gateway API Duration`);
      if (t?.request && t.backendRequest && seconds(t.backendRequest) > seconds(t.request) && seconds(t.request) !== 0) fail('backendRequest exceeds request');
    }
  }
}
const MODELS: Record<string, new (data: never) => Validatable> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Namespace': Namespace,
  'v1/Pod': Pod,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'batch/v1/Job': Job,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'gateway.networking.k8s.io/v1/HTTPRoute': HTTPRouteShape,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/** Validate one object against its schema; throws naming the object when the kind is unknown or invalid. */
export function validateObject(obj: K8sObject): void {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const Model = MODELS[key];
  if (!Model) throw new Error(`no kubernetes-models schema registered for ${key} (${obj.metadata.name})`);
  try {
    new Model(obj as never).validate();
  } catch (err) {
    throw new Error(`${key} ${obj.metadata.name} is invalid: ${String(err)}`, { cause: err });
  }
}

/** Parse a multi-document YAML stream, dropping empty documents; throws on YAML errors. */
export function parseObjects(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as K8sObject | null;
    if (value !== null) out.push(value);
  }
  return out;
}

/** Find exactly one object by kind (and name suffix); throws listing what exists otherwise. */
export function singleOfKind(objects: readonly K8sObject[], kind: string, nameEndsWith = ''): K8sObject {
  const hits = objects.filter((o) => o.kind === kind && o.metadata.name.endsWith(nameEndsWith));
  if (hits.length !== 1) {
    throw new Error(`expected one ${kind} named *${nameEndsWith}, found ${hits.length} in: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  }
  return hits[0] as K8sObject;
}

export const CHART = resolve(import.meta.dirname, '../../deploy/helm/switchboard');

/** `helm template sb <chart> --namespace voice <args>`: the objects, or a thrown helm error. */
export async function helmTemplate(helm: string, args: readonly string[]): Promise<K8sObject[]> {
  const r = await run(helm, ['template', 'sb', CHART, '--namespace', 'voice', ...args]);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')} failed:\n${r.stderr}`);
  return parseObjects(r.stdout);
}

/** Outside the one-pod trial the chart demands an explicit stream-token key. */
export const STREAM_KEY = ['--set', 'secrets.streamTokenSecret=test-stream-token-secret-0123456789abcdef'];

/** The built-in Redis outside the trial: its password must be given (nothing generated under GitOps). */
export const BUILTIN_REDIS = ['--set', 'redis.enabled=true', '--set', 'redis.auth.password=test-redis-password-0123456789'];

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const execFileP = promisify(execFile);

/** Run a binary and collect its output; a non-zero exit is returned, not thrown. */
export async function run(bin: string, args: readonly string[], cwd?: string): Promise<RunResult> {
  try {
    const { stdout, stderr } = await execFileP(bin, args, { cwd, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}
