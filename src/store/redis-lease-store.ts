/**
 * LeaseStore on Redis: one sorted set per tenant, member = CallSid, score = expiry (unix ms).
 * Acquire is one Lua script (sweep expired, count, add), so pods racing for the last slot cannot
 * both win. Expiries come from the pods' clocks (NTP-synchronised; TTLs are tens of seconds).
 */
import type { Redis } from 'ioredis';
import type { LeaseGrant, LeaseStore } from '../tenants/lease-store.js';

// KEYS: lease zset. ARGV: now, callSid, limit, expiry, keyTtlMs.
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZSCORE', KEYS[1], ARGV[2])
if held then
  redis.call('ZADD', KEYS[1], 'GT', ARGV[4], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {1, redis.call('ZCARD', KEYS[1])}
end
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[3]) then return {0, n} end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, n + 1}
`;

/**
 * The set itself expires long after any lease could: a tenant deleted with leases held leaves
 * nothing behind. Every write pushes it forward.
 */
const KEY_TTL_MS = 24 * 3600 * 1000;

interface LeaseScripts {
  sbLeaseAcquire(...args: (string | number)[]): Promise<[number, number]>;
}

export class RedisLeaseStore implements LeaseStore {
  private readonly scripts: LeaseScripts;

  /** `redis` is shared and not closed here. */
  constructor(
    private readonly redis: Redis,
    private readonly now: () => number = Date.now,
  ) {
    // Defined once, sent as EVALSHA (the script text only when Redis lacks it, e.g. after a restart).
    redis.defineCommand('sbLeaseAcquire', { lua: ACQUIRE, numberOfKeys: 1 });
    this.scripts = redis as unknown as LeaseScripts;
  }

  private key(tenantId: string): string {
    return `lease:${tenantId}`;
  }

  async acquire(tenantId: string, callSid: string, limit: number, ttlMs: number): Promise<LeaseGrant> {
    const now = this.now();
    const r = await this.scripts.sbLeaseAcquire(this.key(tenantId), now, callSid, limit, now + ttlMs, KEY_TTL_MS);
    return { granted: r[0] === 1, active: r[1] };
  }

  async renew(tenantId: string, callSids: readonly string[], ttlMs: number): Promise<void> {
    if (callSids.length === 0) return;
    const exp = this.now() + ttlMs;
    const args: (string | number)[] = [];
    for (const sid of callSids) args.push(exp, sid);
    // XX: only leases that still exist; a call released meanwhile must not come back.
    await this.redis.multi().zadd(this.key(tenantId), 'XX', ...args).pexpire(this.key(tenantId), KEY_TTL_MS).exec();
  }

  async release(tenantId: string, callSid: string): Promise<boolean> {
    return (await this.redis.zrem(this.key(tenantId), callSid)) === 1;
  }

  async count(tenantId: string): Promise<number> {
    return this.redis.zcount(this.key(tenantId), `(${this.now()}`, '+inf');
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
