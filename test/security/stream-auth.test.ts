/**
 * createStreamAuthoriser with a manual clock: token expiry, binding to CallSid and tenant, the
 * account check, the upgrade signature (current and previous auth token), replay, and secret rotation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStreamAuthoriser } from '../../src/server/stream-auth.js';
import { MemoryCallStore } from '../../src/store/memory-store.js';
import { MemoryTenantStore } from '../../src/store/memory-tenant-store.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { StoreTenantRegistry, TenantSchema } from '../../src/tenants/index.js';
import { computeTwilioSignature, issueStreamToken } from '../../src/twilio/index.js';

const SECRET = 'stream-secret-0123456789abcdef0123456789';
const OLD_SECRET = 'old-stream-secret-0123456789abcdef012345';
const STREAM_URL = 'wss://relay.example.com/twilio/media';
const ACCOUNT = 'AC' + '1'.repeat(32);
const CALL = 'CA' + 'a'.repeat(32);

// The registry the relay runs, over the in-memory store.
const tenants = new StoreTenantRegistry({
  store: new MemoryTenantStore(),
  env: { T_0: 'acme-current', P_0: 'acme-previous', T_1: 'beta-current', P_1: 'beta-previous' },
  log: silentLogger(),
  local: ['acme', 'beta'].map((id, i) =>
    TenantSchema.parse({
      id,
      displayName: id,
      phoneNumbers: [`+1415555010${i}`],
      twilio: { accountSid: ACCOUNT, authToken: { env: `T_${i}` }, previousAuthToken: { env: `P_${i}` } },
    }),
  ),
});
beforeAll(async () => {
  await tenants.start();
});
afterAll(async () => {
  await tenants.close();
});

function setup() {
  let now = 1_000_000;
  const authorise = createStreamAuthoriser({
    tenants,
    store: new MemoryCallStore(() => now),
    secret: SECRET,
    previousSecrets: [OLD_SECRET],
    validateSignatures: true,
    streamUrl: STREAM_URL,
    now: () => now,
  });
  const token = (o: { callSid?: string; tenantId?: string; secret?: string } = {}) =>
    issueStreamToken(o.secret ?? SECRET, { callSid: o.callSid ?? CALL, tenantId: o.tenantId ?? 'acme' }, { now, ttlMs: 30_000 });
  const start = (tok: string, o: { callSid?: string; tenant?: string; accountSid?: string } = {}) => ({
    streamSid: 'MZ' + 'b'.repeat(32),
    callSid: o.callSid ?? CALL,
    accountSid: o.accountSid ?? ACCOUNT,
    customParameters: { tenant: o.tenant ?? 'acme', token: tok },
  });
  return { authorise, token, start, advance: (ms: number) => (now += ms) };
}

const sig = (authToken: string) => computeTwilioSignature(authToken, STREAM_URL, {});

describe('stream authorisation', () => {
  it('accepts a fresh token once, and refuses its replay with 4003', async () => {
    const s = setup();
    const tok = s.token();
    expect(await s.authorise(s.start(tok), sig('acme-current'))).toMatchObject({ ok: true, tenant: { id: 'acme' } });
    expect(await s.authorise(s.start(tok), sig('acme-current'))).toEqual({
      ok: false,
      code: 4003,
      reason: 'stream token already used',
      outcome: 'rejected_token',
    });
  });

  it('refuses a token past its expiry, and accepts one just before', async () => {
    const s = setup();
    const late = s.token();
    const early = s.token();
    s.advance(29_999);
    expect((await s.authorise(s.start(early), undefined)).ok).toBe(true);
    s.advance(1);
    expect(await s.authorise(s.start(late), undefined)).toMatchObject({ ok: false, code: 4003, reason: 'stream token expired' });
  });

  it('refuses a token for another CallSid or another tenant', async () => {
    const s = setup();
    const other = 'CA' + 'c'.repeat(32);
    expect(await s.authorise(s.start(s.token({ callSid: other })), undefined)).toMatchObject({ ok: false, code: 4003, reason: 'stream token wrong_call' });
    expect(await s.authorise(s.start(s.token({ tenantId: 'beta' })), undefined)).toMatchObject({ ok: false, code: 4003, reason: 'stream token wrong_tenant' });
    // Claiming the tenant the token names does not help when the token was issued for acme.
    expect(await s.authorise(s.start(s.token(), { tenant: 'beta' }), undefined)).toMatchObject({ ok: false, code: 4003 });
    expect(await s.authorise(s.start(s.token(), { tenant: 'nobody' }), undefined)).toMatchObject({ ok: false, reason: 'unknown tenant' });
    expect(await s.authorise(s.start(s.token(), { accountSid: 'AC' + '9'.repeat(32) }), undefined)).toMatchObject({
      ok: false,
      reason: 'account does not own tenant',
    });
  });

  it('checks the upgrade signature with the current or previous auth token only', async () => {
    const s = setup();
    const other = 'CA' + 'c'.repeat(32);
    expect((await s.authorise(s.start(s.token()), sig('acme-current'))).ok).toBe(true);
    expect((await s.authorise(s.start(s.token({ callSid: other }), { callSid: other }), sig('acme-previous'))).ok).toBe(true);
    expect(await s.authorise(s.start(s.token()), sig('beta-current'))).toMatchObject({ ok: false, code: 4004 });
    expect(await s.authorise(s.start(s.token()), 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=')).toMatchObject({ ok: false, code: 4004 });
  });

  it('gives one CallSid one stream: a fresh token from a replayed webhook is refused', async () => {
    const s = setup();
    expect((await s.authorise(s.start(s.token()), undefined)).ok).toBe(true);
    expect(await s.authorise(s.start(s.token()), undefined)).toMatchObject({
      ok: false,
      code: 4003,
      reason: 'call already had a stream (replayed webhook)',
    });
  });

  it('accepts tokens signed with the previous secret during rotation, not with an unknown one', async () => {
    const s = setup();
    expect((await s.authorise(s.start(s.token({ secret: OLD_SECRET })), undefined)).ok).toBe(true);
    expect(await s.authorise(s.start(s.token({ secret: 'x'.repeat(40) })), undefined)).toMatchObject({
      ok: false,
      reason: 'stream token bad_signature',
    });
    expect(await s.authorise(s.start('garbage'), undefined)).toMatchObject({ ok: false, reason: 'stream token malformed' });
  });
});
