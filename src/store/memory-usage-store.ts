/**
 * The single-process UsageStore of `npm start` and tests: same contract as Redis (idempotent
 * running totals, hour/day/month buckets). A call's totals expire with its retention, as in Redis;
 * buckets live as long as the process.
 */
import {
  USAGE_FIELDS,
  USAGE_GRANULARITIES,
  bucketId,
  bucketStart,
  emptyUsage,
  type UsageBucket,
  type UsageCallRef,
  type UsageGranularity,
  type UsageStore,
  type UsageTotals,
} from './usage-store.js';

export class MemoryUsageStore implements UsageStore {
  private readonly calls = new Map<string, { totals: UsageTotals; expiresAt: number }>();
  /** `tenant\0granularity\0bucketId` -> totals. */
  private readonly buckets_ = new Map<string, { start: number; totals: UsageTotals }>();
  private readonly tenantIds = new Set<string>();
  private writes = 0;

  constructor(private readonly now: () => number = Date.now) {}

  record(call: UsageCallRef, totals: Readonly<UsageTotals>, at: number): Promise<void> {
    const key = `${call.tenantId}\u0000${call.callSid}`;
    this.prune();
    const prev = this.calls.get(key)?.totals ?? emptyUsage();
    const delta = emptyUsage();
    let changed = false;
    for (const f of USAGE_FIELDS) {
      if (totals[f] > prev[f]) {
        delta[f] = totals[f] - prev[f];
        prev[f] = totals[f];
        changed = true;
      }
    }
    this.calls.set(key, { totals: prev, expiresAt: this.now() + call.retentionSeconds * 1000 });
    if (!changed) return Promise.resolve();
    this.tenantIds.add(call.tenantId);
    for (const g of USAGE_GRANULARITIES) {
      const k = `${call.tenantId}\u0000${g}\u0000${bucketId(g, at)}`;
      let b = this.buckets_.get(k);
      if (!b) this.buckets_.set(k, (b = { start: bucketStart(g, at), totals: emptyUsage() }));
      for (const f of USAGE_FIELDS) b.totals[f] += delta[f];
    }
    return Promise.resolve();
  }

  callUsage(tenantId: string, callSid: string): Promise<UsageTotals | undefined> {
    const u = this.calls.get(`${tenantId}\u0000${callSid}`);
    return Promise.resolve(u && u.expiresAt > this.now() ? { ...u.totals } : undefined);
  }

  buckets(tenantId: string, g: UsageGranularity, from: number, to: number): Promise<UsageBucket[]> {
    const prefix = `${tenantId}\u0000${g}\u0000`;
    const out: UsageBucket[] = [];
    for (const [k, b] of this.buckets_) {
      if (k.startsWith(prefix) && b.start >= from && b.start < to) out.push({ start: b.start, totals: { ...b.totals } });
    }
    return Promise.resolve(out.sort((a, b) => a.start - b.start));
  }

  bucket(tenantId: string, g: UsageGranularity, at: number): Promise<UsageTotals> {
    const b = this.buckets_.get(`${tenantId}\u0000${g}\u0000${bucketId(g, at)}`);
    return Promise.resolve(b ? { ...b.totals } : emptyUsage());
  }

  tenants(): Promise<string[]> {
    return Promise.resolve([...this.tenantIds].sort());
  }

  /** Drop expired calls: a full pass every 1,000 writes keeps the cost per write constant. */
  private prune(): void {
    if (++this.writes % 1000 !== 0) return;
    const t = this.now();
    for (const [k, c] of this.calls) if (c.expiresAt <= t) this.calls.delete(k);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
