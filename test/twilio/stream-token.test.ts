import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SwitchboardError } from '../../src/errors.js';
import { issueStreamToken, MAX_STREAM_TOKEN_CHARS, verifyStreamToken } from '../../src/twilio/stream-token.js';

const SECRET = 'test-secret-0123456789';
const CALL = 'CA' + 'a'.repeat(32);
const TENANT = 'acme-plumbing';
const NOW = 1_760_000_000_000;
const TTL = 60_000;

const issue = (over: Partial<{ callSid: string; tenantId: string; jti: string }> = {}): string =>
  issueStreamToken(SECRET, { callSid: over.callSid ?? CALL, tenantId: over.tenantId ?? TENANT }, { now: NOW, ttlMs: TTL, jti: over.jti ?? 'jti-1' });
const expectCall = { callSid: CALL, tenantId: TENANT, now: NOW + 1000 };

/** Replace the middle part of a token with other claims, keeping the original signature. */
function withClaims(token: string, claims: unknown): string {
  const [v, , sig] = token.split('.');
  return `${v}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`;
}

describe('stream tokens', () => {
  it('round-trips valid claims, compact and Twilio-parameter sized', () => {
    const token = issue();
    expect(token).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(token.length).toBeLessThan(250);
    expect(verifyStreamToken(SECRET, token, expectCall)).toEqual({
      ok: true,
      claims: { callSid: CALL, tenantId: TENANT, exp: NOW + TTL, jti: 'jti-1' },
    });
  });

  it('gives each token a random jti unless one is given', () => {
    const a = issueStreamToken(SECRET, { callSid: CALL, tenantId: TENANT }, { now: NOW, ttlMs: TTL });
    const b = issueStreamToken(SECRET, { callSid: CALL, tenantId: TENANT }, { now: NOW, ttlMs: TTL });
    const ja = verifyStreamToken(SECRET, a, expectCall);
    const jb = verifyStreamToken(SECRET, b, expectCall);
    expect(ja.ok && jb.ok).toBe(true);
    if (ja.ok && jb.ok) {
      expect(ja.claims.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(ja.claims.jti).not.toBe(jb.claims.jti);
    }
  });

  it('expires at exp, not before', () => {
    const token = issue();
    expect(verifyStreamToken(SECRET, token, { ...expectCall, now: NOW + TTL - 1 }).ok).toBe(true);
    expect(verifyStreamToken(SECRET, token, { ...expectCall, now: NOW + TTL })).toEqual({ ok: false, reason: 'expired' });
  });

  it('binds the CallSid and the tenant', () => {
    expect(verifyStreamToken(SECRET, issue(), { ...expectCall, callSid: 'CA' + 'b'.repeat(32) })).toEqual({ ok: false, reason: 'wrong_call' });
    expect(verifyStreamToken(SECRET, issue(), { ...expectCall, tenantId: 'other' })).toEqual({ ok: false, reason: 'wrong_tenant' });
  });

  it('rejects a tampered payload, a tampered signature and a wrong secret', () => {
    const token = issue();
    const forged = withClaims(token, { callSid: CALL, tenantId: TENANT, exp: NOW + 10 * TTL, jti: 'jti-1' });
    expect(verifyStreamToken(SECRET, forged, expectCall)).toEqual({ ok: false, reason: 'bad_signature' });
    const lastChar = token.at(-2) === 'A' ? 'B' : 'A';
    const badSig = token.slice(0, -2) + lastChar + token.slice(-1);
    expect(verifyStreamToken(SECRET, badSig, expectCall)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(verifyStreamToken('another-secret', token, expectCall)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(verifyStreamToken('', token, expectCall)).toEqual({ ok: false, reason: 'bad_signature' });
    expect(verifyStreamToken(SECRET, token.slice(0, -1), expectCall)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('rejects undefined and garbage as malformed without throwing', () => {
    const garbage = [undefined, '', 'v1', 'v1..', 'v1.a.b.c', 'v2.abc.def', 'v1.a b.c', 'v1.abc.d+f', '....', 'x'.repeat(10_000), '\u0000'];
    for (const g of garbage) expect(verifyStreamToken(SECRET, g, expectCall)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('rejects validly signed payloads that are not claims as malformed', () => {
    // Payloads signed with the right secret that are not claims (defence in depth).
    const signed = (input: string): string => `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
    const notJson = 'v1.' + Buffer.from('not json').toString('base64url');
    expect(verifyStreamToken(SECRET, signed(notJson), expectCall)).toEqual({ ok: false, reason: 'malformed' });
    const wrongTypes = 'v1.' + Buffer.from(JSON.stringify({ callSid: CALL, tenantId: TENANT, exp: 'soon', jti: 'j' })).toString('base64url');
    expect(verifyStreamToken(SECRET, signed(wrongTypes), expectCall)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('refuses to issue with an empty secret, a bad ttl or claims too long for a Twilio parameter', () => {
    expect(() => issueStreamToken('', { callSid: CALL, tenantId: TENANT }, { now: NOW, ttlMs: TTL })).toThrow(SwitchboardError);
    expect(() => issueStreamToken(SECRET, { callSid: CALL, tenantId: TENANT }, { now: NOW, ttlMs: 0 })).toThrow(/ttlMs/);
    expect(() => issueStreamToken(SECRET, { callSid: CALL, tenantId: 't'.repeat(400) }, { now: NOW, ttlMs: TTL })).toThrow(
      new RegExp(`over ${MAX_STREAM_TOKEN_CHARS}`),
    );
  });
});
