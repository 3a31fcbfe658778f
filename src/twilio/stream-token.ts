/**
 * The one-time stream token the voice webhook puts in `<Parameter name="token">`: HMAC-signed claims
 * binding the media stream to one CallSid and tenant. Consuming it once is the store's job (consumeOnce).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { SwitchboardError } from '../errors.js';

export interface StreamTokenClaims {
  callSid: string;
  tenantId: string;
  /** Expiry, unix ms. */
  exp: number;
  /** Unique id; the store consumes it once. */
  jti: string;
}

export type TokenCheck =
  | { ok: true; claims: StreamTokenClaims }
  | { ok: false; reason: 'malformed' | 'bad_signature' | 'expired' | 'wrong_call' | 'wrong_tenant' };

const VERSION = 'v1';
/** Twilio's `<Parameter>` limit is 500 chars for name + value; stay well under it. */
export const MAX_STREAM_TOKEN_CHARS = 400;

const B64URL = /^[A-Za-z0-9_-]+$/;

const Claims = z.object({
  callSid: z.string().min(1),
  tenantId: z.string().min(1),
  exp: z.number().int().nonnegative(),
  jti: z.string().min(1),
});

function sign(secret: string, signingInput: string): string {
  return createHmac('sha256', secret).update(signingInput, 'utf8').digest('base64url');
}

/**
 * Sign `body` as `<version>.<base64url JSON>.<base64url HMAC-SHA256 over "<version>.<JSON part>">`
 * (shared by the stream and resume tokens).
 * @throws SwitchboardError `internal` for an empty secret or a token that would not fit a `<Parameter>`.
 */
export function signClaims(secret: string, version: string, body: object): string {
  if (secret.length === 0) throw new SwitchboardError('internal', 'stream token secret is empty');
  const signingInput = `${version}.${Buffer.from(JSON.stringify(body), 'utf8').toString('base64url')}`;
  const token = `${signingInput}.${sign(secret, signingInput)}`;
  if (token.length > MAX_STREAM_TOKEN_CHARS) {
    throw new SwitchboardError('internal', `stream token is ${token.length} chars, over ${MAX_STREAM_TOKEN_CHARS}`);
  }
  return token;
}

/** The claims of a `signClaims` token whose version and signature (constant time) check out, parsed by `schema`. */
export function verifiedClaims<T>(
  secret: string,
  version: string,
  token: string | undefined,
  schema: z.ZodType<T>,
): { ok: true; claims: T } | { ok: false; reason: 'malformed' | 'bad_signature' } {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_STREAM_TOKEN_CHARS) {
    return { ok: false, reason: 'malformed' };
  }
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, reason: 'malformed' };
  const [v, payload, signature] = parts as [string, string, string];
  if (v !== version || !B64URL.test(payload) || !B64URL.test(signature)) return { ok: false, reason: 'malformed' };
  if (secret.length === 0) return { ok: false, reason: 'bad_signature' };
  const want = Buffer.from(sign(secret, `${v}.${payload}`), 'latin1');
  const got = Buffer.from(signature, 'latin1');
  if (want.length !== got.length || !timingSafeEqual(want, got)) return { ok: false, reason: 'bad_signature' };
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  const r = schema.safeParse(raw);
  return r.success ? { ok: true, claims: r.data } : { ok: false, reason: 'malformed' };
}

/**
 * Issue a compact token `v1.<base64url claims JSON>.<base64url HMAC-SHA256 over "v1.<claims>">`.
 * @throws SwitchboardError `internal` for an empty secret, a bad ttl, or a token that would not fit
 *   a Twilio `<Parameter>`.
 */
export function issueStreamToken(
  secret: string,
  claims: { callSid: string; tenantId: string },
  opts: { now: number; ttlMs: number; jti?: string },
): string {
  if (!Number.isSafeInteger(opts.ttlMs) || opts.ttlMs <= 0) {
    throw new SwitchboardError('internal', `stream token ttlMs must be a positive integer (got ${opts.ttlMs})`);
  }
  const body: StreamTokenClaims = {
    callSid: claims.callSid,
    tenantId: claims.tenantId,
    exp: Math.floor(opts.now) + opts.ttlMs,
    jti: opts.jti ?? randomBytes(16).toString('base64url'),
  };
  return signClaims(secret, VERSION, body);
}

/**
 * Check a token from `start.customParameters`: signature (constant time) first, then expiry, then
 * the binding to this call and tenant. Never throws. A valid answer still needs `consumeOnce(jti)`.
 */
export function verifyStreamToken(
  secret: string,
  token: string | undefined,
  expect: { callSid: string; tenantId: string; now: number },
): TokenCheck {
  const r = verifiedClaims(secret, VERSION, token, Claims);
  if (!r.ok) return r;
  const problem = bindingProblem(r.claims, expect);
  return problem ? { ok: false, reason: problem } : { ok: true, claims: r.claims };
}

/** A signed token's expiry and its binding to this call and tenant (stream and resume tokens alike). */
export function bindingProblem(
  claims: { exp: number; callSid: string; tenantId: string },
  expect: { callSid: string; tenantId: string; now: number },
): 'expired' | 'wrong_call' | 'wrong_tenant' | undefined {
  if (expect.now >= claims.exp) return 'expired';
  if (claims.callSid !== expect.callSid) return 'wrong_call';
  if (claims.tenantId !== expect.tenantId) return 'wrong_tenant';
  return undefined;
}
