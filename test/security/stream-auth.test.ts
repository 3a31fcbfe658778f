/**
 * createStreamAuthoriser with a manual clock: token expiry, binding to CallSid and tenant, the
 * account check, the upgrade signature (current and previous auth token), replay, and secret rotation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStreamAuthoriser } from '../../src/server/stream-auth.js';
import { MemoryCallStore } from '../../src/store/memory-store.js';
import { MemoryTenantStore } from '../../src/store/memory-tenant-store.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { StoreTenantRegistry, TenantSchema } from '../../src/tenants/index.js';
import { computeTwilioSignature, issueStreamToken, mintResumeToken } from '../../src/twilio/index.js';

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

function setup(pod = 'pod-b', shared?: MemoryCallStore) {
  let now = 1_000_000;
  const store = shared ?? new MemoryCallStore(() => now);
  const metrics = createMetrics({ defaultMetrics: false });
  const authorise = createStreamAuthoriser({
    tenants,
    store,
    secret: SECRET,
    previousSecrets: [OLD_SECRET],
    validateSignatures: true,
    streamUrl: STREAM_URL,
    now: () => now,
    pod,
    metrics,
  });
  const token = (o: { callSid?: string; tenantId?: string; secret?: string } = {}) =>
    issueStreamToken(o.secret ?? SECRET, { callSid: o.callSid ?? CALL, tenantId: o.tenantId ?? 'acme' }, { now, ttlMs: 30_000 });
  const start = (tok: string, o: { callSid?: string; tenant?: string; accountSid?: string; resume?: string } = {}) => ({
    streamSid: 'MZ' + 'b'.repeat(32),
    callSid: o.callSid ?? CALL,
    accountSid: o.accountSid ?? ACCOUNT,
    customParameters: { tenant: o.tenant ?? 'acme', token: tok, ...(o.resume !== undefined ? { resume: o.resume } : {}) },
  });
  const resume = (o: { callSid?: string; secret?: string; reason?: 'drain' | 'crash' } = {}) =>
    mintResumeToken(o.secret ?? SECRET, { callSid: o.callSid ?? CALL, tenantId: 'acme', reason: o.reason ?? 'drain' }, { now });
  const refusedResumes = async (): Promise<number> =>
    (await metrics.callMigrations.get()).values.filter((v) => v.labels['outcome'] === 'resume_refused').reduce((n, v) => n + v.value, 0);
  return { authorise, token, start, resume, store, refusedResumes, advance: (ms: number) => (now += ms), now: () => now };
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

  it('a resume stream adopts the call its old pod released, once; a replayed resume token and a second stream are refused', async () => {
    const s = setup();
    // The call's first stream on pod-a (webhook, token, stream claim), then pod-a releases it.
    expect((await s.authorise(s.start(s.token()), undefined)).ok).toBe(true);
    await s.store.startCall({ callSid: CALL, tenantId: 'acme', pod: 'pod-a', startedAt: s.now() });
    await s.store.appendTranscript(CALL, { role: 'caller', text: 'Hello', at: s.now() });
    // Not released yet: a resume stream for a call live elsewhere gets 4015.
    expect(await s.authorise(s.start(s.token(), { resume: s.resume() }), undefined)).toEqual({
      ok: false,
      code: 4015,
      reason: 'call is live on another pod',
      outcome: 'rejected_token',
    });
    const stoppedAt = s.now();
    await s.store.beginMigration(CALL, { reason: 'drain', at: stoppedAt });
    s.advance(700);
    const tok = s.resume();
    const a = await s.authorise(s.start(s.token(), { resume: tok }), sig('acme-current'));
    expect(a).toMatchObject({
      ok: true,
      tenant: { id: 'acme' },
      resume: {
        migration: { at: stoppedAt, from: 'pod-a', to: 'pod-b', reason: 'drain' },
        record: { pod: 'pod-b', pods: ['pod-a', 'pod-b'], transcript: [{ role: 'caller', text: 'Hello' }] },
      },
    });
    // The same resume token again (a replay), and a fresh one for the call now held here.
    expect(await s.authorise(s.start(s.token(), { resume: tok }), undefined)).toMatchObject({ ok: false, code: 4003, reason: 'resume token already used' });
    expect(await s.authorise(s.start(s.token(), { resume: s.resume() }), undefined)).toMatchObject({ ok: false, code: 4015 });
    expect(await s.refusedResumes()).toBe(3);
    // Bad resume tokens: another call's, another secret's, expired.
    const other = 'CA' + 'e'.repeat(32);
    expect(await s.authorise(s.start(s.token(), { resume: s.resume({ callSid: other }) }), undefined)).toMatchObject({
      ok: false,
      code: 4003,
      reason: 'resume token wrong_call',
    });
    expect(await s.authorise(s.start(s.token(), { resume: s.resume({ secret: 'y'.repeat(40) }) }), undefined)).toMatchObject({
      ok: false,
      reason: 'resume token bad_signature',
    });
    const stale = s.resume();
    s.advance(120_000);
    expect(await s.authorise(s.start(s.token(), { resume: stale }), undefined)).toMatchObject({ ok: false, reason: 'resume token expired' });
    // A resume token alone is not enough: the stream token is still required.
    expect(await s.authorise(s.start('garbage', { resume: s.resume() }), undefined)).toMatchObject({ ok: false, reason: 'stream token malformed' });
  });
});
