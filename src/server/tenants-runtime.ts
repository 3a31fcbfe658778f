/**
 * The tenant side of a relay that must start even when Redis is down: the registry, leases and
 * admin store are opened in the background with capped back-off, and stand-ins answer meanwhile
 * (no tenants, readiness 503) so the pod comes up unready instead of crash-looping.
 */
import type { Logger } from 'pino';
import type { CallLifecycleListener } from '../call/index.js';
import type { Clock } from '../clock.js';
import { errorMessage, SwitchboardError } from '../errors.js';
import type { Redis } from 'ioredis';
import type { Tenant, TenantDirectory, TenantsFileMode, TenantsProvider } from '../tenants/index.js';
import { openTenants, type TenantRuntime } from './open-tenants.js';
import type { AdminTenantRegistry } from './routes/admin-tenants.js';
import type { WebhookLeases } from './routes/twilio-webhooks.js';

export interface DeferredTenants {
  readonly directory: TenantDirectory;
  readonly leases: WebhookLeases;
  readonly listener: CallLifecycleListener;
  readonly admin: AdminTenantRegistry;
  /** True once the registry loaded; until then calls are turned away and /readyz is 503. */
  ready(): boolean;
  close(): Promise<void>;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;

function notYet(): Promise<never> {
  return Promise.reject(new SwitchboardError('store_unavailable', 'tenant store not reachable yet', true));
}

/**
 * Open the tenants now if the store answers; otherwise keep trying in the background. A bad
 * TENANTS_FILE still fails at once (`config_invalid`): retrying cannot fix it.
 */
export async function openDeferredTenants(o: {
  tenantsFile: string | undefined;
  provider: TenantsProvider;
  tenantsFileMode?: TenantsFileMode;
  allowPrivateWebhooks?: boolean;
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
  redis: Redis | undefined;
  clock: Clock;
}): Promise<DeferredTenants> {
  let rt: TenantRuntime | undefined;
  let closed = false;
  let cancelRetry: (() => void) | undefined;
  const open = () =>
    openTenants({ tenantsFile: o.tenantsFile, provider: o.provider, ...(o.tenantsFileMode ? { tenantsFileMode: o.tenantsFileMode } : {}), ...(o.allowPrivateWebhooks ? { allowPrivateWebhooks: true } : {}), env: o.env, log: o.log, ...(o.redis ? { redis: o.redis } : {}), clock: o.clock });

  try {
    rt = await open();
  } catch (err) {
    if (err instanceof SwitchboardError && err.code === 'config_invalid') throw err;
    o.log.warn({ code: 'store_unavailable', err: errorMessage(err) }, 'tenant store unreachable at start; retrying, /readyz 503 until it answers');
    let delay = RETRY_MIN_MS;
    const retry = (): void => {
      cancelRetry = o.clock.after(delay, () => {
        if (closed) return;
        open().then(
          async (r) => {
            if (closed) return void (await r.close());
            rt = r;
            o.log.info('tenant store reachable: tenants loaded, ready');
          },
          () => {
            delay = Math.min(delay * 2, RETRY_MAX_MS);
            retry();
          },
        );
      });
    };
    retry();
  }

  return {
    directory: {
      byNumber: (to, accountSid) => rt?.registry.byNumber(to, accountSid),
      byId: (id) => rt?.registry.byId(id),
      list: (): readonly Tenant[] => rt?.registry.list() ?? [],
    },
    leases: {
      admit: (tenant, callSid) => (rt ? rt.leases.admit(tenant, callSid) : notYet()),
      release: (tenantId, callSid) => (rt ? rt.leases.release(tenantId, callSid) : Promise.resolve(false)),
    },
    listener: {
      callStarted: (c) => rt?.leases.callStarted(c),
      callEnded: (c) => rt?.leases.callEnded(c),
    },
    admin: {
      configs: () => (rt ? rt.registry.configs() : notYet()),
      config: (id) => (rt ? rt.registry.config(id) : notYet()),
      write: (cfg, mode) => (rt ? rt.registry.write(cfg, mode) : notYet()),
      remove: (id) => (rt ? rt.registry.remove(id) : notYet()),
      unresolvable: (cfg) => rt?.registry.unresolvable(cfg),
    },
    ready: () => rt !== undefined,
    async close() {
      closed = true;
      cancelRetry?.();
      await rt?.close();
    },
  };
}
