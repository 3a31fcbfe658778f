/**
 * What separates a chart that renders from one that works in a cluster: it refuses the installs that
 * would fail silently (exposed without tenants, a drain shorter than a call, autoscaling without its
 * metric or shared state, a generated key under GitOps), and production values carry NetworkPolicy,
 * Redis auth, node-autoscaler annotations and the scrape. Also the Gateway API route, the KEDA query
 * run through the real PromQL engine, and the `helm test` script run against a real relay.
 */
/* Rendered YAML is untyped data read by path; the schemas are checked by validateObject. */
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-argument */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { ensureK8sTools } from '../../scripts/k8s-tools.js';
import type { Relay } from '../../src/server/index.js';
import { startTestRelay } from '../helpers/relay.js';
import { promtool } from '../observability/promql.js';
import { BUILTIN_REDIS, CHART, helmTemplate, singleOfKind, run, STREAM_KEY, validateObject, type K8sObject } from './k8s-objects.js';

const PROD = join(CHART, 'values-production.yaml');
const dir = mkdtempSync(join(tmpdir(), 'sb-chart-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const TENANTS = ['--set', 'tenants.existingConfigMap=my-tenants'];

let helm: string;
const sets = {
  production: ['-f', PROD],
  builtinRedis: ['--set', 'autoscaling.enabled=true', ...BUILTIN_REDIS, '--set', 'networkPolicy.enabled=true', ...STREAM_KEY],
  managedRedis: [
    '-f',
    PROD,
    '-f',
    file(
      'managed.yaml',
      toYaml({
        redis: { auth: { username: 'relay' }, tls: { caSecret: 'memorystore-ca', caSecretKey: 'server-ca.pem' } },
        extraVolumes: [{ name: 'sidecar-socket', emptyDir: {} }],
        extraVolumeMounts: [{ name: 'sidecar-socket', mountPath: '/var/run/sidecar' }],
        config: { extraEnv: [{ name: 'NODE_EXTRA_CA_CERTS', value: '/etc/ssl/extra/ca.pem' }] },
      }),
    ),
  ],
  gateway: ['-f', PROD, '--set', 'ingress.enabled=false', '--set', 'gateway.enabled=true', '--set', 'gateway.parentRefs[0].name=public', '--set', 'gateway.parentRefs[0].namespace=gateway-system'],
  noNodeAnnotations: ['-f', PROD, '--set', 'nodeDisruption.clusterAutoscaler=false', '--set', 'nodeDisruption.karpenterDoNotDisrupt=false'],
  podAnnotationScrape: ['--set', 'autoscaling.enabled=true', ...BUILTIN_REDIS, '--set', 'serviceMonitor.enabled=false', '--set', 'metrics.podAnnotations=true', ...STREAM_KEY],
  adminManagedTenants: [
    '--set', 'ingress.enabled=true', '--set', 'ingress.host=voice.example.com', '--set', 'tenants.managedByAdminApi=true',
    ...BUILTIN_REDIS, '--set', 'secrets.adminToken=admin-token-0123456789', ...STREAM_KEY,
  ],
  rotatedKey: ['-f', PROD, '--set', 'secrets.create=true', '--set', 'secrets.existingSecret=', '--set', 'redis.existingSecret=', '--set', 'redis.auth.existingSecret=', '--set', 'redis.url=rediss://cache:6380', ...STREAM_KEY],
  rotatedKey2: ['-f', PROD, '--set', 'secrets.create=true', '--set', 'secrets.existingSecret=', '--set', 'redis.existingSecret=', '--set', 'redis.auth.existingSecret=', '--set', 'redis.url=rediss://cache:6380', '--set', 'secrets.streamTokenSecret=another-stream-token-secret-0123456789ab'],
} satisfies Record<string, string[]>;
type SetName = keyof typeof sets;
const rendered = {} as Record<SetName, K8sObject[]>;

beforeAll(async () => {
  helm = ensureK8sTools().helm;
  const names = Object.keys(sets) as SetName[];
  const out = await Promise.all(names.map((n) => helmTemplate(helm, sets[n])));
  names.forEach((n, i) => (rendered[n] = out[i] ?? []));
});

const relayPod = (objects: K8sObject[]) => singleOfKind(objects, 'Deployment').spec.template;
const relayContainer = (objects: K8sObject[]) => relayPod(objects).spec.containers[0];
const configEnv = (objects: K8sObject[]) => singleOfKind(objects, 'ConfigMap', 'sb-switchboard').data as Record<string, string>;

it('renders valid objects for every values set', () => {
  for (const [name, objects] of Object.entries(rendered)) {
    expect(objects.length, name).toBeGreaterThan(4);
    for (const o of objects) validateObject(o);
  }
});

describe('refuses what would fail silently', () => {
  const cases: [string, string[], RegExp][] = [
    ['an ingress without tenants', ['--set', 'ingress.enabled=true', '--set', 'ingress.host=voice.example.com', ...STREAM_KEY], /an exposed relay .* needs tenants/],
    ['a gateway route without tenants', ['--set', 'gateway.enabled=true', '--set', 'gateway.parentRefs[0].name=public', '--set', 'ingress.host=voice.example.com', ...STREAM_KEY], /an exposed relay .* needs tenants/],
    ['OpenAI without tenants', ['--set', 'config.modelProvider=openai'], /an exposed relay .* needs tenants/],
    ['an OpenAI key (provider auto) without tenants', ['--set', 'secrets.openaiApiKey=sk-test'], /an exposed relay .* needs tenants/],
    ['tenants from the admin API without Redis', ['--set', 'config.modelProvider=openai', '--set', 'tenants.managedByAdminApi=true', '--set', 'secrets.adminToken=admin-token-0123456789'], /managedByAdminApi needs Redis/],
    ['a drain shorter than the longest call', ['--set', 'drain.timeoutSeconds=1800'], /drain\.timeoutSeconds \(1800\) is below config\.maxCallSeconds \(3600\)/],
    ['calls migrating with nowhere to keep them', ['--set', 'drain.mode=migrate'], /drain\.mode migrate needs Redis/],
    ['a proxy timeout shorter than the longest call', ['-f', PROD, '--set', 'config.maxCallSeconds=7200', '--set', 'drain.timeoutSeconds=7200'], /websocketTimeoutSeconds \(3900\) is below config\.maxCallSeconds \(7200\)/],
    ['autoscaling without Redis', ['--set', 'autoscaling.enabled=true', ...STREAM_KEY], /more than one replica needs shared state/],
    ['autoscaling with its scrape turned off', ['--set', 'autoscaling.enabled=true', ...BUILTIN_REDIS, '--set', 'serviceMonitor.enabled=false', ...STREAM_KEY], /autoscaling reads switchboard_active_calls from Prometheus/],
    ['KEDA with its scrape turned off', ['--set', 'keda.enabled=true', ...BUILTIN_REDIS, '--set', 'serviceMonitor.enabled=false', ...STREAM_KEY], /autoscaling reads switchboard_active_calls from Prometheus/],
    ['a generated stream-token key outside the trial', ['--set', 'replicaCount=2', ...BUILTIN_REDIS], /secrets\.streamTokenSecret is empty: outside the one-pod trial/],
    ['a generated stream-token key with autoscaling', ['--set', 'autoscaling.enabled=true', ...BUILTIN_REDIS], /secrets\.streamTokenSecret is empty/],
    ['a gateway without a parent', ['-f', PROD, '--set', 'gateway.enabled=true'], /gateway\.enabled needs gateway\.parentRefs/],
    ['a plain password for an external Redis', ['-f', PROD, '--set', 'redis.auth.password=pw'], /redis\.auth\.password is for the built-in Redis/],
    ['a CA for a plain redis:// URL', ['--set', 'redis.url=redis://cache:6379', '--set', 'redis.tls.caSecret=ca'], /redis\.tls\.caSecret needs a rediss:\/\/ redis\.url/],
    ['KEDA cooldownPeriod (a no-op for a relay)', ['--set', 'keda.cooldownPeriod=300'], /additional properties 'cooldownPeriod' not allowed/],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    const r = await run(helm, ['template', 'sb', CHART, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });

  it('renders an exposed relay whose tenants come from the admin API (Redis and an admin token)', () => {
    expect(singleOfKind(rendered.adminManagedTenants, 'Ingress').spec.rules[0].host).toBe('voice.example.com');
    expect(configEnv(rendered.adminManagedTenants).TENANTS_FILE).toBeUndefined();
  });

  it('renders the trial and production without tenants errors', async () => {
    expect((await run(helm, ['template', 'sb', CHART, ...TENANTS, '--set', 'ingress.enabled=true', '--set', 'ingress.host=a.example.com', ...STREAM_KEY])).code).toBe(0);
    expect(rendered.production.length).toBeGreaterThan(0);
  });
});

describe('stream-token key under GitOps', () => {
  it('generates nothing in production: the key comes from the existing Secret', () => {
    expect(rendered.production.filter((o) => o.kind === 'Secret')).toEqual([]);
    expect(relayContainer(rendered.production).envFrom).toContainEqual({ secretRef: { name: 'switchboard-secrets' } });
  });

  it('renders a given key and its predecessor, and rolls the pods when the key changes', () => {
    const secret = singleOfKind(rendered.rotatedKey, 'Secret', 'sb-switchboard').stringData;
    expect(secret.STREAM_TOKEN_SECRET).toBe('test-stream-token-secret-0123456789abcdef');
    const a = relayPod(rendered.rotatedKey).metadata.annotations['checksum/secrets'];
    const b = relayPod(rendered.rotatedKey2).metadata.annotations['checksum/secrets'];
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(b).not.toBe(a);
  });

  it('passes STREAM_TOKEN_SECRET_PREVIOUS for a rotation', async () => {
    const objects = await helmTemplate(helm, [...sets.rotatedKey2, '--set', 'secrets.streamTokenSecretPrevious=test-stream-token-secret-0123456789abcdef']);
    expect(singleOfKind(objects, 'Secret', 'sb-switchboard').stringData.STREAM_TOKEN_SECRET_PREVIOUS).toBe('test-stream-token-secret-0123456789abcdef');
  });
});

describe('calls the cluster would cut', () => {
  it('keeps Cluster Autoscaler and Karpenter off nodes with live calls, configurably', () => {
    const a = relayPod(rendered.production).metadata.annotations;
    expect(a['cluster-autoscaler.kubernetes.io/safe-to-evict']).toBe('false');
    expect(a['karpenter.sh/do-not-disrupt']).toBe('true');
    const off = relayPod(rendered.noNodeAnnotations).metadata.annotations;
    expect(off['cluster-autoscaler.kubernetes.io/safe-to-evict']).toBeUndefined();
    expect(off['karpenter.sh/do-not-disrupt']).toBeUndefined();
  });

  it('restarts a dead relay promptly on liveness failure instead of waiting out the drain grace', () => {
    const spec = relayPod(rendered.production).spec;
    // Production migrates calls on SIGTERM (grace 15 + 75 + 30 s); the liveness restart is shorter still.
    expect(spec.terminationGracePeriodSeconds).toBe(120);
    expect(spec.containers[0].livenessProbe.terminationGracePeriodSeconds).toBe(60);
  });
});

describe('autoscaling cannot fail silently', () => {
  it('turns the ServiceMonitor on with autoscaling unless another scrape is chosen', () => {
    expect(singleOfKind(rendered.builtinRedis, 'ServiceMonitor').spec.endpoints[0].path).toBe('/metrics');
    expect(rendered.podAnnotationScrape.some((o) => o.kind === 'ServiceMonitor')).toBe(false);
    expect(relayPod(rendered.podAnnotationScrape).metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '8080',
      'prometheus.io/path': '/metrics',
    });
  });

  it('NOTES tell how to check the metric reaches the HPA and KEDA', async () => {
    const hpa = await run(helm, ['install', 'sb', CHART, '-n', 'voice', '--dry-run', '-f', PROD]);
    expect(hpa.stdout).toContain('kubectl get --raw "/apis/custom.metrics.k8s.io/v1beta1/namespaces/voice/pods/*/switchboard_active_calls"');
    const keda = await run(helm, ['install', 'sb', CHART, '-n', 'voice', '--dry-run', '--set', 'keda.enabled=true', ...BUILTIN_REDIS, ...STREAM_KEY]);
    expect(keda.stdout).toContain('/apis/external.metrics.k8s.io/v1beta1/namespaces/voice/s0-prometheus?labelSelector=scaledobject.keda.sh%2Fname%3Dsb-switchboard');
    const trial = await run(helm, ['install', 'sb', CHART, '-n', 'voice', '--dry-run']);
    expect(trial.stdout).toMatch(/THIS IS A TRIAL INSTALL: one pod, in-memory state .*the simulated model.*demo tenant/s);
    expect(trial.stdout).toContain('values-production.yaml');
    expect(hpa.stdout).not.toContain('TRIAL');
    // Production's NetworkPolicy names the peers that may reach the relay, so a gateway user notices.
    expect(hpa.stdout).toMatch(/NetworkPolicy: the relay port admits only these peers[\s\S]*kubernetes\.io\/metadata\.name: ingress-nginx/);
  });

  it('the KEDA query counts the calls of serving pods only (promtool runs it on sample series)', async () => {
    const objects = await helmTemplate(helm, ['--set', 'keda.enabled=true', ...BUILTIN_REDIS, ...STREAM_KEY]);
    const query = singleOfKind(objects, 'ScaledObject').spec.triggers[0].metadata.query as string;
    const rules = file('keda-rules.yaml', toYaml({ groups: [{ name: 'keda', rules: [{ record: 'keda:query', expr: query }] }] }));
    const tests = file(
      'keda-test.yaml',
      toYaml({
        rule_files: [rules],
        evaluation_interval: '15s',
        tests: [
          {
            interval: '15s',
            input_series: [
              // Deployment pods: <fullname>-<pod-template-hash>-<5 characters>.
              { series: 'switchboard_active_calls{namespace="voice",pod="sb-switchboard-7d9f8b6c4-x2k9p"}', values: '100x4' },
              { series: 'switchboard_active_calls{namespace="voice",pod="sb-switchboard-7d9f8b6c4-q8zrt"}', values: '80x4' },
              // Draining: terminating since t=30s, still holding calls.
              { series: 'switchboard_active_calls{namespace="voice",pod="sb-switchboard-5c6b7d8f9-mn4vw"}', values: '60x4' },
              { series: 'kube_pod_deletion_timestamp{namespace="voice",pod="sb-switchboard-5c6b7d8f9-mn4vw"}', values: '_ _ 1700000000x2' },
              // Another namespace's relay.
              { series: 'switchboard_active_calls{namespace="other",pod="sb-switchboard-7d9f8b6c4-x2k9p"}', values: '500x4' },
              // Same namespace, not this release's relay pods: the built-in Redis, the helm test pod,
              // another release whose name starts with this one, a Job named after the release.
              { series: 'switchboard_active_calls{namespace="voice",pod="sb-switchboard-redis-0"}', values: '7x4' },
              { series: 'switchboard_active_calls{namespace="voice",pod="sb-switchboard-test"}', values: '7x4' },
              { series: 'switchboard_active_calls{namespace="voice",pod="sb-switchboard-canary-6f7c9d4b8-k2j4h"}', values: '300x4' },
              { series: 'switchboard_active_calls{namespace="voice",pod="sb-switchboard-storm-abcd1"}', values: '9x4' },
            ],
            promql_expr_test: [
              { expr: 'keda:query', eval_time: '0s', exp_samples: [{ labels: 'keda:query', value: 240 }] },
              { expr: 'keda:query', eval_time: '45s', exp_samples: [{ labels: 'keda:query', value: 180 }] },
            ],
          },
        ],
      }),
    );
    const r = await promtool(['test', 'rules', tests]);
    expect(r.output).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });
});

describe('NetworkPolicy', () => {
  const policy = (objects: K8sObject[], name = 'sb-switchboard') => singleOfKind(objects, 'NetworkPolicy', name).spec;

  it('production: callers only through the ingress controller, /metrics only from monitoring, admin API from no pod', () => {
    const np = policy(rendered.production);
    const podLabels = relayPod(rendered.production).metadata.labels;
    expect(Object.entries(np.podSelector.matchLabels).every(([k, v]) => podLabels[k] === v)).toBe(true);
    expect(np.policyTypes).toEqual(['Ingress', 'Egress']);
    const from = np.ingress.map((r: K8sObject) => r.from);
    expect(from).toEqual([
      [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ingress-nginx' } } }],
      [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
      [{ podSelector: { matchLabels: { 'app.kubernetes.io/instance': 'sb', 'app.kubernetes.io/component': 'helm-test' } } }],
    ]);
    // No rule admits every pod: each names a peer.
    for (const rule of np.ingress) expect(rule.from.length).toBeGreaterThan(0);
    for (const rule of np.ingress) expect(rule.ports).toEqual([{ port: 'http', protocol: 'TCP' }]);
    // The helm test pod carries exactly the labels the last rule admits.
    const testPod = singleOfKind(rendered.production, 'Pod');
    expect(testPod.metadata.labels).toMatchObject(from[2][0].podSelector.matchLabels);
  });

  it('production egress: DNS, the managed Redis ports, HTTPS outside private ranges, the OTLP collector', () => {
    const egress = policy(rendered.production).egress;
    const ports = egress.map((r: K8sObject) => r.ports.map((p: K8sObject) => `${p.port}/${p.protocol}`));
    expect(ports).toEqual([['53/UDP', '53/TCP'], ['6379/TCP', '6378/TCP', '6380/TCP'], ['443/TCP'], ['4318/TCP']]);
    expect(egress[0].to[0].podSelector.matchLabels).toEqual({ 'k8s-app': 'kube-dns' });
    const https = egress[2].to[0].ipBlock;
    expect(https.cidr).toBe('0.0.0.0/0');
    expect(https.except).toEqual(expect.arrayContaining(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']));
  });

  it('built-in Redis: the relay reaches it by label, and it accepts only the relay', () => {
    const egress = policy(rendered.builtinRedis).egress;
    expect(egress[1].to).toEqual([{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'switchboard', 'app.kubernetes.io/instance': 'sb', 'app.kubernetes.io/component': 'redis' } } }]);
    const redis = policy(rendered.builtinRedis, '-redis');
    const redisPodLabels = singleOfKind(rendered.builtinRedis, 'StatefulSet').spec.template.metadata.labels;
    expect(Object.entries(redis.podSelector.matchLabels).every(([k, v]) => redisPodLabels[k] === v)).toBe(true);
    expect(redis.ingress).toEqual([{ from: [{ podSelector: { matchLabels: relayPod(rendered.builtinRedis).metadata.labels } }], ports: [{ port: 6379, protocol: 'TCP' }] }]);
    expect(redis.egress).toEqual([]);
  });

  it('is off in the trial defaults', async () => {
    const objects = await helmTemplate(helm, []);
    expect(objects.some((o) => o.kind === 'NetworkPolicy')).toBe(false);
  });
});

describe('Redis auth and TLS', () => {
  it('the built-in Redis requires the given password, which the relay reads from the same Secret', () => {
    const secret = singleOfKind(rendered.builtinRedis, 'Secret', '-redis');
    expect(secret.stringData.REDIS_PASSWORD).toBe('test-redis-password-0123456789');
    const redis = singleOfKind(rendered.builtinRedis, 'StatefulSet').spec.template.spec.containers[0];
    expect(redis.args.slice(0, 2)).toEqual(['--requirepass', '$(REDIS_PASSWORD)']);
    const ref = { valueFrom: { secretKeyRef: { name: 'sb-switchboard-redis', key: 'REDIS_PASSWORD' } } };
    expect(redis.env).toEqual([{ name: 'REDIS_PASSWORD', ...ref }, { name: 'REDISCLI_AUTH', ...ref }]);
    expect(relayContainer(rendered.builtinRedis).env).toContainEqual({ name: 'REDIS_PASSWORD', ...ref });
    expect(configEnv(rendered.builtinRedis).REDIS_URL).toBe('redis://sb-switchboard-redis:6379');
  });

  it('a managed rediss:// Redis: ACL user, password Secret and a private CA mounted as REDIS_TLS_CA_FILE', () => {
    const c = relayContainer(rendered.managedRedis);
    const env = configEnv(rendered.managedRedis);
    expect(env.REDIS_USERNAME).toBe('relay');
    expect(env.REDIS_TLS_CA_FILE).toBe('/etc/switchboard/redis-ca/ca.crt');
    expect(c.env).toContainEqual({ name: 'REDIS_PASSWORD', valueFrom: { secretKeyRef: { name: 'switchboard-secrets', key: 'REDIS_PASSWORD' } } });
    expect(c.volumeMounts).toContainEqual({ name: 'redis-ca', mountPath: '/etc/switchboard/redis-ca', readOnly: true });
    const volumes = relayPod(rendered.managedRedis).spec.volumes;
    expect(volumes).toContainEqual({ name: 'redis-ca', secret: { secretName: 'memorystore-ca', items: [{ key: 'server-ca.pem', path: 'ca.crt' }] } });
  });

  it('takes extraEnv, extraVolumes and extraVolumeMounts for CAs and sidecars', () => {
    const c = relayContainer(rendered.managedRedis);
    expect(c.env).toContainEqual({ name: 'NODE_EXTRA_CA_CERTS', value: '/etc/ssl/extra/ca.pem' });
    expect(c.volumeMounts).toContainEqual({ name: 'sidecar-socket', mountPath: '/var/run/sidecar' });
    expect(relayPod(rendered.managedRedis).spec.volumes).toContainEqual({ name: 'sidecar-socket', emptyDir: {} });
  });
});

describe('Gateway API', () => {
  it('routes only /twilio to the relay with WebSocket-safe timeouts', () => {
    expect(rendered.gateway.some((o) => o.kind === 'Ingress')).toBe(false);
    const route = singleOfKind(rendered.gateway, 'HTTPRoute').spec;
    expect(route.parentRefs).toEqual([{ name: 'public', namespace: 'gateway-system' }]);
    expect(route.hostnames).toEqual(['voice.example.com']);
    expect(route.rules).toEqual([
      {
        matches: [{ path: { type: 'PathPrefix', value: '/twilio' } }],
        backendRefs: [{ name: 'sb-switchboard', port: 80 }],
        timeouts: { request: '3900s', backendRequest: '3900s' },
      },
    ]);
  });

  it('the HTTPRoute check rejects a backend timeout longer than the request timeout', () => {
    const bad = { ...singleOfKind(rendered.gateway, 'HTTPRoute') };
    bad.spec = { ...bad.spec, rules: [{ ...bad.spec.rules[0], timeouts: { request: '1h', backendRequest: '2h' } }] };
    expect(() => validateObject(bad)).toThrow(/backendRequest exceeds request/);
  });
});

describe('helm test', () => {
  const pod = () => singleOfKind(rendered.production, 'Pod');
  let relay: Relay;
  beforeAll(async () => {
    relay = await startTestRelay();
  });
  afterAll(async () => {
    await relay?.close();
  });

  /** Run the hook's own command, as the pod would, against a URL on this machine. */
  async function runHook(url: string, attempts = 1): Promise<{ code: number; output: string }> {
    const [bin, ...args] = pod().spec.containers[0].command as string[];
    expect(bin).toBe('node');
    try {
      const r = await promisify(execFile)(process.execPath, args, { env: { SWITCHBOARD_URL: url, SMOKE_ATTEMPTS: String(attempts) }, timeout: 30_000 });
      return { code: 0, output: r.stdout + r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  }

  it('is a test hook that runs under the restricted Pod Security profile against the Service', () => {
    const p = pod();
    expect(p.metadata.annotations?.['helm.sh/hook']).toBe('test');
    expect(p.spec.restartPolicy).toBe('Never');
    expect(p.spec.automountServiceAccountToken).toBe(false);
    const c = p.spec.containers[0];
    expect(c.image).toBe(relayContainer(rendered.production).image);
    expect(c.env).toEqual([{ name: 'SWITCHBOARD_URL', value: 'http://sb-switchboard:80' }]);
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
    expect(c.command.at(-1)).toBe(readFileSync(join(CHART, 'files/smoke-test.mjs'), 'utf8'));
  });

  it('passes against a ready relay', async () => {
    const r = await runHook(relay.url);
    expect(r.output).toContain('ok: ');
    expect(r.code).toBe(0);
  });

  it('fails when nothing answers', async () => {
    const r = await runHook('http://127.0.0.1:9');
    expect(r.code).toBe(1);
    expect(r.output).toMatch(/attempt 1\/1: http:\/\/127\.0\.0\.1:9/);
  });

  it('fails when /metrics lacks switchboard_active_calls', async () => {
    const { createServer } = await import('node:http');
    const server = createServer((req, res) => res.end(req.url === '/readyz' ? '{"status":"ready"}' : 'other_metric 1\n'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      const r = await runHook(`http://127.0.0.1:${port}`);
      expect(r.code).toBe(1);
      expect(r.output).toContain('GET /metrics has no switchboard_active_calls sample');
    } finally {
      server.close();
    }
  });

  it('fails against a draining relay (/readyz 503)', async () => {
    const draining = await startTestRelay();
    try {
      void draining.drain(5000);
      const r = await runHook(draining.url);
      expect(r.code).toBe(1);
      expect(r.output).toMatch(/GET \/readyz answered 503/);
    } finally {
      await draining.close();
    }
  });
});
