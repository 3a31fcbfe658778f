/**
 * Where tenant configurations live so every pod sees the same registry: one interface, an in-memory
 * and a Redis implementation. Stores hold configs with secret *references*; resolving them is the pod's job.
 */
import type { TenantConfig } from './tenant.js';

/** How a write treats an existing tenant with the same id. */
export type TenantWriteMode = 'create' | 'replace' | 'upsert';

/** The result of a write: phone numbers are unique across tenants, checked atomically with the write. */
export type TenantWrite =
  | { ok: true; created: boolean }
  | { ok: false; reason: 'exists' | 'not_found' }
  | { ok: false; reason: 'number_taken'; number: string; owner: string };

/** Every method rejects with SwitchboardError `store_unavailable` (retryable) when the store cannot answer. */
export interface TenantStore {
  list(): Promise<TenantConfig[]>;
  get(id: string): Promise<TenantConfig | undefined>;
  /** Write one tenant: `create` fails when the id exists, `replace` when it does not. */
  put(tenant: TenantConfig, mode: TenantWriteMode): Promise<TenantWrite>;
  /** False when there was no such tenant. */
  delete(id: string): Promise<boolean>;
  /**
   * Be told after any write by any pod. A hint only (pub/sub is at most once): callers reload the
   * whole list, and also reload on a timer. Resolves once the subscription is live.
   */
  subscribe(onChange: () => void): Promise<() => void>;
  /**
   * Whether this store was seeded since it last lost its data. A Redis restarted without persistence
   * comes back empty and without this mark: the registry then restores what it knows instead of
   * taking every tenant offline (an operator deleting every tenant leaves the mark in place).
   */
  initialised(): Promise<boolean>;
  markInitialised(): Promise<void>;
  close(): Promise<void>;
}
