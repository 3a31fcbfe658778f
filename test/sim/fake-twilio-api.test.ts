/**
 * The simulated Twilio REST API on real HTTP: Basic auth, unknown and ended calls, the per-account
 * concurrency limit and forced 429s with Retry-After, forms Twilio refuses, call updates acted on
 * before the answer, and the polling channel for callers that cannot receive HTTP (k6).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeTwilioApi, type CallUpdate, type FakeTwilioApi } from '../helpers/fake-twilio-api.js';

const ACCOUNT = 'AC' + '1'.repeat(32);
const TOKEN = 'account-one-token';
const OTHER = 'AC' + '2'.repeat(32);
const CALL = 'CA' + 'a'.repeat(32);
const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

let api: FakeTwilioApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

async function update(
  a: FakeTwilioApi,
  form: Record<string, string>,
  o: { account?: string; call?: string; auth?: string } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const account = o.account ?? ACCOUNT;
  const res = await fetch(`${a.url}/2010-04-01/Accounts/${account}/Calls/${o.call ?? CALL}.json`, {
    method: 'POST',
    headers: { authorization: o.auth ?? basic(account, TOKEN), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

describe('fake Twilio REST API', () => {
  it('checks Basic credentials against the accounts it knows: 401 with code 20003', async () => {
    api = await startFakeTwilioApi({ accounts: { [ACCOUNT]: TOKEN } });
    api.registerCall(CALL, { update: () => undefined }, ACCOUNT);
    const bad = await update(api, { Status: 'completed' }, { auth: basic(ACCOUNT, 'wrong') });
    expect(bad.status).toBe(401);
    expect(bad.body).toMatchObject({ code: 20003, status: 401 });
    expect(bad.headers.get('www-authenticate')).toContain('Basic');
    expect((await update(api, { Status: 'completed' }, { auth: '' })).status).toBe(401);
    // Another account's credentials on this account's call.
    expect((await update(api, { Status: 'completed' }, { auth: basic(OTHER, TOKEN) })).status).toBe(401);
    expect(api.callState(CALL)).toBe('live');
    expect(api.requests.map((r) => r.status)).toEqual([401, 401, 401]);
  });

  it('answers 404 / 20404 for a call it does not know, of another account, or already over', async () => {
    api = await startFakeTwilioApi({ accounts: { [ACCOUNT]: TOKEN, [OTHER]: TOKEN } });
    const unknown = await update(api, { Status: 'completed' });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 20404, status: 404 });
    const seen: CallUpdate[] = [];
    api.registerCall(CALL, { update: (u) => seen.push(u) }, ACCOUNT);
    expect((await update(api, { Status: 'completed' }, { account: OTHER })).status).toBe(404);
    const hung = await update(api, { Status: 'completed' });
    expect(hung.status).toBe(200);
    expect(hung.body).toMatchObject({ sid: CALL, account_sid: ACCOUNT, status: 'completed' });
    expect(seen).toEqual([{ kind: 'status', status: 'completed' }]);
    expect(api.callState(CALL)).toBe('ended');
    expect((await update(api, { Twiml: '<Response><Hangup/></Response>' })).status).toBe(404);
    expect(seen).toHaveLength(1);
  });

  it('refuses a form Twilio would: two of Twiml/Url/Status, TwiML that does not parse, a bad Url', async () => {
    api = await startFakeTwilioApi();
    const seen: CallUpdate[] = [];
    api.registerCall(CALL, { update: (u) => seen.push(u) });
    const both = await update(api, { Twiml: '<Response/>', Status: 'completed' });
    expect(both.status).toBe(400);
    const notTwiml = await update(api, { Twiml: 'hello' });
    expect(notTwiml.status).toBe(400);
    expect(notTwiml.body).toMatchObject({ code: 12100 });
    expect((await update(api, { Url: 'ftp://x' })).status).toBe(400);
    expect(seen).toEqual([]);
    expect(api.callState(CALL)).toBe('live');
  });

  it('acts on the call before answering: a stream TwiML keeps it live, a <Hangup/> ends it', async () => {
    api = await startFakeTwilioApi({ answerDelayMs: 150 });
    const order: string[] = [];
    api.registerCall(CALL, { update: (u) => order.push(`update ${u.kind}`) });
    const twiml = '<Response><Connect><Stream url="wss://relay.example/twilio/media"><Parameter name="resume" value="t"/></Stream></Connect></Response>';
    const pending = update(api, { Twiml: twiml }).then((r) => {
      order.push(`answer ${r.status}`);
      return r;
    });
    const req = await api.next();
    expect(req.form).toEqual({ Twiml: twiml });
    const r = await pending;
    expect(order).toEqual(['update twiml', 'answer 200']);
    expect(r.body).toMatchObject({ status: 'in-progress' });
    expect(api.requests[0]!.answeredAt - api.requests[0]!.receivedAt).toBeGreaterThanOrEqual(140);
    expect(api.callState(CALL)).toBe('live');
    await update(api, { Twiml: '<Response><Say>Bye</Say><Hangup/></Response>' });
    expect(api.callState(CALL)).toBe('ended');
  });

  it('answers 429 / 20429 with Retry-After beyond maxConcurrent in flight per account, and when told to', async () => {
    api = await startFakeTwilioApi({ maxConcurrent: 2, retryAfterS: 3, answerDelayMs: 200 });
    const calls = Array.from({ length: 4 }, (_, i) => 'CA' + String(i).repeat(32));
    for (const c of calls) api.registerCall(c, { update: () => undefined });
    const answers = await Promise.all(calls.map((c) => update(api!, { Twiml: '<Response><Dial>+15005550007</Dial></Response>' }, { call: c })));
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([200, 200, 429, 429]);
    const limited = answers.find((a) => a.status === 429)!;
    expect(limited.headers.get('retry-after')).toBe('3');
    expect(limited.body).toMatchObject({ code: 20429, status: 429 });
    expect(api.maxInFlightSeen).toBeGreaterThanOrEqual(3);
    // Another account has its own limit.
    api.registerCall('CA' + 'f'.repeat(32), { update: () => undefined });
    expect((await update(api, { Status: 'completed' }, { account: OTHER, call: 'CA' + 'f'.repeat(32), auth: basic(OTHER, 'x') })).status).toBe(200);

    api.rateLimit(2, 7);
    const first = await update(api, { Status: 'completed' }, { call: calls[0]! });
    expect(first.status).toBe(429);
    expect(first.headers.get('retry-after')).toBe('7');
    expect((await update(api, { Status: 'completed' }, { call: calls[0]! })).status).toBe(429);
    expect((await update(api, { Status: 'completed' }, { call: calls[0]! })).status).toBe(200);

    api.failWith(503, { code: 20503, message: 'Service Unavailable', status: 503 }, 2);
    const down = await update(api, { Status: 'completed' }, { call: calls[1]! });
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('2');
    api.clearFailure();
    expect((await update(api, { Status: 'completed' }, { call: calls[1]! })).status).toBe(200);
  });

  it('queues updates for a polling caller and hands them out in order; DELETE ends the call', async () => {
    api = await startFakeTwilioApi();
    const poll = async (after: number): Promise<{ ended: boolean; updates: Array<{ seq: number; update: CallUpdate }> }> =>
      (await fetch(`${api!.url}/sim/calls/${CALL}/updates?after=${after}&account=${ACCOUNT}`)).json() as Promise<{ ended: boolean; updates: Array<{ seq: number; update: CallUpdate }> }>;
    expect(await poll(0)).toMatchObject({ ended: false, updates: [] });
    expect((await update(api, { Url: 'http://127.0.0.1:1/next', Method: 'GET' })).status).toBe(200);
    expect((await update(api, { Twiml: '<Response><Dial>+15005550007</Dial></Response>' })).status).toBe(200);
    const got = await poll(0);
    expect(got.updates).toEqual([
      { seq: 1, update: { kind: 'url', url: 'http://127.0.0.1:1/next', method: 'GET' } },
      { seq: 2, update: { kind: 'twiml', twiml: '<Response><Dial>+15005550007</Dial></Response>' } },
    ]);
    expect((await poll(1)).updates.map((u) => u.seq)).toEqual([2]);
    // The account the poller named is the call's: another account's update is a 404.
    expect((await update(api, { Status: 'completed' }, { account: OTHER, auth: basic(OTHER, 'x') })).status).toBe(404);
    expect((await fetch(`${api.url}/sim/calls/${CALL}`, { method: 'DELETE' })).status).toBe(200);
    expect((await update(api, { Status: 'completed' })).status).toBe(404);
  });
});
