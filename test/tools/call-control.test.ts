import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MemoryCallStore } from '../../src/store/index.js';
import { resolveTenant, TenantSchema, DEMO_TENANT } from '../../src/tenants/index.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { BuiltinToolRunner } from '../../src/tools/index.js';
import { retryAfterMs, TwilioCallControl } from '../../src/twilio/call-control.js';
import { startFakeTwilioApi, type FakeTwilioApi } from '../helpers/fake-twilio-api.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});
const account = { accountSid: 'AC' + 'a'.repeat(32), authToken: 'tok-123' };
const callSid = 'CA' + 'b'.repeat(32);
const basic = `Basic ${Buffer.from(`${account.accountSid}:${account.authToken}`).toString('base64')}`;

let fake: FakeTwilioApi;
beforeAll(async () => {
  fake = await startFakeTwilioApi({ accounts: { [account.accountSid]: account.authToken } });
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  fake.requests.length = 0;
  fake.clearFailure();
  // A live call for the API to update, as Twilio has while the caller is on the line.
  fake.registerCall(callSid, { update: () => undefined });
});

describe('TwilioCallControl against a local Twilio API', () => {
  it('transfers by updating the call TwiML to <Say> then <Dial>, with Basic auth and form encoding', async () => {
    const cc = new TwilioCallControl({ apiBaseUrl: fake.url });
    expect(await cc.transfer(account, callSid, { to: '+15005550007', say: 'Connecting you now.', callerId: '+15005550006' })).toBe('updated');
    const [r] = fake.requests;
    expect(r).toMatchObject({ method: 'POST', path: `/2010-04-01/Accounts/${account.accountSid}/Calls/${callSid}.json`, authorization: basic });
    expect(r?.contentType).toContain('application/x-www-form-urlencoded');
    expect(Object.keys(r!.form)).toEqual(['Twiml']);
    expect(r?.form['Twiml']).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Connecting you now.</Say><Dial callerId="+15005550006">+15005550007</Dial></Response>',
    );
  });

  it('hangs up with Status=completed', async () => {
    const cc = new TwilioCallControl({ apiBaseUrl: fake.url });
    expect(await cc.hangUp(account, callSid)).toBe('updated');
    expect(fake.requests[0]?.form).toEqual({ Status: 'completed' });
  });

  it('treats a call that is gone (404 / 20404) as done, and fails other errors with tool_failed', async () => {
    const cc = new TwilioCallControl({ apiBaseUrl: fake.url });
    fake.failWith(404, { code: 20404, message: 'The requested resource was not found', status: 404 });
    expect(await cc.hangUp(account, callSid)).toBe('already_ended');
    fake.failWith(500, { code: 20500, message: 'Internal Server Error', status: 500 });
    await expect(cc.transfer(account, callSid, { to: '+15005550007' })).rejects.toMatchObject({ code: 'tool_failed', retryable: true });
    fake.failWith(401, { code: 20003, message: 'Authenticate', status: 401 });
    await expect(cc.hangUp(account, callSid)).rejects.toMatchObject({ code: 'tool_failed', retryable: false });
  });
});

describe('TwilioCallControl.migrate: one attempt, the answer as a value', () => {
  const twiml = '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://relay.example/twilio/media"><Parameter name="resume" value="r1"/></Stream></Connect></Response>';

  it('sends the resume TwiML as Twiml, with Basic auth', async () => {
    fake.clearFailure();
    const cc = new TwilioCallControl({ apiBaseUrl: fake.url });
    expect(await cc.migrate(account, callSid, twiml)).toEqual({ kind: 'updated' });
    expect(fake.requests[0]).toMatchObject({ path: `/2010-04-01/Accounts/${account.accountSid}/Calls/${callSid}.json`, authorization: basic });
    expect(fake.requests[0]?.form).toEqual({ Twiml: twiml });
  });

  it('tells a 429 with its Retry-After, a refusal, a gone call and a server failure apart', async () => {
    const cc = new TwilioCallControl({ apiBaseUrl: fake.url });
    fake.failWith(429, { code: 20429, message: 'Too Many Requests', status: 429 }, 2);
    expect(await cc.migrate(account, callSid, twiml)).toEqual({ kind: 'rate_limited', retryAfterMs: 2000 });
    fake.failWith(429, { code: 20429, message: 'Too Many Requests', status: 429 });
    expect(await cc.migrate(account, callSid, twiml)).toEqual({ kind: 'rate_limited', retryAfterMs: undefined });
    fake.failWith(401, { code: 20003, message: 'Authenticate', status: 401 });
    expect(await cc.migrate(account, callSid, twiml)).toMatchObject({ kind: 'refused', status: 401, twilioCode: 20003 });
    fake.failWith(404, { code: 20404, message: 'The requested resource was not found', status: 404 });
    expect(await cc.migrate(account, callSid, twiml)).toEqual({ kind: 'already_ended' });
    fake.failWith(503, { code: 20503, message: 'Service Unavailable', status: 503 });
    expect(await cc.migrate(account, callSid, twiml)).toMatchObject({ kind: 'failed', status: 503 });
    fake.clearFailure();
  });

  it('reports a Twilio that does not answer as failed, not as a throw', async () => {
    const cc = new TwilioCallControl({ apiBaseUrl: 'http://127.0.0.1:1', timeoutMs: 1000 });
    expect(await cc.migrate(account, callSid, twiml)).toMatchObject({ kind: 'failed', status: undefined });
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    expect(retryAfterMs('3', 0)).toBe(3000);
    expect(retryAfterMs('0.5', 0)).toBe(500);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(retryAfterMs('soon', 0)).toBeUndefined();
    expect(retryAfterMs(undefined, 0)).toBeUndefined();
  });
});

describe('flag_emergency through Twilio call control', () => {
  it('marks the call, transfers over REST with advice then the human number, and returns a transfer effect', async () => {
    const failing = await startFakeTwilioApi();
    failing.registerCall(callSid, { update: () => undefined });
    const store = new MemoryCallStore();
    try {
      await store.startCall({ callSid, tenantId: tenant.id, pod: 'p', startedAt: Date.now() });
      const runner = new BuiltinToolRunner({ store, callControl: new TwilioCallControl({ apiBaseUrl: failing.url }) });
      const ctx = { callSid, tenant, callId: 'call_em', log: silentLogger(), signal: new AbortController().signal };
      const r = await runner.run(ctx, 'flag_emergency', JSON.stringify({ kind: 'gas_leak', description: 'I smell gas in the kitchen', severity: 'critical' }));
      expect(r.outcome).toBe('ok');
      expect(r.effect).toEqual({ kind: 'transfer', to: '+15005550007', reason: 'emergency' });
      expect(JSON.parse(r.output)).toMatchObject({ emergency: true, transferring: true, viaRest: true });
      const [req] = failing.requests;
      const expectedAuth = `Basic ${Buffer.from(`${tenant.twilio.accountSid}:${tenant.resolvedAuthToken}`).toString('base64')}`;
      expect(req?.authorization).toBe(expectedAuth);
      expect(req?.form['Twiml']).toMatch(
        /^<\?xml version="1.0" encoding="UTF-8"\?><Response><Say>Leave the building now\.[^<]*Connecting you to our emergency line now\.<\/Say><Dial callerId="\+15005550006">\+15005550007<\/Dial><\/Response>$/,
      );
      const rec = await store.getCall(callSid);
      expect(rec?.emergency).toMatchObject({ kind: 'gas_leak', severity: 'critical', transferred: true });
      expect(rec?.phase).toBe('handing-off');
      // A replayed call_id does not transfer twice.
      const again = await runner.run(ctx, 'flag_emergency', '{"description":"again"}');
      expect(again).toEqual(r);
      expect(failing.requests).toHaveLength(1);
    } finally {
      await failing.close();
    }
  });

  it('still hands off through the after-stream redirect when the REST transfer fails', async () => {
    const down = await startFakeTwilioApi();
    down.failWith(503, { code: 20503, message: 'down', status: 503 });
    try {
      const runner = new BuiltinToolRunner({ callControl: new TwilioCallControl({ apiBaseUrl: down.url }) });
      const ctx = { callSid, tenant, callId: 'call_em2', log: silentLogger(), signal: new AbortController().signal };
      const r = await runner.run(ctx, 'flag_emergency', '{"kind":"flood","description":"water everywhere"}');
      expect(r.effect).toEqual({ kind: 'transfer', to: '+15005550007', reason: 'emergency' });
      const body = JSON.parse(r.output) as { viaRest: boolean; advice: string };
      expect(body.viaRest).toBe(false);
      expect(body.advice).toContain('main water valve');
    } finally {
      await down.close();
    }
  });
});
