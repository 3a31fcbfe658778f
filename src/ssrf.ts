/**
 * The SSRF guard's address rules for tenant webhook tools: which IP addresses a tenant URL may
 * never reach (every range the IANA special-purpose registries list as not globally reachable,
 * plus multicast and everything IPv6 outside global unicast), and the save-time check of a URL.
 * No imports beyond node:net and ../ip.js, so the tenant loader can use it without a cycle.
 */
import { BlockList, isIP } from 'node:net';
import { embeddedIPv4, ipv6Bytes } from './ip.js';

const BLOCKED = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // RFC 1918
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata)
  ['172.16.0.0', 12], // RFC 1918
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // TEST-NET-1
  ['192.88.99.0', 24], // 6to4 relay anycast (deprecated)
  ['192.168.0.0', 16], // RFC 1918
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // TEST-NET-2
  ['203.0.113.0', 24], // TEST-NET-3
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the limited broadcast 255.255.255.255
] as const) {
  BLOCKED.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['64:ff9b:1::', 48], // NAT64 local use: where the IPv4 address sits depends on the network
  ['100::', 64], // discard-only
  ['100:0:0:1::', 64], // dummy prefix
  ['2001::', 23], // IETF protocol assignments: Teredo 2001::/32 (client address obfuscated), benchmarking 2001:2::/48, ORCHID 2001:10::/28, ORCHIDv2 2001:20::/28
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation
  ['5f00::', 16], // SRv6 SIDs
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  BLOCKED.addSubnet(net, prefix, 'ipv6');
}
/** IPv6 global unicast: anything else is reserved by the IETF or one of the special ranges above. */
const GLOBAL_UNICAST = new BlockList();
GLOBAL_UNICAST.addSubnet('2000::', 3, 'ipv6');

/** True when `address` (an IP literal) is private, loopback, link-local or otherwise not public. */
export function isBlockedAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  if (family === 6) {
    // An IPv6 form that carries an IPv4 address (mapped, translated, compatible, NAT64, 6to4)
    // reaches that address: judge it as the IPv4 address (::7f00:1 is 127.0.0.1).
    const bytes = ipv6Bytes(address);
    const v4 = bytes && embeddedIPv4(bytes);
    if (v4 !== undefined) return BLOCKED.check(v4, 'ipv4');
    return BLOCKED.check(address, 'ipv6') || !GLOBAL_UNICAST.check(address, 'ipv6');
  }
  return BLOCKED.check(address, 'ipv4');
}

/**
 * What is wrong with a webhook tool URL at save time (admin API, TENANTS_FILE), or undefined. Refuses
 * userinfo always (credentials do not belong in tenant config, and `a@b` hides the real host), and,
 * unless `allowPrivate` (WEBHOOK_TOOLS_ALLOW_PRIVATE), `localhost` names and IP literals in a blocked
 * range. Host names are checked again at call time on every resolved address: DNS can change.
 */
export function webhookUrlProblem(url: string, allowPrivate: boolean): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'must be an https URL';
  }
  if (u.username !== '' || u.password !== '') return 'must not carry a user name or password (user:password@)';
  if (allowPrivate) return undefined;
  // WHATWG URL parsing already turned 0x7f000001 and friends into dotted quads.
  const host = u.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return `host ${host} is localhost, not a public address`;
  if (isIP(host) !== 0 && isBlockedAddress(host)) return `host ${host} is not a public address`;
  return undefined;
}
