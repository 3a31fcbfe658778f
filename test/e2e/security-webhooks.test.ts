/**
 * Twilio-facing security through real sockets: signed webhooks (tampered, missing, wrong account),
 * unknown numbers, one-time stream tokens (replay, expiry, wrong CallSid, wrong tenant) refused with
 * 4003 before anything goes upstream, and status callbacks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { placeCall, randomSid, upgradeSignature } from '../../src/sim/sim-caller.js';
import { computeTwilioSignature, issueStreamToken } from '../../src/twilio/index.js';
import { ACME, BETA, metricValue, signed, startTenantRelay, streamOpening, TENANT_ENV, type TenantRelay, TEST_SECRET, voiceFields, writeTenantsFile } from '../helpers/relay.js';

/** Open a raw media stream, send connected + start, and report how the relay closed it. */
function rawStream(
  sr: TenantRelay,
  start: { callSid: string; accountSid?: string; params: Record<string, string> },
  signature: string | undefined = upgradeSignature(sr.relay.url.replace('http', 'ws') + '/twilio/media', ACME.authToken),
): Promise<{ code: number; reason: string; received: string[] }> {
  const url = sr.relay.url.replace('http', 'ws') + '/twilio/media';
  const ws = new WebSocket(url, { headers: signature ? { 'X-Twilio-Signature': signature } : {} });
  const received: string[] = [];
  const streamSid = randomSid('MZ');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('relay did not close the stream'));
    }, 5000);
    ws.on('open', () => {
      const opening = streamOpening({ streamSid, callSid: start.callSid, accountSid: start.accountSid ?? ACME.accountSid, customParameters: start.params });
      for (const m of opening) ws.send(m);
      ws.send(JSON.stringify({ event: 'media', sequenceNumber: '2', streamSid, media: { track: 'inbound', chunk: '1', timestamp: '0', payload: '/////w==' } }));
    });
    ws.on('message', (d: Buffer) => {
      // An accepted stream talks back (the greeting): hang up like Twilio does, with `stop`.
      if (received.push(d.toString()) === 1) ws.send(JSON.stringify({ event: 'stop', sequenceNumber: '3', streamSid, stop: { accountSid: ACME.accountSid, callSid: start.callSid } }));
    });
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString(), received });
    });
  });
}

const tokenFrom = (twiml: string): string => /name="token" value="([^"]+)"/.exec(twiml)?.[1] ?? '';

let sr: TenantRelay;
beforeAll(async () => {
  sr = await startTenantRelay({ tenantsFile: writeTenantsFile(), tenantEnv: TENANT_ENV });
});
afterAll(async () => {
  await sr.close();
});

describe('voice webhook signatures', () => {
  it('answers a correctly signed webhook with a stream and a one-time token', async () => {
    const r = await signed(sr, '/twilio/voice', voiceFields(randomSid('CA')));
    expect(r.status).toBe(200);
    expect(r.body).toContain('<Connect><Stream url="ws://127.0.0.1:');
    expect(r.body).toContain('<Parameter name="tenant" value="acme"/>');
    expect(tokenFrom(r.body)).toMatch(/^v1\./);
  });

  it('refuses a tampered field, a missing signature, another tenant\'s token or a signature over another URL with 403 and no TwiML', async () => {
    const fields = voiceFields(randomSid('CA'));
    const sig = computeTwilioSignature(ACME.authToken, sr.relay.url + '/twilio/voice', fields);
    const cases = [
      signed(sr, '/twilio/voice', { ...fields, From: '+15005550999' }, { signature: sig }),
      signed(sr, '/twilio/voice', fields, { signature: null }),
      signed(sr, '/twilio/voice', fields, { authToken: BETA.authToken }),
      signed(sr, '/twilio/voice', fields, { signature: computeTwilioSignature(ACME.authToken, 'https://evil.example/twilio/voice', fields) }),
    ];
    for (const r of await Promise.all(cases)) {
      expect(r.status).toBe(403);
      expect(r.body).not.toContain('<Response');
      expect(JSON.parse(r.body)).toEqual({ error: { code: 'signature_invalid', message: 'X-Twilio-Signature does not match' } });
    }
  });

  it('says the number is not in service and hangs up for an unknown number or a foreign account', async () => {
    for (const fields of [
      voiceFields(randomSid('CA'), '+14155559999'),
      voiceFields(randomSid('CA'), ACME.to, 'AC' + 'f'.repeat(32)),
    ]) {
      const r = await signed(sr, '/twilio/voice', fields);
      expect(r.status).toBe(200);
      expect(r.body).toMatch(/<Response><Say>Sorry, the number you have called is not in service\. Goodbye\.<\/Say><Hangup\/><\/Response>/);
      expect(r.body).not.toContain('<Stream');
    }
  });

  it('refuses unsigned status callbacks', async () => {
    const r = await signed(sr, '/twilio/status', { AccountSid: ACME.accountSid, CallSid: randomSid('CA'), CallStatus: 'completed' }, { signature: 'bogus' });
    expect(r.status).toBe(403);
  });
});

describe('media stream tokens', () => {
  it('runs a real call, then refuses the same token replayed with 4003 and opens no model session', async () => {
    const callSid = randomSid('CA');
    const report = await placeCall({
      baseUrl: sr.relay.url,
      publicUrl: sr.relay.url,
      ...ACME,
      callSid,
      script: { turns: [], hangupAfterMs: 0, maxCallMs: 10_000 },
    });
    expect(report.stage).toBe('connected');
    const sessions = sr.relay.sim?.sessions.length ?? 0;
    const replay = await rawStream(sr, { callSid, params: report.twiml?.kind === 'stream' ? report.twiml.parameters : {} });
    expect(replay.code).toBe(4003);
    expect(replay.reason).toBe('stream token already used');
    expect(replay.received).toEqual([]);
    expect(sr.relay.sim?.sessions.length ?? 0).toBe(sessions);
  });

  it('refuses a token for another CallSid, another tenant, past its expiry, or a bad upgrade signature', async () => {
    const sessions = sr.relay.sim?.sessions.length ?? 0;
    const callSid = randomSid('CA');
    const token = tokenFrom((await signed(sr, '/twilio/voice', voiceFields(callSid))).body);
    const expired = issueStreamToken(TEST_SECRET, { callSid, tenantId: 'acme' }, { now: Date.now() - 60_000, ttlMs: 30_000 });
    const wrongCall = await rawStream(sr, { callSid: randomSid('CA'), params: { tenant: 'acme', token } });
    const wrongTenant = await rawStream(sr, { callSid, params: { tenant: 'beta', token } }, upgradeSignature(sr.relay.url.replace('http', 'ws') + '/twilio/media', BETA.authToken));
    const late = await rawStream(sr, { callSid, params: { tenant: 'acme', token: expired } });
    const badSig = await rawStream(sr, { callSid, params: { tenant: 'acme', token } }, 'bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==');
    const none = await rawStream(sr, { callSid, params: { tenant: 'acme' } });
    expect([wrongCall, wrongTenant, late, badSig, none].map((r) => [r.code, r.reason])).toEqual([
      [4003, 'stream token wrong_call'],
      [4003, 'stream token wrong_tenant'],
      [4003, 'stream token expired'],
      [4004, 'upgrade signature invalid'],
      [4003, 'stream token malformed'],
    ]);
    for (const r of [wrongCall, wrongTenant, late, badSig, none]) expect(r.received).toEqual([]);
    expect(sr.relay.sim?.sessions.length ?? 0).toBe(sessions);
    // None of these consumed the token: the real call still connects with it.
    const ok = await rawStream(sr, { callSid, params: { tenant: 'acme', token } });
    expect(ok.received.length).toBeGreaterThan(0);
    expect(ok.code).toBe(1000);
    const text = await (await fetch(`${sr.relay.url}/metrics`)).text();
    expect(metricValue(text, 'switchboard_calls_total', { outcome: 'rejected_token' })).toBeGreaterThanOrEqual(5);
  });
});
