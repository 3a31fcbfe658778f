/**
 * What an SRE finds when installing the chart from its docs alone: the Gateway-only install gets its
 * PUBLIC_URL, KEDA treats an empty query as an error, NetworkPolicy peers fit Gateway setups and the
 * in-cluster load test, nothing is generated under GitOps, and the NOTES say what to check.
 */
/* Rendered YAML is untyped data read by path; the schemas are checked by validateObject. */
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureK8sTools } from '../../scripts/k8s-tools.js';
import { CHART, helmTemplate, only, run, STREAM_KEY, validateObject, type K8sObject } from './k8s-objects.js';

const PROD = join(CHART, 'values-production.yaml');
const GATEWAY_ONLY = [
  '-f', PROD, '--set', 'config.publicUrl=', '--set', 'ingress.enabled=false', '--set', 'ingress.host=',
  '--set', 'gateway.enabled=true', '--set', 'gateway.parentRefs[0].name=public', '--set', 'gateway.parentRefs[0].namespace=gateway-system',
  '--set', 'gateway.hostnames[0]=calls.example.org',
];

const dir = mkdtempSync(join(tmpdir(), 'sb-ops-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

let helm: string;
beforeAll(() => {
  helm = ensureK8sTools().helm;
});

/** `helm install --dry-run`: rendered manifests and NOTES, or the error. */
async function notes(args: readonly string[]): Promise<string> {
  const r = await run(helm, ['install', 'sb', CHART, '-n', 'voice', '--dry-run', ...args]);
  if (r.code !== 0) throw new Error(`helm install --dry-run failed:\n${r.stderr}`);
  const at = r.stdout.indexOf('NOTES:');
  expect(at).toBeGreaterThan(0);
  return r.stdout.slice(at);
}
async function refused(args: readonly string[]): Promise<string> {
  const r = await run(helm, ['template', 'sb', CHART, ...args]);
  expect(r.code, r.stdout.slice(0, 200)).not.toBe(0);
  return r.stderr;
}
const configEnv = (objects: K8sObject[]) => only(objects, 'ConfigMap', 'sb-switchboard').data as Record<string, string>;

describe('PUBLIC_URL', () => {
  it('a Gateway-only install takes it from the route hostname, and the NOTES show the absolute webhook URL', async () => {
    const objects = await helmTemplate(helm, GATEWAY_ONLY);
    for (const o of objects) validateObject(o);
    expect(configEnv(objects).PUBLIC_URL).toBe('https://calls.example.org');
    const text = await notes(GATEWAY_ONLY);
    expect(text).toContain('  https://calls.example.org/twilio/voice\n');
    expect(text).toContain('  https://calls.example.org/twilio/status\n');
  });

  it('a Gateway route without hostnames uses ingress.host', async () => {
    const objects = await helmTemplate(helm, [...GATEWAY_ONLY, '--set', 'gateway.hostnames=null', '--set', 'ingress.host=voice.example.net']);
    expect(configEnv(objects).PUBLIC_URL).toBe('https://voice.example.net');
    expect(only(objects, 'HTTPRoute').spec.hostnames).toEqual(['voice.example.net']);
  });

  it('refuses a wildcard hostname without config.publicUrl', async () => {
    expect(await refused([...GATEWAY_ONLY, '--set', 'gateway.hostnames[0]=*.example.org'])).toMatch(
      /gateway\.hostnames\[0\] \(\*\.example\.org\) is a wildcard: set config\.publicUrl/,
    );
    const objects = await helmTemplate(helm, [...GATEWAY_ONLY, '--set', 'gateway.hostnames[0]=*.example.org', '--set', 'config.publicUrl=https://a.example.org/']);
    expect(configEnv(objects).PUBLIC_URL).toBe('https://a.example.org');
  });

  it('an ingress install still uses ingress.host; an explicit publicUrl wins', async () => {
    const [ing, prod] = await Promise.all([
      helmTemplate(helm, ['-f', PROD, '--set', 'config.publicUrl=']),
      helmTemplate(helm, ['-f', PROD]),
    ]);
    expect(configEnv(ing).PUBLIC_URL).toBe('https://voice.example.com');
    expect(configEnv(prod).PUBLIC_URL).toBe('https://voice.example.com');
    expect(await notes(['-f', PROD])).toContain('  https://voice.example.com/twilio/voice\n');
  });
});

describe('KEDA and the scrape cannot fail quietly', () => {
  const KEDA = ['--set', 'keda.enabled=true', '--set', 'redis.enabled=true', '--set', 'redis.auth.password=test-redis-password-0123456789', ...STREAM_KEY];

  it('an empty query result is an error (so fallback fires), not zero calls', async () => {
    const trigger = only(await helmTemplate(helm, KEDA), 'ScaledObject').spec.triggers[0];
    expect(trigger.metadata.ignoreNullValues).toBe('false');
  });

  it('NOTES warn when the ServiceMonitor or PrometheusRule carries no labels for the Prometheus selector', async () => {
    const bare = await notes([...KEDA, '--set', 'prometheusRule.enabled=true']);
    expect(bare).toMatch(/WARNING: serviceMonitor\.labels is empty/);
    expect(bare).toMatch(/WARNING: prometheusRule\.labels is empty/);
    expect(bare).toContain('release: <your Prometheus release>');
    const labelled = await notes([...KEDA, '--set', 'serviceMonitor.labels.release=kube-prometheus-stack']);
    expect(labelled).not.toContain('WARNING: serviceMonitor.labels');
    expect(await notes(['-f', PROD])).not.toContain('WARNING');
  });

  it('NOTES say an inactive ScaledObject with no calls is normal', async () => {
    expect(await notes(KEDA)).toMatch(/ACTIVE is False\s+while no call is up: that is normal/);
  });
});

describe('NetworkPolicy peers for Gateway setups', () => {
  const GATEWAY = ['-f', PROD, '--set', 'ingress.enabled=false', '--set', 'gateway.enabled=true', '--set', 'gateway.parentRefs[0].name=public'];

  it('takes ipBlock peers (cloud load balancers sending straight to pod IPs) and Envoy Gateway selectors', async () => {
    const values = file('lb-peers.yaml', [
      'networkPolicy:',
      '  ingressFrom:',
      '    - ipBlock: { cidr: 35.191.0.0/16 }',
      '    - ipBlock: { cidr: 130.211.0.0/22 }',
      '    - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: envoy-gateway-system } }',
      '      podSelector: { matchLabels: { app.kubernetes.io/managed-by: envoy-gateway, app.kubernetes.io/component: proxy } }',
    ].join('\n'));
    const objects = await helmTemplate(helm, [...GATEWAY, '-f', values]);
    const np = only(objects, 'NetworkPolicy', 'sb-switchboard');
    validateObject(np);
    expect(np.spec.ingress[0].from.slice(0, 2)).toEqual([{ ipBlock: { cidr: '35.191.0.0/16' } }, { ipBlock: { cidr: '130.211.0.0/22' } }]);
    expect(await notes([...GATEWAY, '-f', values])).not.toContain('WARNING');
  });

  it('the schema rejects a peer that is not a NetworkPolicyPeer (a typo would admit nothing)', async () => {
    expect(await refused(['--set', 'networkPolicy.ingressFrom[0].ipblock.cidr=10.0.0.0/8'])).toMatch(/ingressFrom\/0.*additional properties 'ipblock' not allowed/);
    expect(await refused(['--set', 'networkPolicy.ingressFrom[0].ipBlock.except[0]=10.1.0.0/16'])).toMatch(/ingressFrom\/0\/ipBlock.*missing propert(y|ies) 'cidr'/);
  });

  it('NOTES warn when a Gateway is on but the policy still admits only ingress-nginx', async () => {
    expect(await notes(GATEWAY)).toMatch(/WARNING: gateway\.enabled, but networkPolicy\.ingressFrom still admits ingress-nginx/);
    expect(await notes(['-f', PROD])).not.toMatch(/WARNING: gateway/);
  });
});
