/**
 * Connection-attempt limits per remote address for the media socket upgrade: a token bucket per
 * address with bounded memory. Which address to key on (socket peer or X-Forwarded-For) is decided
 * by `clientAddress`, trusting forwarded headers only when the operator says a proxy sets them.
 */
import { clientNetwork, forwardedAddress } from '../ip.js';

interface Bucket {
  tokens: number;
  at: number;
}

export interface ConnectionRateLimiterOptions {
  /** Sustained attempts per minute per address. */
  perMinute: number;
  /** Attempts an idle address may make at once. */
  burst: number;
  now: () => number;
  /** Addresses tracked at most; past it the least recently seen go first. Default 10 000. */
  maxAddresses?: number;
}

export class ConnectionRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private readonly burst: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(o: ConnectionRateLimiterOptions) {
    if (!(o.perMinute > 0) || !Number.isFinite(o.perMinute)) throw new RangeError(`perMinute must be a positive number (got ${o.perMinute})`);
    if (!Number.isInteger(o.burst) || o.burst < 1) throw new RangeError(`burst must be a whole number of at least 1 (got ${o.burst})`);
    this.perMs = o.perMinute / 60_000;
    this.burst = o.burst;
    this.max = o.maxAddresses ?? 10_000;
    if (!Number.isInteger(this.max) || this.max < 1) throw new RangeError(`maxAddresses must be a whole number of at least 1 (got ${this.max})`);
    this.now = o.now;
  }

  /**
   * Count one attempt from `client`; false when it is over its limit (refuse the upgrade, 429).
   * IPv6 clients share the bucket of their /64, IPv4-mapped ones that of their IPv4 address.
   */
  admit(client: string): boolean {
    const address = clientNetwork(client);
    const t = this.now();
    const b = this.buckets.get(address);
    let tokens = this.burst;
    if (b) {
      tokens = Math.min(this.burst, b.tokens + Math.max(0, t - b.at) * this.perMs);
      // Re-insert: Map order is then least recently seen first, which is what eviction wants.
      this.buckets.delete(address);
    } else if (this.buckets.size >= this.max) {
      this.evict(t);
    }
    // Refill accumulates in floating point (0.1 + 0.1 + … falls just short of 1): allow for it.
    if (tokens < 1 - 1e-9) {
      this.buckets.set(address, { tokens, at: t });
      return false;
    }
    this.buckets.set(address, { tokens: Math.max(0, tokens - 1), at: t });
    return true;
  }

  /** Addresses currently tracked (bounded by maxAddresses). */
  get size(): number {
    return this.buckets.size;
  }

  private evict(t: number): void {
    // First drop buckets that have refilled: forgetting them changes nothing.
    for (const [addr, b] of this.buckets) {
      if (b.tokens + (t - b.at) * this.perMs >= this.burst) this.buckets.delete(addr);
    }
    // Still full: drop the least recently seen (a flood of new addresses cannot grow memory).
    const excess = this.buckets.size - this.max + 1;
    if (excess <= 0) return;
    let n = 0;
    for (const addr of this.buckets.keys()) {
      if (n++ >= excess) break;
      this.buckets.delete(addr);
    }
  }
}

/**
 * The address to rate-limit on. Behind an ingress the socket peer is the proxy, so every caller
 * would share one bucket; with `trustedProxyHops` > 0 the address that many hops from the right
 * of X-Forwarded-For is used (each trusted proxy appends the address it saw). With 0, or when the
 * header is missing or shorter than the hop count, the socket peer is used: a client cannot pick
 * its own bucket by sending the header. The entry is normalised by `forwardedAddress` (no port or
 * brackets, IPv4-mapped as IPv4, junk as one shared key): a new source port is not a new bucket.
 */
export function clientAddress(peer: string, forwardedFor: string | undefined, trustedProxyHops: number): string {
  if (trustedProxyHops <= 0 || !forwardedFor) return peer;
  const hops = forwardedFor
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const hop = hops[hops.length - trustedProxyHops];
  return hop === undefined ? peer : forwardedAddress(hop);
}
