/**
 * The one-time resume token a moved call's `<Parameter name="resume">` carries: HMAC-signed claims
 * (the stream token's format, its own version tag) binding the new stream to one CallSid and tenant,
 * saying why the call moves, expiring in minutes. Consuming its `jti` once is the store's job
 * (consumeOnce), so a replayed resume is refused on every pod.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { SwitchboardError } from '../errors.js';
import { bindingProblem, signClaims, verifiedClaims } from './stream-token.js';

/** Why a call moves: its pod drained (Twilio call update), or died (after-stream redirect). */
export type MigrationReason = 'drain' | 'crash';

export interface ResumeTokenClaims {
  callSid: string;
  tenantId: string;
  reason: MigrationReason;
  /** Expiry, unix ms. */
  exp: number;
  /** Unique id; the store consumes it once. */
  jti: string;
}

export type ResumeTokenCheck =
  | { ok: true; claims: ResumeTokenClaims }
  | { ok: false; reason: 'malformed' | 'bad_signature' | 'expired' | 'wrong_call' | 'wrong_tenant' };

const VERSION = 'r1';
/**
 * Long enough for a paced drain to reach the call's update and Twilio to open the new stream; short
 * enough that a token read off a log is useless soon after.
 */
export const RESUME_TOKEN_TTL_MS = 120_000;

const Claims = z.object({
  callSid: z.string().min(1),
  tenantId: z.string().min(1),
  reason: z.enum(['drain', 'crash']),
  exp: z.number().int().nonnegative(),
  jti: z.string().min(1),
});

/**
 * Mint a resume token for `callSid` (STREAM_TOKEN_SECRET, the same on every pod).
 * @throws SwitchboardError `internal` for an empty secret or a bad ttl.
 */
export function mintResumeToken(
  secret: string,
  claims: { callSid: string; tenantId: string; reason: MigrationReason },
  opts: { now: number; ttlMs?: number; jti?: string },
): string {
  const ttlMs = opts.ttlMs ?? RESUME_TOKEN_TTL_MS;
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw new SwitchboardError('internal', `resume token ttlMs must be a positive integer (got ${ttlMs})`);
  }
  const body: ResumeTokenClaims = {
    callSid: claims.callSid,
    tenantId: claims.tenantId,
    reason: claims.reason,
    exp: Math.floor(opts.now) + ttlMs,
    jti: opts.jti ?? randomBytes(16).toString('base64url'),
  };
  return signClaims(secret, VERSION, body);
}

/**
 * Check a resume token from `start.customParameters.resume`: signature first, then expiry, then the
 * binding to this call and tenant. Never throws; a valid answer still needs `consumeOnce(jti)`.
 */
export function verifyResumeToken(
  secret: string,
  token: string | undefined,
  expect: { callSid: string; tenantId: string; now: number },
): ResumeTokenCheck {
  const r = verifiedClaims(secret, VERSION, token, Claims);
  if (!r.ok) return r;
  const problem = bindingProblem(r.claims, expect);
  return problem ? { ok: false, reason: problem } : { ok: true, claims: r.claims };
}
