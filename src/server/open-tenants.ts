/**
 * Builds the tenant side of a relay from configuration: the store (Redis when REDIS_URL is set,
 * else memory), the seeded registry and the lease keeper. The composition root calls this once.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { MemoryLeaseStore } from '../store/memory-lease-store.js';
import { MemoryTenantStore } from '../store/memory-tenant-store.js';
import { RedisLeaseStore } from '../store/redis-lease-store.js';
import { RedisTenantStore } from '../store/redis-tenant-store.js';
import {
  loadSeedTenants,
  refusedWithRealModel,
  StoreTenantRegistry,
  TenantLeases,
  type LeaseStore,
  type TenantLeasesOptions,
  type TenantsFileMode,
  type TenantsFileReport,
  type TenantsProvider,
  type TenantStore,
} from '../tenants/index.js';

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
  const fileReport = await registry.start(o.redis && demoOnly ? [] : seed, o.tenantsFile === undefined ? 'seed' : (o.tenantsFileMode ?? 'seed'));
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
