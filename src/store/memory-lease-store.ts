/** The single-process LeaseStore: same contract as Redis, one Map of expiries per tenant. */
import type { LeaseGrant, LeaseStore } from '../tenants/lease-store.js';

export class MemoryLeaseStore implements LeaseStore {
  private readonly leases = new Map<string, Map<string, number>>();

  constructor(private readonly now: () => number = Date.now) {}

  private live(tenantId: string): Map<string, number> {
    let m = this.leases.get(tenantId);
    if (!m) {
      m = new Map();
      this.leases.set(tenantId, m);
    }
    const t = this.now();
    for (const [sid, exp] of m) if (exp <= t) m.delete(sid);
    return m;
  }

  acquire(tenantId: string, callSid: string, limit: number, ttlMs: number): Promise<LeaseGrant> {
    const m = this.live(tenantId);
    const exp = this.now() + ttlMs;
    const held = m.get(callSid);
    if (held !== undefined) {
      m.set(callSid, Math.max(held, exp));
      return Promise.resolve({ granted: true, active: m.size });
    }
    if (m.size >= limit) return Promise.resolve({ granted: false, active: m.size });
    m.set(callSid, exp);
    return Promise.resolve({ granted: true, active: m.size });
  }

  renew(tenantId: string, callSids: readonly string[], ttlMs: number): Promise<void> {
    const m = this.live(tenantId);
    const exp = this.now() + ttlMs;
    for (const sid of callSids) if (m.has(sid)) m.set(sid, exp);
    return Promise.resolve();
  }

  release(tenantId: string, callSid: string): Promise<boolean> {
    return Promise.resolve(this.leases.get(tenantId)?.delete(callSid) ?? false);
  }

  count(tenantId: string): Promise<number> {
    return Promise.resolve(this.live(tenantId).size);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
