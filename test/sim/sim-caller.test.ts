/**
 * The simulated Twilio caller: caller-core.js driven by a manual clock, the CLI's pure helpers, and
 * placeCall end to end against a small fake relay on real loopback sockets.
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import twilio from 'twilio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { FRAME_BYTES, SPEECH_ENERGY_THRESHOLD, SpeechTextCollector, frameEnergy, speechFrames, tone } from '../../src/sim/portable/audio.js';
import { CallerSession, emptyReport, type CallScript } from '../../src/sim/portable/caller-core.js';
import { buildVoiceWebhook, formEncode, parseTwiml, twilioSignature, type TwimlVerb } from '../../src/sim/portable/twilio-http.js';
import { callOutcome, histogramBuckets, parseCliArgs, quantileFromBucketDeltas, relayLatency, urlHint } from '../../src/sim/call-cli.js';
import { placeCall, type CallReport } from '../../src/sim/sim-caller.js';

const hmac = (key: string, data: string): string => createHmac('sha1', key).update(data, 'utf8').digest('base64');
const b64encode = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const b64decode = (s: string): Uint8Array => Buffer.from(s, 'base64');

const CALL_SID = 'CA0123456789abcdef0123456789abcdef';
const STREAM_SID = 'MZ0123456789abcdef0123456789abcdef';
const ACCOUNT_SID = 'AC00000000000000000000000000000000';

function concat(frames: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let o = 0;
  for (const f of frames) {
    out.set(f, o);
    o += f.length;
  }
  return out;
}

/** Assistant audio carrying `text`, `ms` long (440 Hz like the simulated model). */
function replyAudio(text: string, ms: number): string {
  return b64encode(concat(speechFrames(text, { hz: 440, minFrames: Math.max(1, ms / 20) })));
}
const media = (payload: string, sid = STREAM_SID): string => JSON.stringify({ event: 'media', streamSid: sid, media: { payload } });
const mark = (name: string): string => JSON.stringify({ event: 'mark', streamSid: STREAM_SID, mark: { name } });
const clear = (): string => JSON.stringify({ event: 'clear', streamSid: STREAM_SID });

type Msg = { event: string; sequenceNumber?: string; [k: string]: unknown };
const parse = (msgs: string[]): Msg[] => msgs.map((m) => JSON.parse(m) as Msg);

function session(script: Partial<CallScript> & { turns: CallScript['turns'] }, after?: string): CallerSession {
  return new CallerSession({
    callSid: CALL_SID,
    accountSid: ACCOUNT_SID,
    streamSid: STREAM_SID,
    parameters: { tenant: 'demo', token: 'tok' },
    script: { maxCallMs: 60_000, ...script },
    b64encode,
    b64decode,
    ...(after ? { after: afterVerbs(after) } : {}),
  });
}

function afterVerbs(xml: string): TwimlVerb[] {
  const t = parseTwiml(xml);
  if (t.kind !== 'stream') throw new Error('expected a stream TwiML');
  return t.after;
}

/** Tick every 20 ms over [from, to), collecting what the caller sends with the time it was sent. */
function run(s: CallerSession, from: number, to: number, out: Array<{ t: number; m: Msg }> = []): Array<{ t: number; m: Msg }> {
  for (let t = from; t < to && !s.done; t += 20) for (const m of parse(s.tick(t))) out.push({ t, m });
  return out;
}
const speechText = (m: Msg): string | undefined => {
  const c = new SpeechTextCollector();
  c.push(b64decode((m.media as { payload: string }).payload));
  return c.text();
};

describe('signatures and webhook', () => {
  it('matches the Twilio security docs vector', () => {
    const params = { CallSid: 'CA1234567890ABCDE', Caller: '+14158675310', Digits: '1234', From: '+14158675310', To: '+18005551212' };
    expect(twilioSignature('https://example.com/myapp.php?foo=1&bar=2', params, '12345', hmac)).toBe('L/OH5YylLD5NRKLltdqwSvS0BnU=');
  });

  it('signs the wss upgrade over the bare URL', () => {
    expect(twilioSignature('wss://example.com/media-stream', {}, '12345', hmac)).toBe('XFfwGS2Ev7f9qAP9MmRoMS7C724=');
  });

  it('builds a webhook whose signature validates with the twilio SDK and a hand computation', () => {
    const hook = buildVoiceWebhook({
      baseUrl: 'http://localhost:8080/',
      callSid: CALL_SID,
      accountSid: ACCOUNT_SID,
      from: '+15005550100',
      to: '+15005550006',
      authToken: 'tok en&',
      hmacSha1Base64: hmac,
    });
    expect(hook.url).toBe('http://localhost:8080/twilio/voice');
    const fields = Object.fromEntries(new URLSearchParams(hook.body));
    expect(fields).toEqual({
      AccountSid: ACCOUNT_SID,
      ApiVersion: '2010-04-01',
      CallSid: CALL_SID,
      CallStatus: 'ringing',
      Called: '+15005550006',
      Caller: '+15005550100',
      Direction: 'inbound',
      From: '+15005550100',
      To: '+15005550006',
    });
    expect(hook.body).toContain('From=%2B15005550100');
    const byHand = hmac(
      'tok en&',
      hook.url + Object.keys(fields).sort().map((k) => k + (fields[k] ?? '')).join(''),
    );
    expect(hook.headers['x-twilio-signature']).toBe(byHand);
    expect(twilio.validateRequest('tok en&', hook.headers['x-twilio-signature'], hook.url, fields)).toBe(true);
  });

  it('drops the port from https webhook URLs when signing, as Twilio does', () => {
    const hook = buildVoiceWebhook({
      baseUrl: 'https://relay.example.com:8443',
      callSid: CALL_SID,
      accountSid: ACCOUNT_SID,
      from: '+15005550100',
      to: '+15005550006',
      authToken: 't',
      hmacSha1Base64: hmac,
    });
    expect(hook.url).toBe('https://relay.example.com:8443/twilio/voice');
    expect(hook.headers['x-twilio-signature']).toBe(twilioSignature('https://relay.example.com/twilio/voice', hook.params, 't', hmac));
  });

  it('form-encodes spaces as + and escapes reserved characters', () => {
    expect(formEncode({ a: 'x y', 'b&c': '1=2+3' })).toBe('a=x+y&b%26c=1%3D2%2B3');
  });
});

describe('parseTwiml', () => {
  it('reads Connect/Stream/Parameter and the verbs after it, decoding entities', () => {
    const vr = new twilio.twiml.VoiceResponse();
    vr.say('Please hold & wait.');
    const stream = vr.connect().stream({ url: 'wss://relay.example.com/twilio/media', statusCallback: 'https://relay.example.com/twilio/status' });
    stream.parameter({ name: 'tenant', value: 'demo' });
    stream.parameter({ name: 'token', value: 'v1.a<b>"c"&d' });
    vr.say('Sorry, the assistant is unavailable. Goodbye.');
    vr.hangup();
    const t = parseTwiml(vr.toString());
    expect(t).toEqual({
      kind: 'stream',
      streamUrl: 'wss://relay.example.com/twilio/media',
      statusCallback: 'https://relay.example.com/twilio/status',
      parameters: { tenant: 'demo', token: 'v1.a<b>"c"&d' },
      before: [{ verb: 'Say', text: 'Please hold & wait.', attrs: {} }],
      after: [
        { verb: 'Say', text: 'Sorry, the assistant is unavailable. Goodbye.', attrs: {} },
        { verb: 'Hangup', text: '', attrs: {} },
      ],
    });
  });

  it('returns the verbs of a TwiML without a stream (unknown number)', () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n  <Say voice='alice'>This number &apos;is&apos; not in service &#8212; goodbye.</Say>\n  <Hangup/>\n</Response>`;
    expect(parseTwiml(xml)).toEqual({
      kind: 'other',
      verbs: [
        { verb: 'Say', text: "This number 'is' not in service \u2014 goodbye.", attrs: { voice: 'alice' } },
        { verb: 'Hangup', text: '', attrs: {} },
      ],
    });
    expect(parseTwiml('<Response><Reject reason="busy"/></Response>')).toEqual({
      kind: 'other',
      verbs: [{ verb: 'Reject', text: '', attrs: { reason: 'busy' } }],
    });
  });

  it('throws on a document that is not TwiML', () => {
    expect(() => parseTwiml('<html>oops</html>')).toThrow(/not TwiML/);
  });
});

describe('CallerSession', () => {
  it('opens with connected and a start shaped exactly like Twilio', () => {
    const s = session({ turns: [] });
    const [connected, start, ...rest] = parse(s.open(0));
    expect(rest).toEqual([]);
    expect(connected).toEqual({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    expect(start).toEqual({
      event: 'start',
      sequenceNumber: '1',
      streamSid: STREAM_SID,
      start: {
        accountSid: ACCOUNT_SID,
        streamSid: STREAM_SID,
        callSid: CALL_SID,
        tracks: ['inbound'],
        customParameters: { tenant: 'demo', token: 'tok' },
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    });
  });

  it('sends exactly one 20 ms media frame per tick with Twilio string fields', () => {
    const s = session({ turns: [] });
    s.open(1000);
    const sent = run(s, 1020, 1120);
    expect(sent).toHaveLength(5);
    sent.forEach(({ m }, i) => {
      expect(Object.keys(m)).toEqual(['event', 'sequenceNumber', 'streamSid', 'media']);
      expect(m.sequenceNumber).toBe(String(i + 2));
      expect(m.media).toEqual({ track: 'inbound', chunk: String(i + 1), timestamp: String(20 * (i + 1)), payload: expect.any(String) as string });
      expect(b64decode((m.media as { payload: string }).payload)).toHaveLength(FRAME_BYTES);
    });
    expect(s.report().framesSent).toBe(5);
  });

  it('waits for the greeting to finish playing, then speaks the turn', () => {
    const s = session({ turns: [{ say: 'Hi there' }], quietMs: 300 });
    s.open(0);
    expect(s.onMessage(media(replyAudio('Thanks for calling', 400)), 100)).toEqual([]);
    // Greeting plays 100..500 ms; speech may start at 800 ms.
    const sent = run(s, 120, 1000);
    const firstSpeech = sent.find(({ m }) => m.event === 'media' && speechText(m) !== undefined);
    expect(firstSpeech?.t).toBe(800);
    expect(speechText(firstSpeech!.m)).toBe('Hi there');
    expect(s.report().greeting).toBe('Thanks for calling');
  });

  it('echoes a mark only when the audio before it has played, and at once when nothing is queued', () => {
    const s = session({ turns: [] });
    s.open(0);
    expect(parse(s.onMessage(mark('idle'), 10))).toEqual([{ event: 'mark', sequenceNumber: '2', streamSid: STREAM_SID, mark: { name: 'idle' } }]);
    s.onMessage(media(b64encode(tone(1600, 440))), 100); // 200 ms: plays 100..300
    expect(s.onMessage(mark('m1'), 110)).toEqual([]);
    const sent = run(s, 120, 400);
    const echo = sent.find(({ m }) => m.event === 'mark');
    expect(echo?.t).toBe(300);
    expect(echo?.m.mark).toEqual({ name: 'm1' });
    expect(s.report()).toMatchObject({ marksSent: 2, marksEchoed: 2 });
  });

  it('clear drops queued audio and echoes every pending mark at once', () => {
    const s = session({ turns: [] });
    s.open(0);
    s.onMessage(media(b64encode(tone(8000, 440))), 100); // 1 s
    s.onMessage(mark('a'), 100);
    s.onMessage(media(replyAudio('never heard', 200)), 100); // would play at 1100 ms
    s.onMessage(mark('b'), 100);
    expect(run(s, 120, 300).filter(({ m }) => m.event === 'mark')).toEqual([]);
    const echoes = parse(s.onMessage(clear(), 300));
    expect(echoes.map((m) => (m.mark as { name: string }).name)).toEqual(['a', 'b']);
    run(s, 320, 2000);
    const r = s.report();
    expect(r).toMatchObject({ clears: 1, marksEchoed: 2, greeting: '' });
    // Played immediately after the clear: the queue is empty.
    expect(parse(s.onMessage(mark('c'), 2000))).toHaveLength(1);
  });

  it('barges in the configured time after the reply starts playing and records the clear', () => {
    const s = session({ turns: [{ say: 'first' }, { say: 'second', bargeInAfterMs: 200 }], waitForGreeting: false, hangupAfterMs: 100 });
    s.open(0);
    const sent = run(s, 20, 600); // 25 speech frames: 20..500, speech ends at 500
    const spoken = sent.filter(({ m }) => m.event === 'media' && speechText(m) === 'first');
    expect(spoken.map(({ t }) => t)).toEqual([20]);
    s.onMessage(media(replyAudio('You said: first', 2000)), 700); // plays 700..2700
    run(s, 600, 1000, sent);
    const second = sent.find(({ m }) => m.event === 'media' && speechText(m) === 'second');
    expect(second?.t).toBe(900);
    // The relay answers the interruption with clear.
    s.onMessage(clear(), 960);
    const r = s.report();
    expect(r.turns).toEqual([
      { said: 'first', heard: 'You said: first', turnLatencyMs: 200, bargeIn: false, clearReceived: false, playedMsAtClear: null },
      // The reply started playing at 700; the clear came at 960.
      { said: 'second', heard: '', turnLatencyMs: null, bargeIn: true, clearReceived: true, playedMsAtClear: 260 },
    ]);
  });

  it('sends DTMF digits one per tick and stops with Twilio-shaped stop after hangupAfterMs', () => {
    const s = session({ turns: [{ say: '', dtmf: '12' }], waitForGreeting: false, hangupAfterMs: 100, replyTimeoutMs: 200 });
    s.open(0);
    const sent = run(s, 20, 1000);
    const dtmf = sent.filter(({ m }) => m.event === 'dtmf').map(({ m }) => m);
    expect(dtmf).toEqual([
      { event: 'dtmf', sequenceNumber: '2', streamSid: STREAM_SID, dtmf: { track: 'inbound_track', digit: '1' } },
      { event: 'dtmf', sequenceNumber: '4', streamSid: STREAM_SID, dtmf: { track: 'inbound_track', digit: '2' } },
    ]);
    const last = sent[sent.length - 1]!;
    expect(last.m).toEqual({
      event: 'stop',
      sequenceNumber: String(sent.length + 1),
      streamSid: STREAM_SID,
      stop: { accountSid: ACCOUNT_SID, callSid: CALL_SID },
    });
    // No reply within 200 ms after the turn (at 0 ms), hang up 100 ms later.
    expect(last.t).toBe(300);
    expect(s.done).toBe(true);
    expect(s.tick(2000)).toEqual([]);
    const r = s.report();
    expect(r).toMatchObject({ endedBy: 'caller', dtmfSent: 2, errors: ['no reply to turn 1 within 200 ms'] });
  });

  it('ends every call at maxCallMs', () => {
    const s = session({ turns: [], maxCallMs: 200 });
    s.open(0);
    const sent = run(s, 20, 1000);
    expect(sent[sent.length - 1]?.m.event).toBe('stop');
    expect(sent[sent.length - 1]?.t).toBe(200);
    expect(s.report()).toMatchObject({ endedBy: 'timeout', errors: [expect.stringMatching(/maxCallMs/) as string] });
  });

  it('reports the fallback TwiML when the relay closes the socket', () => {
    const twiml = '<Response><Connect><Stream url="wss://x/twilio/media"/></Connect><Say>Sorry, try later.</Say><Hangup/></Response>';
    const s = session({ turns: [{ say: 'hello' }] }, twiml);
    s.open(0);
    s.onClose(4010, 'model unavailable', 500);
    expect(s.done).toBe(true);
    expect(s.report()).toMatchObject({ closeCode: 4010, closeReason: 'model unavailable', endedBy: 'relay', fallback: 'Sorry, try later. <Hangup/>', durationMs: 500 });
  });

  it('flags relay messages Twilio would reject (31951)', () => {
    const s = session({ turns: [] });
    s.open(0);
    s.onMessage(media(b64encode(tone(160, 440)), 'MZother'), 10);
    s.onMessage(JSON.stringify({ event: 'media', streamSid: STREAM_SID, media: { payload: 'AAAA', track: 'outbound' } }), 10);
    s.onMessage(JSON.stringify({ event: 'close', streamSid: STREAM_SID }), 10);
    s.onMessage('not json', 10);
    const errors = s.report().errors;
    expect(errors).toHaveLength(4);
    for (const e of errors) expect(e).toMatch(/^31951/);
    expect(s.report().framesReceived).toBe(0);
  });

  it('measures the gap between media messages within one reply', () => {
    const s = session({ turns: [] });
    s.open(0);
    const frames = speechFrames('reply', { hz: 440, minFrames: 4 }).map((f) => b64encode(f));
    s.onMessage(media(frames[0]!), 100);
    s.onMessage(media(frames[1]!), 130);
    s.onMessage(media(frames[2]!), 175);
    s.onMessage(media(replyAudio('next reply', 40)), 5000); // new reply: not a gap
    expect(s.report()).toMatchObject({ framesReceived: 4, maxInterArrivalGapMs: 45, audioMsReceived: 100 });
  });
});

describe('call-cli helpers', () => {
  const before = [
    'switchboard_frame_relay_seconds_bucket{le="0.00001",direction="caller_to_model"} 0',
    'switchboard_frame_relay_seconds_bucket{le="0.0001",direction="caller_to_model"} 10',
    'switchboard_frame_relay_seconds_bucket{le="0.001",direction="caller_to_model"} 10',
    'switchboard_frame_relay_seconds_bucket{le="+Inf",direction="caller_to_model"} 10',
    'switchboard_frame_relay_seconds_sum{direction="caller_to_model"} 0.0005',
    'switchboard_frame_relay_seconds_bucket{le="0.0001",direction="model_to_caller"} 0',
    'switchboard_frame_relay_seconds_bucket{le="+Inf",direction="model_to_caller"} 0',
  ].join('\n');
  const after = [
    '# HELP switchboard_frame_relay_seconds x',
    'switchboard_frame_relay_seconds_bucket{le="0.00001",direction="caller_to_model"} 0',
    'switchboard_frame_relay_seconds_bucket{le="0.0001",direction="caller_to_model"} 60',
    'switchboard_frame_relay_seconds_bucket{le="0.001",direction="caller_to_model"} 110',
    'switchboard_frame_relay_seconds_bucket{le="+Inf",direction="caller_to_model"} 110',
    'switchboard_frame_relay_seconds_sum{direction="caller_to_model"} 0.0305',
    'switchboard_frame_relay_seconds_count{direction="caller_to_model"} 110',
    'switchboard_frame_relay_seconds_bucket{le="0.0001",direction="model_to_caller"} 0',
    'switchboard_frame_relay_seconds_bucket{le="+Inf",direction="model_to_caller"} 4',
  ].join('\n');

  it('estimates quantiles from bucket deltas like histogram_quantile', () => {
    const b = histogramBuckets(before, 'switchboard_frame_relay_seconds', { direction: 'caller_to_model' });
    const a = histogramBuckets(after, 'switchboard_frame_relay_seconds', { direction: 'caller_to_model' });
    expect([...a.entries()]).toEqual([[0.00001, 0], [0.0001, 60], [0.001, 110], [Infinity, 110]]);
    // 100 new observations: 50 in (10 µs, 100 µs], 50 in (100 µs, 1 ms].
    const p50 = quantileFromBucketDeltas(0.5, b, a);
    expect(p50.count).toBe(100);
    expect(p50.value).toBeCloseTo(0.0001, 9);
    expect(quantileFromBucketDeltas(0.25, b, a).value).toBeCloseTo(0.000055, 9);
    expect(quantileFromBucketDeltas(0.99, b, a).value).toBeCloseTo(0.0001 + 0.0009 * (49 / 50), 9);
    expect(quantileFromBucketDeltas(0.5, a, a)).toEqual({ value: null, count: 0 });
  });

  it('answers the highest finite bound when the quantile falls in +Inf', () => {
    const lat = relayLatency(before, after);
    expect(lat.frames.model_to_caller).toMatchObject({ p50Ms: 0.1, p99Ms: 0.1, count: 4, p99AtMostMs: 0.1, p99Overflow: true, meanMs: null });
    expect(lat.frames.caller_to_model.p50Ms).toBe(0.1);
    expect(lat.turn).toEqual({ p50Ms: null, p99Ms: null, count: 0, meanMs: null, p50AtMostMs: null, p99AtMostMs: null, p99Overflow: false });
  });

  it('reports the exact mean from _sum and quantiles as the bucket they fall in, never above every observation', () => {
    const lat = relayLatency(before, after).frames.caller_to_model;
    // 100 new observations summing to 30 ms: mean 0.3 ms; half are <= 0.1 ms, all <= 1 ms.
    expect(lat).toMatchObject({ count: 100, meanMs: 0.3, p50AtMostMs: 0.1, p99AtMostMs: 1, p99Overflow: false });
    // Three turns, all in (0.3 s, 0.5 s]: histogram_quantile interpolates p99 to ~0.497 s even when
    // every turn took 0.31 s; the bound says only what is known, and the mean is the truth.
    const turns = (n: number, sum: number) =>
      [`switchboard_turn_latency_seconds_bucket{le="0.3"} 0`, `switchboard_turn_latency_seconds_bucket{le="0.5"} ${n}`, `switchboard_turn_latency_seconds_bucket{le="+Inf"} ${n}`, `switchboard_turn_latency_seconds_sum ${sum}`].join('\n');
    const t = relayLatency(turns(0, 0), turns(3, 0.93)).turn;
    expect(t).toMatchObject({ count: 3, meanMs: 310, p99AtMostMs: 500 });
    expect(t.p99Ms!).toBeGreaterThan(490);
  });

  it('says which URL option fixes a call that failed on a URL, and only then', () => {
    const options = parseCliArgs(['--url', 'http://localhost:8080']);
    if (!options.ok) throw new Error(options.error);
    const o = options.options;
    const report = (over: Partial<CallReport>): CallReport => ({ ...emptyReport(CALL_SID), stage: 'connected', webhookStatus: 200, twiml: null, spoken: '', ...over });
    expect(urlHint(report({ stage: 'rejected', webhookStatus: 403 }), o)).toMatch(/--public-url PUBLIC_URL/);
    expect(urlHint(report({ stage: 'rejected', webhookStatus: 403 }), { ...o, publicUrl: 'https://voice.example.com' })).toBeUndefined();
    const twiml = { kind: 'stream', streamUrl: 'wss://voice.example.com/twilio/media', statusCallback: undefined, parameters: {}, before: [], after: [] } as unknown as CallReport['twiml'];
    expect(urlHint(report({ stage: 'stream-failed', twiml }), o)).toBe(
      "hint: the TwiML's <Stream url> is wss://voice.example.com/twilio/media (from PUBLIC_URL); if it is not reachable from here, pass --stream-url ws://localhost:8080/twilio/media",
    );
    expect(urlHint(report({ stage: 'connected' }), o)).toBeUndefined();
  });

  it('parses arguments with demo defaults and rejects unknown scripts', () => {
    expect(parseCliArgs([])).toEqual({
      ok: true,
      options: {
        url: 'http://localhost:8080',
        to: '+15005550006',
        accountSid: 'AC00000000000000000000000000000000',
        authToken: 'demo-auth-token-not-secret',
        script: 'default',
        json: false,
      },
    });
    expect(parseCliArgs(['--script', 'barge-in', '--json', '--url', 'http://127.0.0.1:9/'])).toMatchObject({
      ok: true,
      options: { script: 'barge-in', json: true, url: 'http://127.0.0.1:9' },
    });
    expect(parseCliArgs(['--script', 'nope'])).toMatchObject({ ok: false, error: expect.stringMatching(/--script must be one of/) as string });
    expect(parseCliArgs(['--bogus'])).toMatchObject({ ok: false });
  });
});

// --- placeCall against a fake relay ---------------------------------------------------------------------

const TOKEN = 'fake-relay-token';
const NUMBER = '+15005550006';

interface FakeRelay {
  port: number;
  /** Every event the fake relay received on media sockets, by callSid (no media payloads). */
  events: Map<string, Msg[]>;
  upgradeSignatures: string[];
  close(): Promise<void>;
}

/** A tiny relay: signed TwiML, signed upgrade, a greeting, then echoes what the caller says; "goodbye" ends the call. */
async function startFakeRelay(): Promise<FakeRelay> {
  const events = new Map<string, Msg[]>();
  const upgradeSignatures: string[] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      let body = '';
      for await (const chunk of req) body += String(chunk);
      const port = (server.address() as AddressInfo).port;
      const params = Object.fromEntries(new URLSearchParams(body));
      const url = `http://127.0.0.1:${port}${req.url ?? ''}`;
      if (req.url !== '/twilio/voice' || !twilio.validateRequest(TOKEN, String(req.headers['x-twilio-signature']), url, params)) {
        res.writeHead(403).end('bad signature');
        return;
      }
      const vr = new twilio.twiml.VoiceResponse();
      if (params.To !== NUMBER) {
        vr.say('This number is not in service.');
        vr.hangup();
      } else {
        vr.connect().stream({ url: `ws://127.0.0.1:${port}/twilio/media` }).parameter({ name: 'token', value: `tok-${params.CallSid}` });
        vr.say('The assistant is unavailable.');
      }
      res.writeHead(200, { 'content-type': 'text/xml' }).end(vr.toString());
    })();
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket, head) => {
    const port = (server.address() as AddressInfo).port;
    const sig = String(req.headers['x-twilio-signature']);
    upgradeSignatures.push(sig);
    if (req.url !== '/twilio/media' || !twilio.validateRequest(TOKEN, sig, `ws://127.0.0.1:${port}/twilio/media`, {})) {
      socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws));
  });
  const serve = (ws: WebSocket): void => {
    let streamSid = '';
    let log: Msg[] = [];
    let n = 0;
    let closeAfterMark = '';
    const heard = new SpeechTextCollector();
    const say = (text: string): string => {
      ws.send(JSON.stringify({ event: 'media', streamSid, media: { payload: replyAudio(text, 300) } }));
      const name = `m${++n}`;
      ws.send(JSON.stringify({ event: 'mark', streamSid, mark: { name } }));
      return name;
    };
    ws.on('message', (data: Buffer) => {
      const m = JSON.parse(data.toString('utf8')) as Msg;
      if (m.event === 'start') {
        const start = m.start as { callSid: string; streamSid: string; customParameters: Record<string, string> };
        streamSid = start.streamSid;
        log = [];
        events.set(start.callSid, log);
        if (start.customParameters.token !== `tok-${start.callSid}`) {
          ws.close(4003, 'stream token invalid');
          return;
        }
        say('Hello from the fake relay');
      }
      if (m.event === 'media') {
        log.push({ event: 'media' });
        // Like a model's VAD: answer at the first silent frame after a complete utterance.
        const frame = b64decode((m.media as { payload: string }).payload);
        heard.push(frame);
        const text = heard.text();
        if (text === undefined || frameEnergy(frame) >= SPEECH_ENERGY_THRESHOLD) return;
        heard.reset();
        const name = say(`You said: ${text}`);
        if (/goodbye/i.test(text)) closeAfterMark = name;
        return;
      }
      log.push(m);
      if (m.event === 'mark' && (m.mark as { name: string }).name === closeAfterMark) ws.close(4011, 'call ended');
    });
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    events,
    upgradeSignatures,
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('placeCall on real sockets', () => {
  let relay: FakeRelay;
  let base: string;
  beforeAll(async () => {
    relay = await startFakeRelay();
    base = `http://127.0.0.1:${relay.port}`;
  });
  afterAll(async () => {
    await relay.close();
  });

  it('runs a whole call: greeting, turns, marks, relay close with fallback', async () => {
    const r = await placeCall({
      baseUrl: base,
      to: NUMBER,
      accountSid: ACCOUNT_SID,
      authToken: TOKEN,
      script: { turns: [{ say: 'Hi, is this the plumber?' }, { say: 'Thanks, goodbye' }], maxCallMs: 15_000, quietMs: 100 },
    });
    expect(r.errors).toEqual([]);
    expect(r).toMatchObject({
      stage: 'connected',
      webhookStatus: 200,
      greeting: 'Hello from the fake relay',
      closeCode: 4011,
      closeReason: 'call ended',
      endedBy: 'relay',
      fallback: 'The assistant is unavailable.',
      marksSent: 3,
      marksEchoed: 3,
      framesReceived: 3,
    });
    expect(r.callSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(r.streamSid).toMatch(/^MZ[0-9a-f]{32}$/);
    expect(r.turns.map((t) => [t.said, t.heard])).toEqual([
      ['Hi, is this the plumber?', 'You said: Hi, is this the plumber?'],
      ['Thanks, goodbye', 'You said: Thanks, goodbye'],
    ]);
    for (const t of r.turns) expect(t.turnLatencyMs).toBeGreaterThanOrEqual(0);
    // Paced in real time by the shared ticker: one 20 ms frame per 20 ms of call, give or take a few.
    expect(Math.abs(r.framesSent - r.durationMs / 20)).toBeLessThanOrEqual(3 + r.durationMs / 200);
    expect(callOutcome(r)).toEqual({ ok: true });
    // The relay saw Twilio's event order: start first, marks echoed, no stop (it closed the socket).
    const log = relay.events.get(r.callSid)!;
    expect(log[0]?.event).toBe('start');
    expect(log.filter((m) => m.event === 'mark')).toHaveLength(3);
    expect(log.some((m) => m.event === 'stop')).toBe(false);
    expect(relay.upgradeSignatures).toContain(twilioSignature(`ws://127.0.0.1:${relay.port}/twilio/media`, {}, TOKEN, hmac));
  });

  it('hangs up with stop when the script says so', async () => {
    const r = await placeCall({
      baseUrl: base,
      to: NUMBER,
      accountSid: ACCOUNT_SID,
      authToken: TOKEN,
      callSid: 'CAffffffffffffffffffffffffffffffff',
      script: { turns: [{ say: 'Just checking', dtmf: '9' }], hangupAfterMs: 50, maxCallMs: 15_000, quietMs: 100 },
    });
    expect(r).toMatchObject({ stage: 'connected', endedBy: 'caller', errors: [], dtmfSent: 1 });
    const log = relay.events.get('CAffffffffffffffffffffffffffffffff')!;
    expect(log.find((m) => m.event === 'dtmf')?.dtmf).toEqual({ track: 'inbound_track', digit: '9' });
    // The close event can beat the stop message to the fake relay's handler by no margin: wait for it, bounded.
    for (let i = 0; i < 100 && !log.some((m) => m.event === 'stop'); i++) await new Promise((resolve) => setImmediate(resolve));
    expect(log.find((m) => m.event === 'stop')).toEqual({
      event: 'stop',
      sequenceNumber: expect.any(String) as string,
      streamSid: r.streamSid,
      stop: { accountSid: ACCOUNT_SID, callSid: 'CAffffffffffffffffffffffffffffffff' },
    });
  });

  it('reports an unknown number, a bad signature and an unreachable relay without throwing', async () => {
    const script: CallScript = { turns: [{ say: 'hello' }], maxCallMs: 5_000 };
    const unknown = await placeCall({ baseUrl: base, to: '+15005559999', accountSid: ACCOUNT_SID, authToken: TOKEN, script });
    expect(unknown).toMatchObject({ stage: 'not-connected', spoken: 'This number is not in service. <Hangup/>' });
    expect(callOutcome(unknown)).toMatchObject({ ok: false, reason: expect.stringMatching(/without a media stream/) as string });

    const rejected = await placeCall({ baseUrl: base, to: NUMBER, accountSid: ACCOUNT_SID, authToken: 'wrong', script });
    expect(rejected).toMatchObject({ stage: 'rejected', webhookStatus: 403 });

    const spare = createServer();
    await new Promise<void>((resolve) => spare.listen(0, '127.0.0.1', resolve));
    const deadPort = (spare.address() as AddressInfo).port;
    await new Promise<void>((resolve) => spare.close(() => resolve()));
    const dead = await placeCall({ baseUrl: `http://127.0.0.1:${deadPort}`, to: NUMBER, accountSid: ACCOUNT_SID, authToken: TOKEN, script });
    expect(dead.stage).toBe('unreachable');
    expect(dead.errors[0]).toMatch(/cannot reach/);
  });

  it('reports a refused stream upgrade', async () => {
    const r = await placeCall({
      baseUrl: base,
      to: NUMBER,
      accountSid: ACCOUNT_SID,
      authToken: TOKEN,
      script: { turns: [], maxCallMs: 5_000 },
      streamUrlOverride: `ws://127.0.0.1:${relay.port}/elsewhere`,
    });
    expect(r).toMatchObject({ stage: 'stream-failed', errors: ['stream upgrade refused: HTTP 403'], turnsPlanned: 0 });
    expect(callOutcome(r)).toEqual({ ok: false, reason: 'stream upgrade refused: HTTP 403' });
  });
});
