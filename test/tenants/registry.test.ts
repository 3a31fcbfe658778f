/**
 * The store-backed tenant registry: two pods on one real Redis see each other's writes within the
 * change notice, secrets resolve per pod (a tenant whose secret is missing is skipped, never served
 * with a wrong token), the file seeds without overwriting, and the sample tenants file is valid.
 */
import { readFileSync } from 'node:fs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRedis } from '../../src/store/redis-connection.js';
import { createLogger, silentLogger } from '../../src/telemetry/index.js';
import {
  loadSeedTenants,
  parseTenantsDocument,
  resolveTenant,
  TenantSchema,
  type TenantConfig,
  type TenantsFileMode,
} from '../../src/tenants/index.js';
import { openTenants, type TenantRuntime } from '../../src/server/open-tenants.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { eventually } from '../helpers/relay.js';

const SID = 'AC' + 'b'.repeat(32);
const cfg = (id: string, numbers: string[], authToken: TenantConfig['twilio']['authToken'] = { env: 'ACME_TOKEN' }): TenantConfig =>
  TenantSchema.parse({ id, displayName: id, phoneNumbers: numbers, twilio: { accountSid: SID, authToken } });

let server: RedisServer;
const open: (TenantRuntime | { close(): Promise<void> })[] = [];
let n = 0;
beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server.stop();
});
afterEach(async () => {
  for (const r of open.splice(0).reverse()) await r.close();
});

async function pod(
  prefix: string,
  env: NodeJS.ProcessEnv,
  tenantsFile?: string,
  log = silentLogger(),
  tenantsFileMode?: TenantsFileMode,
): Promise<TenantRuntime> {
  const redis = createRedis(server.url, { keyPrefix: prefix });
  open.push({ close: () => Promise.resolve(redis.disconnect()) });
  const rt = await openTenants({ tenantsFile, provider: 'sim', env, log, redis, channel: `${prefix}changed`, ...(tenantsFileMode ? { tenantsFileMode } : {}) });
  open.push(rt);
  return rt;
}

function tenantYaml(id: string, number: string, max: number): string {
  return `  - id: ${id}\n    displayName: ${id}\n    phoneNumbers: ['${number}']\n    maxConcurrentCalls: ${max}\n    twilio: {accountSid: ${SID}, authToken: {env: ACME_TOKEN}}\n`;
}

function tenantsFile(entries: string[]): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sb-tenants-')), 'tenants.yaml');
  writeFileSync(file, `tenants:\n${entries.join('')}`);
  return file;
}

function capture(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ level: 'info', destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  return { log, lines };
}

describe('StoreTenantRegistry on Redis', () => {
  it('serves a tenant written on one pod from the other pod within the change notice', async () => {
    const prefix = `r${++n}:`;
    const env = { ACME_TOKEN: 'acme-secret-token' };
    const a = await pod(prefix, env);
    const b = await pod(prefix, env);
    expect(b.registry.byId('demo')?.resolvedAuthToken).toBe('demo-auth-token-not-secret');
    expect(await a.registry.write(cfg('acme', ['+14155550100']), 'create')).toEqual({ ok: true, created: true });
    // The writing pod answers from its new snapshot at once; the other follows the notice.
    expect(a.registry.byNumber('+14155550100', SID)?.id).toBe('acme');
    await eventually(() => b.registry.byNumber('+14155550100') !== undefined, 3000, 'pod b to see acme');
    const t = b.registry.byNumber('+14155550100', SID)!;
    expect(t.resolvedAuthToken).toBe('acme-secret-token');
    expect(b.registry.byNumber('+14155550100', 'AC' + 'c'.repeat(32))).toBeUndefined();

    await a.registry.remove('acme');
    await eventually(() => b.registry.byId('acme') === undefined, 3000, 'pod b to drop acme');
  });

  it('skips (and logs once, without the value) a tenant whose secret does not resolve on this pod', async () => {
    const prefix = `r${++n}:`;
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
    const a = await pod(prefix, { ACME_TOKEN: 'acme-secret-token' });
    const b = await pod(prefix, {}, undefined, log);
    await a.registry.write(cfg('acme', ['+14155550100']), 'create');
    await b.registry.refresh();
    await b.registry.refresh();
    expect(b.registry.byId('acme')).toBeUndefined();
    expect(b.registry.byId('demo')).toBeDefined();
    const problems = lines.filter((l) => l.includes('"tenant":"acme"') && l.includes('ACME_TOKEN'));
    expect(problems).toHaveLength(1);
    expect(lines.join('')).not.toContain('acme-secret-token');
  });

  it('reloads on its timer when a notice is lost', async () => {
    const prefix = `r${++n}:`;
    const a = await pod(prefix, { ACME_TOKEN: 'x' });
    // A writer that publishes on another channel: pod a gets no notice for it.
    const redis = createRedis(server.url, { keyPrefix: prefix });
    open.push({ close: () => Promise.resolve(redis.disconnect()) });
    const { RedisTenantStore } = await import('../../src/store/redis-tenant-store.js');
    await new RedisTenantStore(redis, { channel: 'elsewhere' }).put(cfg('acme', ['+14155550100']), 'create');
    expect(a.registry.byId('acme')).toBeUndefined();
    await a.registry.refresh(); // what the 15 s timer does
    expect(a.registry.byId('acme')?.resolvedAuthToken).toBe('x');
  });

  it('seeds from TENANTS_FILE without overwriting what the store already holds', async () => {
    const prefix = `r${++n}:`;
    const dir = mkdtempSync(join(tmpdir(), 'sb-tenants-'));
    const file = join(dir, 'tenants.yaml');
    writeFileSync(
      file,
      `tenants:\n  - id: acme\n    displayName: Acme\n    phoneNumbers: ['+14155550100']\n    maxConcurrentCalls: 2\n    twilio: {accountSid: ${SID}, authToken: {env: ACME_TOKEN}}\n`,
    );
    const a = await pod(prefix, { ACME_TOKEN: 't' }, file);
    expect(a.registry.list().map((t) => t.id)).toEqual(['acme']);
    await a.registry.write({ ...a.registry.byId('acme')!, maxConcurrentCalls: 7 }, 'replace');
    const b = await pod(prefix, { ACME_TOKEN: 't' }, file);
    expect(b.registry.byId('acme')?.maxConcurrentCalls).toBe(7);
  });

  it('TENANTS_FILE_MODE=seed keeps stored tenants, and says which file entries it skipped or could not apply', async () => {
    const prefix = `r${++n}:`;
    const file = tenantsFile([tenantYaml('acme', '+14155550100', 2)]);
    const a = await pod(prefix, { ACME_TOKEN: 't' }, file);
    expect(a.fileReport).toMatchObject({ mode: 'seed', created: ['acme'] });
    // Through the API: acme changes, and gamma takes the number the file will give to beta.
    await a.registry.write({ ...a.registry.byId('acme')!, maxConcurrentCalls: 7 }, 'replace');
    await a.registry.write(cfg('gamma', ['+14155550111']), 'create');
    // The operator edits the file (acme to 3, a new tenant beta) and a pod restarts.
    const edited = tenantsFile([tenantYaml('acme', '+14155550100', 3), tenantYaml('beta', '+14155550111', 1)]);
    const { log, lines } = capture();
    const b = await pod(prefix, { ACME_TOKEN: 't' }, edited, log, 'seed');
    expect(b.fileReport).toEqual({
      mode: 'seed',
      created: [],
      updated: [],
      unchanged: [],
      skipped: ['acme'],
      conflicting: [{ id: 'beta', number: '+14155550111', owner: 'gamma' }],
      removed: [],
    });
    expect(b.registry.byId('acme')?.maxConcurrentCalls).toBe(7);
    expect(b.registry.byId('beta')).toBeUndefined();
    const applied = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(applied.find((l) => l['msg'] === 'tenants file applied')).toMatchObject({ mode: 'seed', skipped: ['acme'], conflicting: ['beta'] });
    expect(applied.some((l) => l['level'] === 40 && l['tenant'] === 'beta' && l['owner'] === 'gamma')).toBe(true);
    expect(applied.some((l) => l['level'] === 40 && JSON.stringify(l['tenants']) === '["acme"]')).toBe(true);
  });

  it('TENANTS_FILE_MODE=reconcile makes the file the truth: overwrites, creates, removes, and logs each', async () => {
    const prefix = `r${++n}:`;
    const a = await pod(prefix, { ACME_TOKEN: 't' }, tenantsFile([tenantYaml('acme', '+14155550100', 2), tenantYaml('beta', '+14155550111', 1)]));
    await a.registry.write({ ...a.registry.byId('acme')!, maxConcurrentCalls: 7 }, 'replace');
    await a.registry.write(cfg('gamma', ['+14155550122']), 'create');
    // The file now moves beta's number to a new tenant delta and drops beta.
    const file = tenantsFile([tenantYaml('acme', '+14155550100', 2), tenantYaml('delta', '+14155550111', 1)]);
    const { log, lines } = capture();
    const b = await pod(prefix, { ACME_TOKEN: 't' }, file, log, 'reconcile');
    expect(b.fileReport).toEqual({ mode: 'reconcile', created: ['delta'], updated: ['acme'], unchanged: [], skipped: [], conflicting: [], removed: ['beta', 'gamma'] });
    expect(b.registry.list().map((t) => t.id)).toEqual(['acme', 'delta']);
    expect(b.registry.byId('acme')?.maxConcurrentCalls).toBe(2);
    expect(b.registry.byNumber('+14155550111')?.id).toBe('delta');
    // The other pod follows through the change notices.
    await eventually(() => a.registry.byId('gamma') === undefined && a.registry.byId('acme')?.maxConcurrentCalls === 2, 3000, 'pod a to follow');
    const applied = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'tenants file applied');
    expect(applied).toMatchObject({ mode: 'reconcile', created: ['delta'], updated: ['acme'], removed: ['beta', 'gamma'] });
    // A second start changes nothing.
    const c = await pod(prefix, { ACME_TOKEN: 't' }, file, silentLogger(), 'reconcile');
    expect(c.fileReport).toMatchObject({ created: [], updated: [], unchanged: ['acme', 'delta'], removed: [] });
  });

  it('refuses a TENANTS_FILE whose secrets do not resolve, naming the variable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-tenants-'));
    const file = join(dir, 'tenants.json');
    writeFileSync(file, JSON.stringify([cfg('acme', ['+14155550100'])]));
    expect(() => loadSeedTenants(file, {})).toThrow(/tenant acme: twilio.authToken: environment variable ACME_TOKEN is not set/);
  });

  it('refuses a TENANTS_FILE webhook tool aimed at a blocked IP literal, localhost or with userinfo, unless the dev flag', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-tenants-'));
    const file = join(dir, 'tenants.json');
    const tool = (name: string, url: string) => ({ name, description: 'd', url, secret: { env: 'TOOL_SECRET' } });
    const tenant = { ...cfg('acme', ['+14155550100']), webhookTools: [tool('fine', 'https://tools.example.com/x'), tool('site_local', 'https://[fec0::1]/x'), tool('creds', 'https://u:p@tools.example.com/x'), tool('local', 'https://localhost/x')] };
    writeFileSync(file, JSON.stringify([tenant]));
    const env = { ACME_TOKEN: 't', TOOL_SECRET: 's' };
    let message = '';
    try {
      loadSeedTenants(file, env);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/tenant acme: webhookTools\.1\.url: .*not a public address/);
    expect(message).toMatch(/tenant acme: webhookTools\.2\.url: .*user name or password/);
    expect(message).toMatch(/tenant acme: webhookTools\.3\.url: .*localhost/);
    expect(message).not.toMatch(/webhookTools\.0/);
    expect(() => loadSeedTenants(file, env, { allowPrivateWebhooks: true })).toThrow(/webhookTools\.2\.url/);
    writeFileSync(file, JSON.stringify([{ ...tenant, webhookTools: tenant.webhookTools.filter((t) => t.name !== 'creds') }]));
    expect(loadSeedTenants(file, env, { allowPrivateWebhooks: true })).toHaveLength(1);
  });
});

describe('examples/tenants.yaml', () => {
  it('parses and resolves with its documented variables and files', () => {
    const text = readFileSync(new URL('../../examples/tenants.yaml', import.meta.url), 'utf8');
    const tenants = parseTenantsDocument(text, 'examples/tenants.yaml');
    expect(tenants.length).toBeGreaterThanOrEqual(2);
    const env: NodeJS.ProcessEnv = {};
    for (const t of tenants) {
      for (const ref of [t.twilio.authToken, t.twilio.previousAuthToken]) {
        if (ref && 'env' in ref) env[ref.env] = 'x';
        expect(ref && 'value' in ref).toBeFalsy();
      }
    }
    for (const t of tenants) if (!('file' in t.twilio.authToken)) expect(resolveTenant(t, env).resolvedAuthToken).toBe('x');
  });
});
