/**
 * Builds the tenant side of a relay from configuration: the store (Redis when REDIS_URL is set,
 * else memory), the seeded registry and the lease keeper. The composition root calls this once.
 */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { errorMessage, SwitchboardError } from '../errors.js';
import type { LeaseStore } from '../store/lease-store.js';
import { MemoryLeaseStore } from '../store/memory-lease-store.js';
import { MemoryTenantStore } from '../store/memory-tenant-store.js';
import { RedisLeaseStore } from '../store/redis-lease-store.js';
import { RedisTenantStore } from '../store/redis-tenant-store.js';
import type { TenantStore } from '../store/tenant-store.js';
import { webhookUrlProblem } from '../tools/ssrf.js';
import { TenantLeases, type TenantLeasesOptions } from './leases.js';
import { StoreTenantRegistry } from './store-registry.js';
import { formatTenantsProblems, readTenantsDocument, resolveSecret } from './tenant-registry.js';
import { DEMO_TENANT, refusedWithRealModel, SecretRef, TenantSchema, type TenantConfig } from './tenant.js';
import type { TenantsFileMode, TenantsFileReport } from './tenants-file.js';

/** The model the relay speaks to: the demo tenant exists only with the simulated one. */
export type TenantsProvider = 'openai' | 'azure' | 'sim';

export interface TenantRuntime {
  readonly registry: StoreTenantRegistry;
  readonly leases: TenantLeases;
  readonly tenantStore: TenantStore;
  readonly leaseStore: LeaseStore;
  /** What applying the tenants file at start did (created, skipped, conflicting, …). */
  readonly fileReport: TenantsFileReport;
  /** Stop timers and the subscriber connection; a shared `redis` is left open. */
  close(): Promise<void>;
}

export interface OpenTenantsOptions {
  /** TENANTS_FILE; unset serves the demo tenant with the simulated model, and no tenant otherwise. */
  tenantsFile: string | undefined;
  /**
   * MODEL_PROVIDER. With a real provider there is no demo tenant, and tenants on the demo account or
   * with an inline auth token are refused (from the file: at start; from the store: logged, not served).
   */
  provider: TenantsProvider;
  /** TENANTS_FILE_MODE (default `seed`); without a file the demo tenant is only ever seeded. */
  tenantsFileMode?: TenantsFileMode;
  /** WEBHOOK_TOOLS_ALLOW_PRIVATE: webhook tool URLs may name localhost and private IP literals. */
  allowPrivateWebhooks?: boolean;
  env: NodeJS.ProcessEnv;
  log: Logger;
  /** The relay's Redis connection (createRedis); absent = single-process memory stores. */
  redis?: Redis;
  /** Change-notice channel; defaults to `sb:tenants-changed`. */
  channel?: string;
  clock?: Clock;
  reloadMs?: number;
  leases?: Omit<TenantLeasesOptions, 'store' | 'log' | 'clock'>;
}

/** Options of loadSeedTenants and checkSeedTenants. */
export interface SeedTenantsOptions {
  /** False: secret references are checked for shape only (`npm run check -- --no-secrets`). */
  secrets?: boolean;
  provider?: TenantsProvider;
  allowPrivateWebhooks?: boolean;
  /** Also resolve webhook tools' secrets (the relay resolves them only when a tool runs). */
  webhookSecrets?: boolean;
}

/** The secret references of one raw tenants-file entry, with their paths. */
function secretRefs(raw: unknown): { path: PropertyKey[]; name: string; ref: SecretRef }[] {
  const out: { path: PropertyKey[]; name: string; ref: SecretRef }[] = [];
  const r = raw as { twilio?: Record<string, unknown>; webhookTools?: unknown } | null;
  for (const key of ['authToken', 'previousAuthToken']) {
    const ref = SecretRef.safeParse(r?.twilio?.[key]);
    if (ref.success) out.push({ path: ['twilio', key], name: `twilio.${key}`, ref: ref.data });
  }
  if (Array.isArray(r?.webhookTools)) {
    r.webhookTools.forEach((t: unknown, j) => {
      const tool = t as { name?: unknown; secret?: unknown } | null;
      const ref = SecretRef.safeParse(tool?.secret);
      const name = typeof tool?.name === 'string' ? tool.name : String(j);
      if (ref.success) out.push({ path: ['webhookTools', j, 'secret'], name: `webhookTools.${name}.secret`, ref: ref.data });
    });
  }
  return out;
}

/**
 * Every problem of the seed tenants in one pass, each `file:line:col: …` (file order): YAML and
 * schema problems, tenants a real provider refuses, refused webhook URLs and, with `secrets`,
 * references that do not resolve (also of entries whose schema failed). No file: the demo tenant.
 */
export function checkSeedTenants(tenantsFile: string | undefined, env: NodeJS.ProcessEnv, opts: SeedTenantsOptions = {}): { tenants: TenantConfig[]; problems: string[] } {
  const provider = opts.provider ?? 'sim';
  if (tenantsFile === undefined) return { tenants: provider === 'sim' ? [TenantSchema.parse(DEMO_TENANT)] : [], problems: [] };
  let text: string;
  try {
    text = readFileSync(tenantsFile, 'utf8');
  } catch {
    return { tenants: [], problems: [`TENANTS_FILE: cannot read ${tenantsFile}`] };
  }
  const doc = readTenantsDocument(text, tenantsFile);
  const problems = [...doc.problems];
  for (const { index, raw, tenant } of doc.entries) {
    const rawId = (raw as { id?: unknown } | null)?.id;
    const id = tenant?.id ?? (typeof rawId === 'string' ? rawId : `tenants[${index}]`);
    const refused = tenant && provider !== 'sim' ? refusedWithRealModel(tenant) : undefined;
    if (refused) problems.push({ ...doc.locate(index, ['twilio']), message: `tenant ${id} ${refused}` });
    tenant?.webhookTools.forEach((t, j) => {
      const problem = webhookUrlProblem(t.url, opts.allowPrivateWebhooks === true);
      if (problem !== undefined) problems.push({ ...doc.locate(index, ['webhookTools', j, 'url']), message: `tenant ${id}: webhookTools.${j}.url: ${problem}` });
    });
    if (opts.secrets === false) continue;
    for (const { path, name, ref } of secretRefs(raw)) {
      if (path[0] === 'webhookTools' && !opts.webhookSecrets) continue;
      try {
        resolveSecret(ref, env, `tenant ${id}: ${name}`);
      } catch (err) {
        problems.push({ ...doc.locate(index, path), message: errorMessage(err) });
      }
    }
  }
  return { tenants: doc.entries.flatMap((e) => (e.tenant ? [e.tenant] : [])), problems: formatTenantsProblems(tenantsFile, problems) };
}

/**
 * Read and validate the seed tenants: TENANTS_FILE, or the demo tenant (simulated model only).
 * Every seed tenant's secrets must resolve here, so a bad file stops the process at start with one
 * line per problem (`secrets: false` checks the file without them, as `npm run check -- --no-secrets`
 * does). With a real provider, tenants on the demo account or with an inline auth token are refused;
 * webhook tool URLs with userinfo, or (unless `allowPrivateWebhooks`) localhost or a blocked IP literal, too.
 * @throws SwitchboardError `config_invalid`
 */
export function loadSeedTenants(tenantsFile: string | undefined, env: NodeJS.ProcessEnv, opts: SeedTenantsOptions = {}): TenantConfig[] {
  const { tenants, problems } = checkSeedTenants(tenantsFile, env, opts);
  if (problems.length > 0) throw new SwitchboardError('config_invalid', problems.join('\n'));
  return tenants;
}

/**
 * Open the tenant store, seed it, load the registry and start the lease heartbeat.
 * @throws SwitchboardError `config_invalid` for a bad TENANTS_FILE (before touching the store).
 */
export async function openTenants(o: OpenTenantsOptions): Promise<TenantRuntime> {
  const seed = loadSeedTenants(o.tenantsFile, o.env, { provider: o.provider, ...(o.allowPrivateWebhooks ? { allowPrivateWebhooks: true } : {}) });
  const log = o.log.child({ component: 'tenants' });
  if (seed.length === 0) log.warn({ provider: o.provider }, 'no TENANTS_FILE and a real model provider: no tenants until the admin API adds some');
  // The demo tenant's token is published: it lives in this process only, never in a shared store.
  const demoOnly = o.tenantsFile === undefined;
  const clock = o.clock;
  const now = clock ? () => clock.now() : Date.now;
  let tenantStore: TenantStore;
  let leaseStore: LeaseStore;
  if (o.redis) {
    tenantStore = new RedisTenantStore(o.redis, {
      ...(o.channel !== undefined ? { channel: o.channel } : {}),
      onInvalid: (id, problem) => log.error({ code: 'config_invalid', tenant: id, problem }, 'stored tenant does not validate; skipped'),
    });
    leaseStore = new RedisLeaseStore(o.redis, now);
    for (const cfg of demoOnly ? [] : seed) {
      if ('value' in cfg.twilio.authToken || (cfg.twilio.previousAuthToken && 'value' in cfg.twilio.previousAuthToken)) {
        log.warn({ tenant: cfg.id }, 'seed tenant has an inline auth token value: it is stored in Redis as given; use {env} or {file} references in production');
      }
    }
  } else {
    tenantStore = new MemoryTenantStore();
    leaseStore = new MemoryLeaseStore(now);
  }
  const registry = new StoreTenantRegistry({
    store: tenantStore,
    env: o.env,
    log,
    ...(o.redis && demoOnly ? { local: seed } : {}),
    ...(o.provider !== 'sim' ? { refuse: refusedWithRealModel } : {}),
    ...(o.clock ? { clock: o.clock } : {}),
    ...(o.reloadMs !== undefined ? { reloadMs: o.reloadMs } : {}),
  });
  const fileReport = await registry.start(o.redis && demoOnly ? [] : seed, o.tenantsFile === undefined ? 'seed' : (o.tenantsFileMode ?? 'seed'), o.tenantsFile);
  const leases = new TenantLeases({ store: leaseStore, log, ...(o.clock ? { clock: o.clock } : {}), ...o.leases });
  leases.start();
  return {
    registry,
    leases,
    tenantStore,
    leaseStore,
    fileReport,
    async close() {
      leases.close();
      await registry.close();
      await tenantStore.close();
      await leaseStore.close();
    },
  };
}
