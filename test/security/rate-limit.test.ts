/** ConnectionRateLimiter (token bucket per address, bounded memory) and clientAddress (X-Forwarded-For trust). */
import { describe, expect, it } from 'vitest';
import { ConnectionRateLimiter, clientAddress } from '../../src/server/rate-limit.js';

describe('ConnectionRateLimiter', () => {
  it('buckets IPv6 clients by /64 (one customer network), IPv4-mapped clients by their IPv4 address', () => {
    const rl = new ConnectionRateLimiter({ perMinute: 1, burst: 2, now: () => 0 });
    const sameNet = Array.from({ length: 50 }, (_, i) => `2001:db8:1:2:${i.toString(16)}::${(i * 7).toString(16)}`);
    expect(sameNet.map((a) => rl.admit(a)).filter(Boolean)).toHaveLength(2);
    expect(rl.size).toBe(1);
    expect(rl.admit('2001:db8:1:3::1'), 'the next /64 has its own bucket').toBe(true);
    expect([rl.admit('::ffff:192.0.2.1'), rl.admit('192.0.2.1'), rl.admit('::ffff:c000:201')]).toEqual([true, true, false]);
    expect(rl.admit('::ffff:192.0.2.2'), 'each IPv4 client keeps its own bucket').toBe(true);
  });

  it('allows a burst, then the sustained rate, per address', () => {
    let t = 0;
    const rl = new ConnectionRateLimiter({ perMinute: 60, burst: 3, now: () => t });
    expect([rl.admit('a'), rl.admit('a'), rl.admit('a'), rl.admit('a')]).toEqual([true, true, true, false]);
    expect(rl.admit('b')).toBe(true);
    t += 999;
    expect(rl.admit('a')).toBe(false);
    t += 1;
    expect(rl.admit('a')).toBe(true);
    expect(rl.admit('a')).toBe(false);
    t += 60_000;
    expect([rl.admit('a'), rl.admit('a'), rl.admit('a'), rl.admit('a')]).toEqual([true, true, true, false]);
  });

  it('refused attempts do not earn credit', () => {
    let t = 0;
    const rl = new ConnectionRateLimiter({ perMinute: 6, burst: 1, now: () => t });
    expect(rl.admit('a')).toBe(true);
    for (let i = 0; i < 9; i++) {
      t += 1000;
      expect(rl.admit('a')).toBe(false);
    }
    t += 1000;
    expect(rl.admit('a')).toBe(true);
  });

  it('keeps memory bounded under a flood of new addresses, forgetting the least recently seen', () => {
    let t = 0;
    const rl = new ConnectionRateLimiter({ perMinute: 1, burst: 1, now: () => t, maxAddresses: 100 });
    expect(rl.admit('attacker')).toBe(true);
    expect(rl.admit('attacker')).toBe(false);
    for (let i = 0; i < 10_000; i++) {
      t += 1;
      rl.admit(`10.0.${i >> 8}.${i & 255}`);
      expect(rl.size).toBeLessThanOrEqual(100);
    }
    // Forgotten means a fresh bucket: the bound costs precision only for addresses not seen lately.
    expect(rl.admit('attacker')).toBe(true);
  });

  it('evicts refilled buckets before recent ones', () => {
    let t = 0;
    const rl = new ConnectionRateLimiter({ perMinute: 60, burst: 1, now: () => t, maxAddresses: 2 });
    rl.admit('old');
    t += 5_000; // "old" has refilled
    rl.admit('busy');
    rl.admit('new'); // full: "old" goes, "busy" (empty bucket) stays
    expect(rl.size).toBe(2);
    expect(rl.admit('busy')).toBe(false);
  });

  it('rejects nonsense options', () => {
    expect(() => new ConnectionRateLimiter({ perMinute: 0, burst: 1, now: Date.now })).toThrow(/perMinute/);
    expect(() => new ConnectionRateLimiter({ perMinute: 10, burst: 0, now: Date.now })).toThrow(/burst/);
  });
});

describe('clientAddress', () => {
  it('ignores X-Forwarded-For unless proxies are trusted', () => {
    expect(clientAddress('10.1.1.1', '6.6.6.6', 0)).toBe('10.1.1.1');
  });
  it('takes the address the trusted proxy saw, not what the client claimed', () => {
    expect(clientAddress('10.1.1.1', 'spoofed, 203.0.113.7', 1)).toBe('203.0.113.7');
    expect(clientAddress('10.1.1.1', 'spoofed, 203.0.113.7, 10.2.2.2', 2)).toBe('203.0.113.7');
  });
  it('normalises the forwarded entry: no port, no brackets, IPv4-mapped as IPv4, junk as one key', () => {
    expect(clientAddress('10.1.1.1', 'x, 198.51.100.77:1', 1)).toBe('198.51.100.77');
    expect(clientAddress('10.1.1.1', '[2001:db8:9:9::1]:1', 1)).toBe('2001:db8:9:9::1');
    expect(clientAddress('10.1.1.1', '[2001:db8:9:9::1]', 1)).toBe('2001:db8:9:9::1');
    expect(clientAddress('10.1.1.1', '::ffff:198.51.100.8', 1)).toBe('198.51.100.8');
    expect(clientAddress('10.1.1.1', '[::ffff:c633:6408]:443', 1)).toBe('198.51.100.8');
    expect(clientAddress('10.1.1.1', '  203.0.113.7  ', 1)).toBe('203.0.113.7');
    for (const junk of ['unknown', 'junk:1', '999.1.1.1', '[1.2.3.4]', '0x7f.1', '[::1', '1.2.3.4:', '1.2.3.4:99999', '_hidden']) {
      expect(clientAddress('10.1.1.1', junk, 1), junk).toBe('unparsable');
    }
  });
  it('falls back to the peer when the header is missing or too short', () => {
    expect(clientAddress('10.1.1.1', undefined, 1)).toBe('10.1.1.1');
    expect(clientAddress('10.1.1.1', '203.0.113.7', 2)).toBe('10.1.1.1');
  });
});
