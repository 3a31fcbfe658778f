/**
 * The simulated caller moved between Media Streams as Twilio moves a call: a REST update whose
 * TwiML connects a new stream (stop, close, new stream with its parameters, the script goes on), and
 * a stream cut without a close frame followed by the after-stream `<Redirect>` whose TwiML connects
 * again. Real relays behind the loopback service, the fake Twilio REST API, real sockets. Each new
 * stream lands on a relay that has not seen the call (the service is pointed at it first), as a
 * moved call lands on another pod.
 */
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildVoiceWebhook, parseTwiml } from '../../src/sim/portable/twilio-http.js';
import type { Relay } from '../../src/server/index.js';
import { startFakeTwilioApi, type FakeTwilioApi } from '../helpers/fake-twilio-api.js';
import { startLoopbackService, type LoopbackService } from '../helpers/loopback-service.js';
import { placeCall, randomSid, type CallReport, type CallScript, type PlaceCallOptions } from '../../src/sim/sim-caller.js';
import { routeTo } from '../helpers/deployment.js';
import { demo, startTestRelay } from '../helpers/relay.js';

const hmac = (key: string, data: string): string => createHmac('sha1', key).update(data, 'utf8').digest('base64');

let svc: LoopbackService;
let relays: Relay[];
let api: FakeTwilioApi;
let resumeServer: Server;
let resumeUrl: string;
/** What the stand-in after-stream route answers next (TwiML). */
let resumeTwiml = '<Response><Hangup/></Response>';
const resumeRequests: string[] = [];

beforeAll(async () => {
  svc = await startLoopbackService({ pollMs: 100 });
  relays = await Promise.all([0, 1, 2].map(() => startTestRelay({ PUBLIC_URL: svc.url })));
  api = await startFakeTwilioApi({ accounts: { [demo.accountSid]: demo.authToken } });
  resumeServer = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      resumeRequests.push(body);
      res.setHeader('content-type', 'text/xml');
      res.end(resumeTwiml);
    });
  });
  await new Promise<void>((resolve) => resumeServer.listen(0, '127.0.0.1', resolve));
  resumeUrl = `http://127.0.0.1:${(resumeServer.address() as AddressInfo).port}/resume`;
});
afterAll(async () => {
  await Promise.all(relays.map((r) => r.close()));
  await svc.close();
  await api.close();
  resumeServer.closeAllConnections();
  await new Promise<void>((resolve) => resumeServer.close(() => resolve()));
});

/** Point the service at this relay only (the others leave it), once it is ready. */
const routeToRelay = (relay: Relay): Promise<void> => routeTo(svc, [relay.url], 5000);

/** A fresh `<Connect><Stream>` for this call from the relay (new one-time token), as a resume TwiML would carry. */
async function streamTwiml(callSid: string, redirectTo: string): Promise<string> {
  const hook = buildVoiceWebhook({ baseUrl: svc.url, callSid, accountSid: demo.accountSid, from: '+15005550100', to: demo.to, authToken: demo.authToken, hmacSha1Base64: hmac });
  const res = await fetch(hook.url, { method: 'POST', headers: hook.headers, body: hook.body });
  const t = parseTwiml(await res.text());
  if (t.kind !== 'stream') throw new Error('no stream TwiML');
  const params = Object.entries(t.parameters)
    .map(([name, value]) => `<Parameter name="${name}" value="${value}"/>`)
    .join('');
  return `<Response><Connect><Stream url="${t.streamUrl}">${params}<Parameter name="leg" value="next"/></Stream></Connect><Redirect>${redirectTo}</Redirect></Response>`;
}

async function restUpdate(callSid: string, form: Record<string, string>): Promise<number> {
  const res = await fetch(`${api.url}/2010-04-01/Accounts/${demo.accountSid}/Calls/${callSid}.json`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${demo.accountSid}:${demo.authToken}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  await res.arrayBuffer();
  return res.status;
}

/** A call to the demo tenant through the service, known to the fake Twilio API. */
const call = (o: Omit<PlaceCallOptions, 'baseUrl' | 'to' | 'accountSid' | 'authToken' | 'twilioApi'>): Promise<CallReport> =>
  placeCall({ baseUrl: svc.url, ...demo, twilioApi: api, ...o });

/** Twilio is told to move the call (a REST update) to a new stream on `relay`, which the service routes to. */
async function moveByUpdate(callSid: string, relay: Relay): Promise<number> {
  await routeToRelay(relay);
  return restUpdate(callSid, { Twiml: await streamTwiml(callSid, resumeUrl) });
}

const script: CallScript = {
  turns: [{ say: 'Hi, do you serve postcode 10001?' }, { say: 'What does drain cleaning cost?' }, { say: 'Is there a call-out fee?' }],
  hangupAfterMs: 300,
  maxCallMs: 40_000,
  replyTimeoutMs: 6000,
};

describe('a call moved to new streams', () => {
  it('a REST update connects a new stream, then a cut stream is resumed through the after-stream redirect; the script goes on', async () => {
    const callSid = randomSid('CA');
    let moves = 0;
    const [a, b, c] = relays as [Relay, Relay, Relay];
    await routeToRelay(a);
    const report = await call({
      callSid,
      script,
      hooks: {
        onTurn: (i) => {
          // After turn 0's reply: Twilio gets a call update with a new <Connect><Stream>.
          if (i === 0 && moves++ === 0) {
            void moveByUpdate(callSid, b);
          }
          // After turn 1's reply: the pod is lost (no close frame); the redirect connects again.
          if (i === 1 && moves++ === 1) {
            void routeToRelay(c)
              .then(() => streamTwiml(callSid, resumeUrl))
              .then((twiml) => {
                resumeTwiml = twiml;
                svc.sever(b.url);
              });
          }
        },
      },
    });
    expect(report.stage).toBe('connected');
    expect(report.errors).toEqual([]);
    expect(report.legs.map((l) => [l.via, l.end])).toEqual([
      ['webhook', 'stop-by-twilio-update'],
      ['update', 'abnormal'],
      ['redirect', 'caller-hangup'],
    ]);
    expect(report.legs[1]!.closeCode).toBe(1006);
    const sids = new Set(report.legs.map((l) => l.streamSid));
    expect(sids.size).toBe(3);
    expect(report.streamSid).toBe(report.legs[2]!.streamSid);
    for (const l of report.legs.slice(1)) {
      expect(l.gapMs).not.toBeNull();
      expect(l.gapMs!).toBeGreaterThanOrEqual(0);
      expect(l.gapMs!).toBeLessThan(3000);
      expect(l.url).toBe(`${svc.url.replace('http', 'ws')}/twilio/media`);
    }
    // Every turn ran once, across the three streams, each with a reply.
    expect(report.turns.map((t) => t.said)).toEqual(script.turns.map((t) => t.say));
    for (const t of report.turns) expect(t.heard).not.toBe('');
    expect(report.endedBy).toBe('caller');
    // Twilio fetched the redirect with the call's fields.
    expect(resumeRequests.some((b) => new URLSearchParams(b).get('CallSid') === callSid)).toBe(true);
    // The fake API saw one update from the test and knows the call is over.
    expect(api.requests.filter((r) => r.callSid === callSid).map((r) => r.status)).toEqual([200]);
    expect(api.callState(callSid)).toBe('ended');
  });

  it('an update with other TwiML ends the stream life; the call is then unknown to the API', async () => {
    const callSid = randomSid('CA');
    const report = await call({
      callSid,
      script,
      hooks: { onGreeting: () => void restUpdate(callSid, { Twiml: '<Response><Say>Goodbye</Say><Hangup/></Response>' }) },
    });
    expect(report.legs.map((l) => l.end)).toEqual(['stop-by-twilio-update']);
    expect(report.endedBy).toBe('update');
    expect(report.afterUpdate).toBe('Goodbye <Hangup/>');
    expect(await restUpdate(callSid, { Status: 'completed' })).toBe(404);
  });

  it('stops following a call that keeps moving after maxLegs streams', async () => {
    const callSid = randomSid('CA');
    await routeToRelay(relays[0]!);
    let moves = 0;
    const report = await call({
      callSid,
      maxLegs: 2,
      script: { ...script, turns: [{ say: 'hello' }, { say: 'hello again' }, { say: 'and again' }] },
      hooks: {
        onTurn: () => {
          if (moves++ === 0) {
            void moveByUpdate(callSid, relays[1]!);
          } else void restUpdate(callSid, { Twiml: `<Response><Connect><Stream url="${svc.url.replace('http', 'ws')}/twilio/media"/></Connect></Response>` });
        },
      },
    });
    expect(report.legs).toHaveLength(2);
    expect(report.errors.some((e) => e.includes('moved more than 1 times'))).toBe(true);
  });
});
