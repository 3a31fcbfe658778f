/**
 * Webhook abuse on the real relay: unsigned and forged requests, oversized and malformed form bodies,
 * wrong content types and methods, bad CallSids, seeded field fuzz. Never a stream, never a crash.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { randomSid } from '../../src/sim/sim-caller.js';
import { computeTwilioSignature } from '../../src/twilio/index.js';
import { demo, metricValue, scrape, startTestRelay } from '../helpers/relay.js';
import { int, mutate, pick, prng } from './seeded.js';

const SEED = 0x7e1e;
let relay: Relay;
beforeAll(async () => {
  relay = await startTestRelay();
});
afterAll(async () => {
  await relay.close();
});

const fields = (callSid = randomSid('CA')): Record<string, string> => ({ CallSid: callSid, AccountSid: demo.accountSid, To: demo.to, From: '+15550001111' });

async function post(path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(relay.url + path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

/** Sign what the relay will parse from `body` (URLSearchParams), as a forger holding the token could. */
function signBody(path: string, body: string): string {
  const params: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(body)) params[k] = v;
  return computeTwilioSignature(demo.authToken, relay.url + path, params);
}

describe('webhook abuse', () => {
  it('missing or forged signatures: 403 on every signed route, no TwiML', async () => {
    const body = new URLSearchParams(fields()).toString();
    for (const path of ['/twilio/voice', '/twilio/after-stream', '/twilio/status']) {
      for (const sig of [undefined, '', 'AAAA', 'x'.repeat(10_000), computeTwilioSignature('wrong-token', relay.url + path, fields())]) {
        const r = await post(path, body, sig === undefined ? {} : { 'x-twilio-signature': sig });
        expect(r.status, `${path} with signature ${String(sig).slice(0, 10)}`).toBe(403);
        expect(r.body).not.toContain('<Response');
      }
    }
  });

  it('oversized bodies: 413 payload_too_large as JSON on every webhook route, the relay stays healthy', async () => {
    for (const path of ['/twilio/voice', '/twilio/after-stream', '/twilio/status']) {
      const r = await post(path, 'To=' + 'a'.repeat(200 * 1024));
      expect(r.status).toBe(413);
      expect(r.type).toBe('application/json');
      expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'payload_too_large' } });
    }
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
  });

  it('CallSid missing or malformed on a signed voice webhook: 400', async () => {
    for (const callSid of [undefined, '', 'CA123', 'CA' + 'g'.repeat(32), 'XX' + 'a'.repeat(32), 'CA' + 'a'.repeat(33), "CA' OR 1=1 --"]) {
      const f = fields();
      if (callSid === undefined) delete f.CallSid;
      else f.CallSid = callSid;
      const body = new URLSearchParams(f).toString();
      const r = await post('/twilio/voice', body, { 'x-twilio-signature': signBody('/twilio/voice', body) });
      expect(r.status, `CallSid ${String(callSid)}`).toBe(400);
      expect(JSON.parse(r.body)).toEqual({ error: { code: 'bad_request', message: 'CallSid missing or malformed' } });
    }
  });

  it('malformed form bodies (bad escapes, NULs, binary, 5k fields, repeated names): never a stream without a valid signature, never a 5xx', async () => {
    const bodies: (string | Buffer)[] = [
      '%%%%',
      'To=%ZZ&CallSid=%',
      '=&=&&&=',
      'To=\u0000\u0000&CallSid=CA\u0000',
      Buffer.from([0xff, 0xfe, 0x00, 0x3d, 0x26, 0xc3]),
      Array.from({ length: 5000 }, (_, i) => `f${i}=${i}`).join('&'),
      `To=${encodeURIComponent(demo.to)}&To=${encodeURIComponent(demo.to)}&CallSid=${randomSid('CA')}&CallSid=${randomSid('CA')}`,
      `${encodeURIComponent('__proto__')}=x&constructor=y&To=${encodeURIComponent(demo.to)}`,
    ];
    for (const b of bodies) {
      const r = await post('/twilio/voice', b, { 'x-twilio-signature': 'forged' });
      expect(r.status).toBeLessThan(500);
      expect(r.body).not.toContain('<Stream');
    }
  });

  it('wrong content type: a JSON body signed as if it were a form never gets a stream', async () => {
    const json = JSON.stringify(fields());
    const r = await post('/twilio/voice', json, { 'content-type': 'application/json', 'x-twilio-signature': computeTwilioSignature(demo.authToken, `${relay.url}/twilio/voice`, fields()) });
    expect(r.status).toBeLessThan(500);
    expect(r.body).not.toContain('<Stream');
  });

  it('GET, PUT and DELETE on webhook routes: a JSON 404, no TwiML', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const res = await fetch(`${relay.url}/twilio/voice?${new URLSearchParams(fields()).toString()}`, { method });
      expect(res.status).toBe(404);
      expect(await res.text()).not.toContain('<Response');
    }
  });

  it(`seeded field fuzz (seed ${SEED.toString(16)}): 300 mutated signed bodies, no 5xx, a stream only for an intact valid call`, async () => {
    const rand = prng(SEED);
    const statuses = new Map<number, number>();
    let streams = 0;
    for (let i = 0; i < 300; i++) {
      const f = fields();
      const original = new URLSearchParams(f).toString();
      let body: Buffer = Buffer.from(original);
      for (let j = int(rand, 1, 3); j > 0; j--) body = mutate(rand, body);
      // Half signed over the original fields (tampered in transit), half re-signed over what was sent.
      const sig = pick(rand, [true, false]) ? signBody('/twilio/voice', body.toString('utf8')) : computeTwilioSignature(demo.authToken, `${relay.url}/twilio/voice`, f);
      const r = await post('/twilio/voice', body, { 'x-twilio-signature': sig });
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      expect(r.status).toBeLessThan(500);
      if (r.body.includes('<Stream')) {
        streams++;
        // Only a body that still names the tenant's number and a well-formed CallSid, correctly signed.
        const p = new URLSearchParams(body.toString('utf8'));
        expect(p.get('To')).toBe(demo.to);
        expect(p.get('CallSid')).toMatch(/^CA[0-9a-fA-F]{32}$/);
      }
    }
    expect(streams).toBeLessThan(300);
    const m = await scrape(relay);
    expect(metricValue(m, 'switchboard_webhooks_total', { route: 'voice', outcome: 'error' })).toBe(0);
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
  });
});
