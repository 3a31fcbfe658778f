/**
 * The tenant registry every pod serves from: a TenantStore (memory or Redis) as the truth, and an
 * in-memory snapshot with secrets resolved on this pod for the synchronous lookups of the hot routes.
 * The snapshot reloads on every change notice and on a timer; the admin routes write through here.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { TenantStore, TenantWrite, TenantWriteMode } from './tenant-store.js';
import { resolveTenant, type TenantDirectory } from './tenant-registry.js';
import type { Tenant, TenantConfig } from './tenant.js';
import { applyTenantsFile, logTenantsFileReport, type TenantsFileMode, type TenantsFileReport } from './tenants-file.js';

export interface StoreTenantRegistryOptions {
  store: TenantStore;
  /** Where `{env: NAME}` secret references are resolved (this pod's environment). */
  env: NodeJS.ProcessEnv;
  log: Logger;
  clock?: Clock;
  /**
   * Reload period, the fallback for a lost change notice and how soon a rotated secret file is
   * read again. Default 15 s.
   */
  reloadMs?: number;
  /**
   * Tenants served by this pod only, never written to the store (the demo tenant beside a shared
   * Redis: its token is published). A stored tenant with the same id or number wins.
   */
  local?: readonly TenantConfig[];
  /** Why a stored tenant must not be served (a real model provider refuses the demo account and inline tokens). */
  refuse?: (cfg: TenantConfig) => string | undefined;
}

interface Snapshot {
  byNumber: Map<string, Tenant>;
  byId: Map<string, Tenant>;
  list: readonly Tenant[];
}

const EMPTY: Snapshot = { byNumber: new Map(), byId: new Map(), list: [] };

export class StoreTenantRegistry implements TenantDirectory {
  private snap: Snapshot = EMPTY;
  private readonly clock: Clock;
  private readonly log: Logger;
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private cancelTimer: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  private closed = false;
  private storeDown = false;
  private seed: readonly TenantConfig[] = [];
  /** The configs of the last successful load, to restore into a store that lost its data. */
  private lastConfigs: TenantConfig[] = [];
  /** Last problem reported per tenant id, so a broken tenant is logged once, not every reload. */
  private readonly problems = new Map<string, string>();
  private loads = 0;

  constructor(private readonly o: StoreTenantRegistryOptions) {
    this.clock = o.clock ?? systemClock;
    this.log = o.log;
  }

  /**
   * Apply the tenants file to the store (`mode`: see tenants-file.ts; `seed` only adds tenants the
   * store lacks), log the outcome, load the snapshot, subscribe to change notices and start the
   * reload timer.
   */
  async start(seed: readonly TenantConfig[] = [], mode: TenantsFileMode = 'seed'): Promise<TenantsFileReport> {
    this.seed = seed;
    const report = await applyTenantsFile(this.o.store, seed, mode);
    logTenantsFileReport(this.log, report);
    await this.o.store.markInitialised();
    this.unsubscribe = await this.o.store.subscribe(() => {
      void this.refresh();
    });
    await this.refresh();
    this.arm();
    return report;
  }

  /** Create each config whose id the store does not hold (restoring a store that lost its data). */
  private async putAll(configs: readonly TenantConfig[]): Promise<void> {
    for (const cfg of configs) {
      const r = await this.o.store.put(cfg, 'create');
      if (!r.ok && r.reason === 'number_taken') {
        this.log.warn(
          { code: 'conflict', tenant: cfg.id, owner: r.owner },
          'seed tenant not added: one of its numbers belongs to another tenant',
        );
      }
    }
  }

  byNumber(to: string, accountSid?: string): Tenant | undefined {
    const t = this.snap.byNumber.get(to);
    if (!t) return undefined;
    if (accountSid !== undefined && t.twilio.accountSid !== accountSid) return undefined;
    return t;
  }

  byId(id: string): Tenant | undefined {
    return this.snap.byId.get(id);
  }

  list(): readonly Tenant[] {
    return this.snap.list;
  }

  /** How many times the snapshot has been rebuilt (tests await a change through it). */
  get generation(): number {
    return this.loads;
  }

  /** Stored configurations, secret references unresolved (what the admin API shows). */
  configs(): Promise<TenantConfig[]> {
    return this.o.store.list();
  }

  config(id: string): Promise<TenantConfig | undefined> {
    return this.o.store.get(id);
  }

  /**
   * Why `cfg`'s secret references would not resolve on this pod (a variable not set, a file not
   * mounted), or undefined when they do. The message names the reference, never a value.
   */
  unresolvable(cfg: TenantConfig): string | undefined {
    try {
      resolveTenant(cfg, this.o.env);
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  }

  /** Write a tenant, then rebuild this pod's snapshot before answering (other pods follow by notice). */
  async write(cfg: TenantConfig, mode: TenantWriteMode): Promise<TenantWrite> {
    const r = await this.o.store.put(cfg, mode);
    if (r.ok) await this.refresh();
    return r;
  }

  async remove(id: string): Promise<boolean> {
    const had = await this.o.store.delete(id);
    if (had) await this.refresh();
    return had;
  }

  /**
   * Rebuild the snapshot from the store. Concurrent calls coalesce: at most one load runs and one
   * waits, and every caller's promise settles after a load that started after its call. Never rejects.
   */
  refresh(): Promise<void> {
    if (!this.running) {
      this.running = this.load().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    this.queued ??= this.running.then(() => {
      this.queued = undefined;
      return this.refresh();
    });
    return this.queued;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cancelTimer?.();
    this.unsubscribe?.();
    await this.running;
  }

  private arm(): void {
    if (this.closed) return;
    this.cancelTimer = this.clock.after(this.o.reloadMs ?? 15_000, () => {
      void this.refresh().then(() => this.arm());
    });
  }

  private async load(): Promise<void> {
    let configs: TenantConfig[];
    try {
      if (!(await this.o.store.initialised())) {
        // The store lost its data (e.g. Redis restarted without persistence): put back the tenants
        // we last served (admin changes included), then the seed, instead of going dark.
        this.log.warn({ code: 'store_unavailable', restoring: this.lastConfigs.length }, 'tenant store was reset; restoring tenants');
        await this.putAll([...this.lastConfigs, ...this.seed]);
        await this.o.store.markInitialised();
      }
      configs = await this.o.store.list();
    } catch (err) {
      // Keep serving the last snapshot: a Redis blip must not make every number unknown.
      if (!this.storeDown) this.log.warn({ code: 'store_unavailable', err: errorMessage(err) }, 'tenant reload failed; serving the last snapshot');
      this.storeDown = true;
      return;
    }
    if (this.storeDown) this.log.info('tenant store reachable again');
    this.storeDown = false;
    const next: Snapshot = { byNumber: new Map(), byId: new Map(), list: [] };
    const list: Tenant[] = [];
    const seen = new Set<string>();
    const stored = new Set(configs.flatMap((c) => [c.id, ...c.phoneNumbers]));
    const local = (this.o.local ?? []).filter((c) => !stored.has(c.id) && !c.phoneNumbers.some((n) => stored.has(n)));
    for (const cfg of [...configs, ...local]) {
      seen.add(cfg.id);
      const refused = this.o.refuse?.(cfg);
      if (refused) {
        this.report(cfg.id, refused, 'tenant refused: not served with a real model provider');
        continue;
      }
      let t: Tenant;
      try {
        t = resolveTenant(cfg, this.o.env);
      } catch (err) {
        // errorMessage names the variable or file, never a secret value.
        this.report(cfg.id, errorMessage(err));
        continue;
      }
      if (this.problems.delete(cfg.id)) this.log.info({ tenant: cfg.id }, 'tenant secrets resolve again; tenant is served');
      next.byId.set(t.id, t);
      for (const n of t.phoneNumbers) next.byNumber.set(n, t);
      list.push(t);
    }
    for (const id of this.problems.keys()) if (!seen.has(id)) this.problems.delete(id);
    next.list = Object.freeze(list);
    this.snap = next;
    this.lastConfigs = configs;
    this.loads++;
  }

  private report(id: string, problem: string, msg = 'tenant not served: its secrets do not resolve on this pod'): void {
    if (this.problems.get(id) === problem) return;
    this.problems.set(id, problem);
    this.log.error({ code: 'config_invalid', tenant: id, problem }, msg);
  }
}
