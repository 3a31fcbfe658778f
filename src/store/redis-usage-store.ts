/**
 * The Redis UsageStore: each call's running totals and per-tenant hour/day/month buckets, changed
 * together by one Lua script so every pod adds to the same buckets exactly once per unit used.
 * Connection policy is redis-connection.ts's; docs/operators.md describes the billing export.
 */
import type { Redis } from 'ioredis';
import { storeUnavailable } from './redis-connection.js';
import {
  USAGE_FIELDS,
  bucketId,
  emptyUsage,
  nextBucket,
  bucketStart,
  type UsageBucket,
  type UsageCallRef,
  type UsageGranularity,
  type UsageStore,
  type UsageTotals,
} from './usage-store.js';

/*
 * Keys (under the connection's keyPrefix, `sb:` by default; braces put a tenant's keys in one Redis
 * Cluster slot, so the script's keys always share it):
 *   usage:{<tenant>}:call:<CallSid>   hash field -> running total of the call (the call's retention)
 *   usage:{<tenant>}:h:2026120513     hash field -> sum over the hour (UTC)
 *   usage:{<tenant>}:d:20261205       hash field -> sum over the day
 *   usage:{<tenant>}:m:202612         hash field -> sum over the month
 *   usage:tenants                     set of tenants that recorded usage
 * Buckets expire USAGE_RETENTION_DAYS after their last write.
 */

const callKey = (tenant: string, sid: string): string => `usage:{${tenant}}:call:${sid}`;
const bucketKey = (tenant: string, g: UsageGranularity, at: number): string => `usage:{${tenant}}:${g[0]}:${bucketId(g, at)}`;

/**
 * KEYS: call, hour, day, month. ARGV: call ttl s, bucket ttl s, then field/total pairs. Only what
 * exceeds the call's recorded total is added, so a replayed write adds nothing.
 */
const RECORD = `
local changed = 0
for i = 3, #ARGV, 2 do
  local f = ARGV[i]
  local v = tonumber(ARGV[i + 1])
  local prev = tonumber(redis.call('HGET', KEYS[1], f) or '0')
  if v > prev then
    local d = string.format('%d', v - prev)
    redis.call('HSET', KEYS[1], f, ARGV[i + 1])
    for k = 2, 4 do redis.call('HINCRBY', KEYS[k], f, d) end
    changed = 1
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if changed == 1 then
  for k = 2, 4 do redis.call('EXPIRE', KEYS[k], ARGV[2]) end
end
return changed`;

interface Scripts {
  sbUsageRecord(...args: (string | number)[]): Promise<number>;
}

/** Buckets read per pipeline round trip. */
const CHUNK = 200;

export class RedisUsageStore implements UsageStore {
  private readonly s: Scripts;
  private readonly bucketTtl: number;

  constructor(
    /** Shared: the call store owns and quits it. */
    private readonly redis: Redis,
    o: { retentionDays?: number } = {},
  ) {
    this.bucketTtl = (o.retentionDays ?? 400) * 86_400;
    redis.defineCommand('sbUsageRecord', { lua: RECORD, numberOfKeys: 4 });
    this.s = redis as unknown as Scripts;
  }

  async record(call: UsageCallRef, totals: Readonly<UsageTotals>, at: number): Promise<void> {
    const t = call.tenantId;
    const args: (string | number)[] = [];
    for (const f of USAGE_FIELDS) if (totals[f] > 0) args.push(f, Math.round(totals[f]));
    try {
      await this.s.sbUsageRecord(
        callKey(t, call.callSid),
        bucketKey(t, 'hour', at),
        bucketKey(t, 'day', at),
        bucketKey(t, 'month', at),
        call.retentionSeconds,
        this.bucketTtl,
        ...args,
      );
      // Every time, not once per process: a Redis that lost its data must learn the tenant again.
      await this.redis.sadd('usage:tenants', t);
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  async callUsage(tenantId: string, callSid: string): Promise<UsageTotals | undefined> {
    let h: Record<string, string>;
    try {
      h = await this.redis.hgetall(callKey(tenantId, callSid));
    } catch (err) {
      throw storeUnavailable(err);
    }
    return Object.keys(h).length === 0 ? undefined : totalsFromHash(h);
  }

  async buckets(tenantId: string, g: UsageGranularity, from: number, to: number): Promise<UsageBucket[]> {
    const starts: number[] = [];
    for (let s = bucketStart(g, from); s < to; s = nextBucket(g, s)) if (s >= from) starts.push(s);
    const out: UsageBucket[] = [];
    try {
      for (let i = 0; i < starts.length; i += CHUNK) {
        const chunk = starts.slice(i, i + CHUNK);
        const p = this.redis.pipeline();
        for (const s of chunk) p.hgetall(bucketKey(tenantId, g, s));
        const res = (await p.exec()) ?? [];
        chunk.forEach((start, n) => {
          const [err, h] = res[n] ?? [new Error('no reply'), undefined];
          if (err) throw err;
          const hash = h as Record<string, string>;
          if (Object.keys(hash).length > 0) out.push({ start, totals: totalsFromHash(hash) });
        });
      }
    } catch (err) {
      throw storeUnavailable(err);
    }
    return out;
  }

  async bucket(tenantId: string, g: UsageGranularity, at: number): Promise<UsageTotals> {
    try {
      return totalsFromHash(await this.redis.hgetall(bucketKey(tenantId, g, at)));
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  async tenants(): Promise<string[]> {
    try {
      return (await this.redis.smembers('usage:tenants')).sort();
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function totalsFromHash(h: Record<string, string>): UsageTotals {
  const u = emptyUsage();
  for (const f of USAGE_FIELDS) {
    const v = h[f];
    if (v !== undefined) u[f] = Number(v);
  }
  return u;
}

