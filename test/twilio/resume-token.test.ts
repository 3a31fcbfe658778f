import { describe, expect, it } from 'vitest';
import { parseTwiml } from '../../src/sim/portable/twilio-http.js';
import { SwitchboardError } from '../../src/errors.js';
import { mintResumeToken, RESUME_TOKEN_TTL_MS, verifyResumeToken } from '../../src/twilio/resume-token.js';
import { issueStreamToken, verifyStreamToken } from '../../src/twilio/stream-token.js';
import { callStreamTwiml, resumeStreamTwiml } from '../../src/twilio/twiml.js';

const SECRET = 'test-secret-0123456789';
const CALL = 'CA' + 'b'.repeat(32);
const TENANT = 'acme-plumbing';
const NOW = 1_760_000_000_000;
const expectCall = { callSid: CALL, tenantId: TENANT, now: NOW + 1000 };

const mint = (over: Partial<{ callSid: string; tenantId: string; reason: 'drain' | 'crash' }> = {}): string =>
  mintResumeToken(SECRET, { callSid: over.callSid ?? CALL, tenantId: over.tenantId ?? TENANT, reason: over.reason ?? 'drain' }, { now: NOW, jti: 'n-1' });

describe('resume tokens', () => {
  it('round-trip: bound to the CallSid and tenant, with the reason and a ~2 minute expiry', () => {
    const token = mint({ reason: 'crash' });
    expect(token).toMatch(/^r1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(token.length).toBeLessThan(300);
    expect(RESUME_TOKEN_TTL_MS).toBe(120_000);
    expect(verifyResumeToken(SECRET, token, expectCall)).toEqual({
      ok: true,
      claims: { callSid: CALL, tenantId: TENANT, reason: 'crash', exp: NOW + RESUME_TOKEN_TTL_MS, jti: 'n-1' },
    });
  });

  it('refuses another call, another tenant, an expired token, another secret and a tampered one', () => {
    const token = mint();
    expect(verifyResumeToken(SECRET, token, { ...expectCall, callSid: 'CA' + 'c'.repeat(32) })).toEqual({ ok: false, reason: 'wrong_call' });
    expect(verifyResumeToken(SECRET, token, { ...expectCall, tenantId: 'other' })).toEqual({ ok: false, reason: 'wrong_tenant' });
    expect(verifyResumeToken(SECRET, token, { ...expectCall, now: NOW + RESUME_TOKEN_TTL_MS })).toEqual({ ok: false, reason: 'expired' });
    expect(verifyResumeToken('another-secret-0123456789', token, expectCall)).toEqual({ ok: false, reason: 'bad_signature' });
    const [v, body, sig] = token.split('.') as [string, string, string];
    const forged = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>;
    forged['callSid'] = 'CA' + 'd'.repeat(32);
    expect(verifyResumeToken(SECRET, `${v}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${sig}`, expectCall)).toEqual({
      ok: false,
      reason: 'bad_signature',
    });
    expect(verifyResumeToken(SECRET, undefined, expectCall)).toEqual({ ok: false, reason: 'malformed' });
    expect(verifyResumeToken(SECRET, 'r1.x', expectCall)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('is not a stream token, nor a stream token a resume token (version tags differ)', () => {
    const stream = issueStreamToken(SECRET, { callSid: CALL, tenantId: TENANT }, { now: NOW, ttlMs: 30_000 });
    expect(verifyResumeToken(SECRET, stream, expectCall)).toEqual({ ok: false, reason: 'malformed' });
    expect(verifyStreamToken(SECRET, mint(), expectCall)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('refuses to mint with an empty secret or a bad ttl', () => {
    expect(() => mintResumeToken('', { callSid: CALL, tenantId: TENANT, reason: 'drain' }, { now: NOW })).toThrow(SwitchboardError);
    expect(() => mintResumeToken(SECRET, { callSid: CALL, tenantId: TENANT, reason: 'drain' }, { now: NOW, ttlMs: 0 })).toThrow(/ttlMs/);
  });
});

describe('resume TwiML', () => {
  const call = {
    streamUrl: 'wss://sb.example.com/twilio/media',
    publicUrl: 'https://sb.example.com',
    secret: SECRET,
    now: NOW,
    callSid: CALL,
    tenantId: TENANT,
    to: '+15005550100',
    fromMasked: '+*******1234',
  };

  it("is the call's usual stream TwiML plus a resume parameter, with the after-stream redirect", () => {
    const plain = parseTwiml(callStreamTwiml(call));
    const moved = parseTwiml(resumeStreamTwiml({ ...call, reason: 'drain' }));
    if (plain.kind !== 'stream' || moved.kind !== 'stream') throw new Error('expected <Connect><Stream>');
    expect(moved.streamUrl).toBe(call.streamUrl);
    expect(Object.keys(moved.parameters).sort()).toEqual(['from', 'resume', 'tenant', 'to', 'token']);
    expect(Object.keys(plain.parameters).sort()).toEqual(['from', 'tenant', 'to', 'token']);
    expect(moved.parameters).toMatchObject({ tenant: TENANT, to: call.to, from: call.fromMasked });
    expect(moved.after).toEqual(plain.after);
    expect(moved.after).toContainEqual(expect.objectContaining({ verb: 'Redirect', text: 'https://sb.example.com/twilio/after-stream' }));
    // Both tokens verify for this call; the stream token outlives the drain's pacing as the resume token does.
    expect(verifyResumeToken(SECRET, moved.parameters['resume'], expectCall)).toMatchObject({ ok: true, claims: { reason: 'drain' } });
    const st = verifyStreamToken(SECRET, moved.parameters['token'], { ...expectCall, now: NOW + 60_000 });
    expect(st.ok).toBe(true);
  });
});
