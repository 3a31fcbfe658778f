/**
 * The single-process TenantStore of `npm start`: same contract as Redis, change notifications
 * delivered in-process. Configs are cloned in and out so callers cannot mutate the store.
 */
import type { TenantConfig } from '../tenants/tenant.js';
import type { TenantStore, TenantWrite, TenantWriteMode } from '../tenants/tenant-store.js';

export class MemoryTenantStore implements TenantStore {
  private readonly tenants = new Map<string, TenantConfig>();
  private readonly listeners = new Set<() => void>();
  private marked = false;

  initialised(): Promise<boolean> {
    return Promise.resolve(this.marked);
  }

  markInitialised(): Promise<void> {
    this.marked = true;
    return Promise.resolve();
  }

  list(): Promise<TenantConfig[]> {
    return Promise.resolve([...this.tenants.values()].map((t) => structuredClone(t)));
  }

  get(id: string): Promise<TenantConfig | undefined> {
    const t = this.tenants.get(id);
    return Promise.resolve(t ? structuredClone(t) : undefined);
  }

  put(tenant: TenantConfig, mode: TenantWriteMode): Promise<TenantWrite> {
    const old = this.tenants.get(tenant.id);
    if (mode === 'create' && old) return Promise.resolve({ ok: false, reason: 'exists' });
    if (mode === 'replace' && !old) return Promise.resolve({ ok: false, reason: 'not_found' });
    for (const number of tenant.phoneNumbers) {
      for (const other of this.tenants.values()) {
        if (other.id !== tenant.id && other.phoneNumbers.includes(number)) {
          return Promise.resolve({ ok: false, reason: 'number_taken', number, owner: other.id });
        }
      }
    }
    this.tenants.set(tenant.id, structuredClone(tenant));
    this.changed();
    return Promise.resolve({ ok: true, created: !old });
  }

  delete(id: string): Promise<boolean> {
    const had = this.tenants.delete(id);
    if (had) this.changed();
    return Promise.resolve(had);
  }

  subscribe(onChange: () => void): Promise<() => void> {
    this.listeners.add(onChange);
    return Promise.resolve(() => {
      this.listeners.delete(onChange);
    });
  }

  close(): Promise<void> {
    this.listeners.clear();
    return Promise.resolve();
  }

  private changed(): void {
    // Asynchronous like Redis pub/sub, so callers never rely on a synchronous callback.
    for (const fn of this.listeners) queueMicrotask(fn);
  }
}
