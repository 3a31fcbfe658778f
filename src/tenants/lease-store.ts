/**
 * Per-tenant concurrency leases keyed by CallSid, each with an expiry, so a crashed pod's calls stop
 * counting once their TTL passes. One interface, in-memory and Redis implementations; timing policy
 * (initial TTL, heartbeat) belongs to the caller (tenants/leases.ts).
 */

export type LeaseGrant = { granted: true; active: number } | { granted: false; active: number };

export interface LeaseStore {
  /**
   * Atomically: drop expired leases of `tenantId`, then take one for `callSid` if fewer than `limit`
   * are held. Taking a lease the call already holds succeeds (a retried webhook) and extends it.
   * `active` counts live leases after the attempt.
   */
  acquire(tenantId: string, callSid: string, limit: number, ttlMs: number): Promise<LeaseGrant>;
  /** Push the expiry of leases that still exist to now + ttlMs; released or expired ones stay gone. */
  renew(tenantId: string, callSids: readonly string[], ttlMs: number): Promise<void>;
  /** False when the call held no lease (already released or expired). */
  release(tenantId: string, callSid: string): Promise<boolean>;
  /** Live (unexpired) leases of a tenant. */
  count(tenantId: string): Promise<number>;
  close(): Promise<void>;
}
