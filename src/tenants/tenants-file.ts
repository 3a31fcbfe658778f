/**
 * How TENANTS_FILE meets a store that already holds tenants (Redis, shared by every pod), chosen by
 * the operator with TENANTS_FILE_MODE:
 * - `seed`: the file only adds tenants whose id the store lacks; stored tenants (perhaps changed
 *   through the admin API) win, and a file entry that differs from its stored copy is reported.
 * - `reconcile`: the file is the truth: differing tenants are overwritten, missing ones created,
 *   and tenants the file does not name are removed (admin API changes last until the next start).
 * Either way the outcome per tenant is returned and logged once, so an edit that changed nothing is seen.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { TenantStore } from './tenant-store.js';
import type { TenantConfig } from './tenant.js';

export type TenantsFileMode = 'seed' | 'reconcile';

export interface TenantsFileReport {
  mode: TenantsFileMode;
  /** Added to the store. */
  created: string[];
  /** Overwritten with the file's version (reconcile). */
  updated: string[];
  /** Stored exactly as the file says. */
  unchanged: string[];
  /** In the store with other settings, left as stored (seed): the file's edit has no effect. */
  skipped: string[];
  /** Not written: a phone number belongs to another stored tenant. */
  conflicting: { id: string; number: string; owner: string }[];
  /** In the store but not in the file, removed (reconcile). */
  removed: string[];
}

const same = (a: TenantConfig, b: TenantConfig): boolean =>
  isDeepStrictEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));

/** Apply the file's tenants to the store in `mode`. Store errors propagate (the caller retries). */
export async function applyTenantsFile(store: TenantStore, file: readonly TenantConfig[], mode: TenantsFileMode): Promise<TenantsFileReport> {
  const r: TenantsFileReport = { mode, created: [], updated: [], unchanged: [], skipped: [], conflicting: [], removed: [] };
  const stored = new Map((await store.list()).map((t) => [t.id, t]));
  if (mode === 'reconcile') {
    // Removals first: a number moved from a removed tenant to a file tenant is free by then.
    const wanted = new Set(file.map((t) => t.id));
    for (const id of stored.keys()) if (!wanted.has(id) && (await store.delete(id))) r.removed.push(id);
  }
  let pending = file.filter((cfg) => {
    const old = stored.get(cfg.id);
    if (!old) return true;
    if (same(old, cfg)) r.unchanged.push(cfg.id);
    else if (mode === 'seed') r.skipped.push(cfg.id);
    else return true;
    return false;
  });
  // Two passes: a number moving between two file tenants is free once the other one is written.
  for (let pass = 1; pass <= 2 && pending.length > 0; pass++) {
    const retry: TenantConfig[] = [];
    for (const cfg of pending) {
      const w = await store.put(cfg, mode === 'seed' ? 'create' : 'upsert');
      if (w.ok) (w.created ? r.created : r.updated).push(cfg.id);
      else if (w.reason === 'number_taken') {
        if (pass === 1) retry.push(cfg);
        else r.conflicting.push({ id: cfg.id, number: w.number, owner: w.owner });
      } else if (w.reason === 'exists') r.skipped.push(cfg.id); // another pod created it meanwhile
    }
    pending = retry;
  }
  return r;
}

/** One info line for the outcome, and one warning per tenant the operator should look at. */
export function logTenantsFileReport(log: Logger, r: TenantsFileReport): void {
  for (const c of r.conflicting) {
    log.warn({ code: 'conflict', tenant: c.id, number: c.number, owner: c.owner }, 'tenants file: tenant not applied: one of its numbers belongs to another tenant');
  }
  if (r.skipped.length > 0) {
    log.warn(
      { tenants: r.skipped, mode: r.mode },
      'tenants file: stored tenants differ from the file and were kept as stored (TENANTS_FILE_MODE=seed; reconcile makes the file win)',
    );
  }
  log.info(
    {
      mode: r.mode,
      created: r.created,
      updated: r.updated,
      unchanged: r.unchanged,
      skipped: r.skipped,
      conflicting: r.conflicting.map((c) => c.id),
      removed: r.removed,
    },
    'tenants file applied',
  );
}
