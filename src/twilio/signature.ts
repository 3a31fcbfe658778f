/**
 * X-Twilio-Signature (HMAC-SHA1) for form webhooks and the media-socket upgrade (docs/wire-formats.md §3).
 * Pure: the caller builds the URL from PUBLIC_URL and picks the tenant's auth token.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The signature Twilio would send: HMAC-SHA1(authToken, url + each field as name+value, names sorted,
 * a repeated name once per distinct value, values sorted), base64. Same algorithm as twilio-node's
 * `getExpectedTwilioSignature`.
 */
export function computeTwilioSignature(authToken: string, url: string, params: Record<string, string | string[]>): string {
  let data = url;
  for (const name of Object.keys(params).sort()) {
    const value = params[name];
    if (value === undefined) continue;
    if (typeof value === 'string') data += name + value;
    else for (const v of Array.from(new Set(value)).sort()) data += name + v;
  }
  return createHmac('sha1', authToken).update(data, 'utf8').digest('base64');
}

/**
 * Validate a form webhook. `url` = PUBLIC_URL base + the original path and query (never Host headers).
 * Twilio strips the port from HTTPS voice URLs before signing, and twilio-node also tries the default
 * port: all three forms are accepted. Compared in constant time.
 */
export function validateTwilioSignature(
  authToken: string,
  signature: string | undefined,
  url: string,
  params: Record<string, string | string[]>,
): boolean {
  if (!signature || !authToken) return false;
  return portVariants(url).some((u) => safeEqual(signature, computeTwilioSignature(authToken, u, params)));
}

/**
 * The media-socket upgrade: a body-less GET, signed over the `<Stream url>` as written (wss://host/path)
 * with no params. Twilio's security page says to retry with a trailing `/` when a WSS handshake fails.
 */
export function validateUpgradeSignature(authToken: string, signature: string | undefined, wssUrl: string): boolean {
  if (!signature || !authToken) return false;
  const forms = wssUrl.endsWith('/') ? [wssUrl] : [wssUrl, `${wssUrl}/`];
  return forms.some((form) => portVariants(form).some((u) => safeEqual(signature, computeTwilioSignature(authToken, u, {}))));
}

function safeEqual(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  // Length is fixed by SHA-1 (28 base64 chars) and not secret; timingSafeEqual throws on a mismatch.
  return a.length === b.length && timingSafeEqual(a, b);
}

const DEFAULT_PORT: Readonly<Record<string, string>> = { 'https://': ':443', 'wss://': ':443', 'http://': ':80', 'ws://': ':80' };

/** The URL as given, without its port, and with the scheme's default port (deduplicated). */
function portVariants(url: string): string[] {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)/i.exec(url);
  if (!m) return [url];
  const scheme = m[1] ?? '';
  const authority = m[2] ?? '';
  const rest = url.slice(m[0].length);
  const at = authority.lastIndexOf('@');
  const userInfo = authority.slice(0, at + 1);
  const hostPort = authority.slice(at + 1);
  // In an IPv6 literal the port colon comes after the closing bracket.
  const colon = hostPort.indexOf(':', hostPort.lastIndexOf(']') + 1);
  const host = colon === -1 ? hostPort : hostPort.slice(0, colon);
  const out = [url, scheme + userInfo + host + rest];
  const port = DEFAULT_PORT[scheme.toLowerCase()];
  if (colon === -1 && port !== undefined) out.push(scheme + userInfo + host + port + rest);
  return [...new Set(out)];
}
