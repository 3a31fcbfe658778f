/**
 * IPv6 address helpers for the SSRF guard and the connection rate limiter: the 16 bytes of an
 * address, the IPv4 address some IPv6 forms carry, and the /64 network a client sits in.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** The key every forwarded entry that is not an IP address shares (one bucket, not one per text). */
export const UNPARSABLE_ADDRESS = 'unparsable';

/** The 16 bytes of an IPv6 literal (zone id dropped), or undefined when it is not one. */
export function ipv6Bytes(address: string): Uint8Array | undefined {
  const addr = address.replace(/%.*$/, '');
  if (!isIPv6(addr)) return undefined;
  let groups: number[] = [];
  const [head = '', tail] = addr.split('::') as [string, string | undefined];
  const parse = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (isIPv4(g)) {
        const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else out.push(parseInt(g, 16));
    }
    return out;
  };
  const h = parse(head);
  if (tail === undefined) groups = h;
  else {
    const t = parse(tail);
    groups = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  });
  return bytes;
}

const quad = (b: Uint8Array, at: number): string => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
const zero = (b: Uint8Array, from: number, to: number): boolean => b.subarray(from, to).every((x) => x === 0);

/**
 * The IPv4 address an IPv6 address stands for, when it has one in a fixed place: IPv4-mapped
 * (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96), IPv4-compatible (::/96, deprecated), the
 * NAT64 well-known prefix (64:ff9b::/96) and 6to4 (2002::/16).
 */
export function embeddedIPv4(b: Uint8Array): string | undefined {
  if (zero(b, 0, 10) && b[10] === 0xff && b[11] === 0xff) return quad(b, 12);
  if (zero(b, 0, 8) && b[8] === 0xff && b[9] === 0xff && zero(b, 10, 12)) return quad(b, 12);
  if (zero(b, 0, 12)) return quad(b, 12);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(b, 4, 12)) return quad(b, 12);
  if (b[0] === 0x20 && b[1] === 0x02) return quad(b, 2);
  return undefined;
}

/**
 * The key a client address is rate-limited by: IPv4 as is (also when it arrives IPv4-mapped), IPv6
 * by its /64 — one customer network, where an attacker may hold every one of 2^64 addresses.
 */
export function clientNetwork(address: string): string {
  const b = ipv6Bytes(address);
  if (!b) return address;
  if (zero(b, 0, 10) && b[10] === 0xff && b[11] === 0xff) return quad(b, 12);
  const hex = Array.from({ length: 4 }, (_, i) => ((b[i * 2]! << 8) | b[i * 2 + 1]!).toString(16));
  return `${hex.join(':')}::/64`;
}

/**
 * One X-Forwarded-For entry as a bare address: `[v6]:port`, `[v6]` and `v4:port` lose brackets and
 * port, IPv4-mapped IPv6 becomes its IPv4 address. Anything else that is not an IP literal (names,
 * `unknown`, out-of-range octets) is UNPARSABLE_ADDRESS, so junk cannot mint a bucket per spelling.
 */
export function forwardedAddress(entry: string): string {
  let a = entry.trim();
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(a);
  if (bracketed) {
    if (!isIPv6(bracketed[1]!) || Number(bracketed[2] ?? 0) > 65_535) return UNPARSABLE_ADDRESS;
    a = bracketed[1]!;
  } else if (!isIPv6(a)) {
    const v4port = /^([\d.]+):(\d{1,5})$/.exec(a);
    if (v4port) {
      if (Number(v4port[2]) > 65_535) return UNPARSABLE_ADDRESS;
      a = v4port[1]!;
    }
    if (!isIPv4(a)) return UNPARSABLE_ADDRESS;
    return a;
  }
  const b = ipv6Bytes(a);
  if (b && zero(b, 0, 10) && b[10] === 0xff && b[11] === 0xff) return quad(b, 12);
  return a.toLowerCase();
}
