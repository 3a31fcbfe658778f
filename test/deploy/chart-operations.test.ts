/**
 * What an SRE finds when installing the chart from its docs alone: the Gateway-only install gets its
 * PUBLIC_URL, KEDA treats an empty query as an error, NetworkPolicy peers fit Gateway setups and the
 * in-cluster load test, nothing is generated under GitOps, and the NOTES say what to check.
 */
/* Rendered YAML is untyped data read by path; the schemas are checked by validateObject. */
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-argument */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ensureK8sTools } from '../../scripts/k8s-tools.js';
import { BUILTIN_REDIS, CHART, helmTemplate, singleOfKind, parseObjects, run, STREAM_KEY, validateObject, type K8sObject } from './k8s-objects.js';

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
const configEnv = (objects: K8sObject[]) => singleOfKind(objects, 'ConfigMap', 'sb-switchboard').data as Record<string, string>;

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
    expect(singleOfKind(objects, 'HTTPRoute').spec.hostnames).toEqual(['voice.example.net']);
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
  const KEDA = ['--set', 'keda.enabled=true', ...BUILTIN_REDIS, ...STREAM_KEY];

  it('an empty query result is an error (so fallback fires), not zero calls', async () => {
    const trigger = singleOfKind(await helmTemplate(helm, KEDA), 'ScaledObject').spec.triggers[0];
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
    const np = singleOfKind(objects, 'NetworkPolicy', 'sb-switchboard');
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

describe('built-in Redis password under GitOps', () => {
  const SCALED = ['--set', 'autoscaling.enabled=true', '--set', 'redis.enabled=true', ...STREAM_KEY];

  it('refuses to generate one outside the trial (helm template would mint a new one on every render)', async () => {
    expect(await refused(SCALED)).toMatch(/redis\.auth\.password is empty: outside the one-pod trial give it .* or redis\.auth\.existingSecret/);
  });

  it('still generates one for the trial, kept across upgrades by lookup', async () => {
    const objects = await helmTemplate(helm, ['--set', 'redis.enabled=true']);
    expect(String(singleOfKind(objects, 'Secret', '-redis').stringData.REDIS_PASSWORD)).toMatch(/^[A-Za-z0-9]{40}$/);
  });

  it('rolls the relay pods and Redis when the given password changes', async () => {
    const [a, b] = await Promise.all([
      helmTemplate(helm, [...SCALED, '--set', 'redis.auth.password=first-redis-password-0123456789']),
      helmTemplate(helm, [...SCALED, '--set', 'redis.auth.password=second-redis-password-0123456789']),
    ]);
    const relay = (o: K8sObject[]) => singleOfKind(o, 'Deployment').spec.template.metadata.annotations['checksum/secrets'];
    const redis = (o: K8sObject[]) => singleOfKind(o, 'StatefulSet').spec.template.metadata.annotations['checksum/password'];
    expect(singleOfKind(a, 'Secret', '-redis').stringData.REDIS_PASSWORD).toBe('first-redis-password-0123456789');
    expect(relay(a)).not.toBe(relay(b));
    expect(redis(a)).not.toBe(redis(b));
  });
});

describe('the in-cluster load test behind the production NetworkPolicy', () => {
  const kustomize = async (dir: string) => {
    const r = await run(ensureK8sTools().kubectl, ['kustomize', join(CHART, '../../k8s', dir)]);
    if (r.code !== 0) throw new Error(r.stderr);
    return parseObjects(r.stdout);
  };
  const admits = (policy: K8sObject, podLabels: Record<string, string>) =>
    policy.spec.ingress.some((rule: K8sObject) =>
      rule.from.some((peer: K8sObject) => !peer.namespaceSelector && !peer.ipBlock && Object.entries(peer.podSelector?.matchLabels ?? { x: 'none' }).every(([k, v]) => podLabels[k] === v)),
    );
  const selects = (policy: K8sObject, podLabels: Record<string, string>) =>
    Object.entries(policy.spec.podSelector.matchLabels as Record<string, string>).every(([k, v]) => podLabels[k] === v);

  it('chart: networkPolicy.allowLoadtest admits the k6 Job pods, off by default', async () => {
    const [job, off, on] = await Promise.all([
      kustomize('loadtest'),
      helmTemplate(helm, ['-f', PROD]),
      helmTemplate(helm, ['-f', PROD, '--set', 'networkPolicy.allowLoadtest=true']),
    ]);
    const k6Labels = singleOfKind(job, 'Job').spec.template.metadata.labels;
    expect(admits(singleOfKind(off, 'NetworkPolicy'), k6Labels)).toBe(false);
    const policy = singleOfKind(on, 'NetworkPolicy');
    validateObject(policy);
    expect(admits(policy, k6Labels)).toBe(true);
  });

  it('kustomize: the loadtest kustomization brings a policy that admits its Job to the production relay pods', async () => {
    const [job, production] = await Promise.all([kustomize('loadtest'), kustomize('overlays/production')]);
    const k6Labels = singleOfKind(job, 'Job').spec.template.metadata.labels;
    const relayLabels = singleOfKind(production, 'Deployment').spec.template.metadata.labels;
    expect(admits(singleOfKind(production, 'NetworkPolicy'), k6Labels)).toBe(false);
    const allow = singleOfKind(job, 'NetworkPolicy', 'switchboard-loadtest');
    validateObject(allow);
    expect(allow.metadata.namespace).toBe(singleOfKind(production, 'Deployment').metadata.namespace);
    expect(selects(allow, relayLabels)).toBe(true);
    expect(admits(allow, k6Labels)).toBe(true);
  });
});

describe('relay settings the chart passes and the refusals the relay would make at start', () => {
  const TENANTS = ['--set', 'tenants.existingConfigMap=my-tenants'];

  it('passes REALTIME_TRANSCRIPTION_MODEL and TENANTS_FILE_MODE', async () => {
    const objects = await helmTemplate(helm, [...TENANTS, '--set', 'config.transcriptionModel=my-transcribe', '--set', 'config.tenantsFileMode=reconcile']);
    expect(configEnv(objects)).toMatchObject({ REALTIME_TRANSCRIPTION_MODEL: 'my-transcribe', TENANTS_FILE_MODE: 'reconcile' });
    const plain = configEnv(await helmTemplate(helm, []));
    expect(plain.REALTIME_TRANSCRIPTION_MODEL).toBeUndefined();
    expect(plain.TENANTS_FILE_MODE).toBeUndefined();
  });

  it('refuses Azure without its endpoint and deployment, a reconcile without a file, an unknown mode', async () => {
    const azure = [...TENANTS, ...STREAM_KEY, '--set', 'config.modelProvider=azure'];
    expect(await refused(azure)).toMatch(/config\.modelProvider is azure: set config\.azureEndpoint .* and config\.azureDeployment/);
    expect(await refused([...azure, '--set', 'config.azureEndpoint=https://r.openai.azure.com'])).toMatch(/config\.modelProvider is azure/);
    const ok = await helmTemplate(helm, [...azure, '--set', 'config.azureEndpoint=https://r.openai.azure.com', '--set', 'config.azureDeployment=gpt-realtime']);
    expect(configEnv(ok)).toMatchObject({ MODEL_PROVIDER: 'azure', AZURE_OPENAI_ENDPOINT: 'https://r.openai.azure.com', AZURE_OPENAI_DEPLOYMENT: 'gpt-realtime' });
    expect(await refused(['--set', 'config.tenantsFileMode=reconcile'])).toMatch(/tenantsFileMode reconcile needs tenants\.registry or tenants\.existingConfigMap/);
    expect(await refused(['--set', 'config.tenantsFileMode=sync'])).toMatch(/tenantsFileMode/);
  });

  it('rolls the pods when the inline tenant registry changes', async () => {
    const registry = (id: string) => [
      '--set', `tenants.registry[0].id=${id}`, '--set', 'tenants.registry[0].phoneNumbers[0]=+15005550006',
      '--set', 'tenants.registry[0].twilio.accountSid=AC00000000000000000000000000000000',
    ];
    const [a, b] = await Promise.all([helmTemplate(helm, registry('acme')), helmTemplate(helm, registry('bright'))]);
    const sum = (o: K8sObject[]) => singleOfKind(o, 'Deployment').spec.template.metadata.annotations['checksum/tenants'];
    expect(sum(a)).toMatch(/^[0-9a-f]{64}$/);
    expect(sum(a)).not.toBe(sum(b));
  });
});

describe('HTTPRoute prerequisites', () => {
  it('NOTES name the Gateway, its allowedRoutes and the Accepted/ResolvedRefs check', async () => {
    const text = await notes(GATEWAY_ONLY);
    expect(text).toContain('Gateway gateway-system/public');
    expect(text).toMatch(/allowedRoutes\.namespaces/);
    expect(text).toContain(`kubectl -n voice get httproute sb-switchboard -o jsonpath='{range .status.parents[*].conditions[*]}{.type}={.status} {.reason}{"\\n"}{end}'`);
    expect(text).toMatch(/Accepted=True and ResolvedRefs=True/);
    expect(await notes(['-f', PROD])).not.toContain('httproute');
  });
});

describe('alert rules follow the release', () => {
  it('match the scrape job of this release (fullnameOverride too) and link runbooks under alerts.runbookBaseUrl', async () => {
    const rules = async (args: string[]) =>
      (singleOfKind(await helmTemplate(helm, ['--set', 'prometheusRule.enabled=true', ...args]), 'PrometheusRule').spec.groups as { rules: { alert?: string; expr: string; annotations: Record<string, string> }[] }[])
        .flatMap((g) => g.rules)
        .flatMap((r) => (r.alert ? [{ ...r, alert: r.alert }] : []));
    const [byDefault, custom] = await Promise.all([
      rules([]),
      rules(['--set', 'fullnameOverride=voice-relay', '--set', 'alerts.runbookBaseUrl=https://wiki.example.com/switchboard/runbooks']),
    ]);
    const jobs = (rs: typeof byDefault) => rs.flatMap((r) => [...r.expr.matchAll(/job\s*=~?\s*"([^"]*)"/g)].map((m) => m[1]));
    expect(jobs(byDefault).length).toBeGreaterThanOrEqual(2);
    expect(new Set(jobs(byDefault))).toEqual(new Set(['sb-switchboard']));
    expect(new Set(jobs(custom))).toEqual(new Set(['voice-relay']));
    expect(JSON.stringify(custom)).not.toContain('.*switchboard.*');
    const home = (parseYaml(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as { home: string }).home;
    for (const r of byDefault) expect(r.annotations.runbook_url).toBe(`${home}/blob/main/docs/observability.md#${r.alert.toLowerCase()}`);
    for (const r of custom) expect(r.annotations.runbook_url).toBe(`https://wiki.example.com/switchboard/runbooks#${r.alert.toLowerCase()}`);
  });
});

describe('NetworkPolicy edges', () => {
  it('HTTPS egress covers IPv6 too, without private, link-local or IPv4-mapped ranges', async () => {
    const np = singleOfKind(await helmTemplate(helm, ['-f', PROD]), 'NetworkPolicy');
    const https = np.spec.egress.find((r: K8sObject) => r.ports.some((p: K8sObject) => p.port === 443));
    expect(https.to).toContainEqual({ ipBlock: { cidr: '::/0', except: ['fc00::/7', 'fe80::/10', '::1/128', '::ffff:0:0/96'] } });
    // AWS's IPv6 instance metadata address lies in an excluded range.
    expect(https.to[1].ipBlock.except).toContain('fc00::/7');
  });

  it('refuses a LoadBalancer or NodePort Service behind the policy unless an ipBlock admits its sources', async () => {
    for (const type of ['LoadBalancer', 'NodePort']) {
      expect(await refused(['-f', PROD, '--set', `service.type=${type}`])).toMatch(
        new RegExp(`service\\.type ${type} with networkPolicy\\.enabled: .*ipBlock`),
      );
    }
    const ok = await helmTemplate(helm, ['-f', PROD, '--set', 'service.type=LoadBalancer', '--set', 'networkPolicy.ingressFrom[0].ipBlock.cidr=10.0.0.0/16']);
    expect(singleOfKind(ok, 'Service', 'sb-switchboard').spec.type).toBe('LoadBalancer');
    expect(singleOfKind(await helmTemplate(helm, ['--set', 'service.type=NodePort']), 'Service', 'sb-switchboard').spec.type).toBe('NodePort');
  });
});

describe('the docs quote what helm says', () => {
  it('deploy/README.md shows the schema error for HPA and KEDA both on, word for word', async () => {
    const stderr = await refused(['--set', 'autoscaling.enabled=true', '--set', 'keda.enabled=true', ...BUILTIN_REDIS, ...STREAM_KEY]);
    const readme = readFileSync(join(CHART, '../../README.md'), 'utf8');
    const quoted = /for the HPA and KEDA both on\n\n```\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    expect(quoted.trim().split('\n').length).toBe(2);
    for (const line of quoted.trim().split('\n')) expect(stderr).toContain(line);
  });
});
