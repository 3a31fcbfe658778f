/**
 * caller-core.js across streams, on a manual clock: Twilio's per-stream state starts afresh on a
 * new stream (sequence numbers, stream SID, parameters, unplayed audio gone), the script goes on
 * where it was, gaps are measured, and afterLeg() decides what runs after a stream as Twilio would.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SpeechTextCollector, speechFrames } from '../../src/sim/portable/audio.js';
import { CallerSession, type CallScript } from '../../src/sim/portable/caller-core.js';
import { WEBHOOK_RETRIES, afterLeg, callUpdateFromForm, parseTwiml, type AfterLeg, type FetchAnswer } from '../../src/sim/portable/twilio-http.js';

const b64encode = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const b64decode = (s: string): Uint8Array => Buffer.from(s, 'base64');
const hmac = (key: string, data: string): string => createHmac('sha1', key).update(data, 'utf8').digest('base64');
const CALL = 'CA' + '0'.repeat(32);
const SID1 = 'MZ' + '1'.repeat(32);
const SID2 = 'MZ' + '2'.repeat(32);
type Msg = { event: string; sequenceNumber?: string; streamSid?: string; [k: string]: unknown };
const parse = (msgs: string[]): Msg[] => msgs.map((m) => JSON.parse(m) as Msg);

const reply = (text: string, ms: number, sid: string): string =>
  JSON.stringify({ event: 'media', streamSid: sid, media: { payload: b64encode(Buffer.concat(speechFrames(text, { hz: 440, minFrames: ms / 20 }))) } });
const spoken = (m: Msg): string | undefined => {
  if (m.event !== 'media') return undefined;
  const c = new SpeechTextCollector();
  c.push(b64decode((m.media as { payload: string }).payload));
  return c.text();
};

function session(script: Partial<CallScript> & { turns: CallScript['turns'] }): CallerSession {
  return new CallerSession({
    callSid: CALL,
    accountSid: 'AC' + '0'.repeat(32),
    streamSid: SID1,
    parameters: { token: 'first' },
    script: { maxCallMs: 60_000, quietMs: 100, ...script },
    b64encode,
    b64decode,
    url: 'wss://svc/twilio/media',
  });
}
function run(s: CallerSession, from: number, to: number): Array<{ t: number; m: Msg }> {
  const out: Array<{ t: number; m: Msg }> = [];
  for (let t = from; t < to && !s.done; t += 20) for (const m of parse(s.tick(t))) out.push({ t, m });
  return out;
}
const next = { streamSid: SID2, parameters: { token: 'second', resume: 'r1' }, url: 'wss://svc/twilio/media', via: 'update' as const };

describe('a call across two streams', () => {
  it('stops the old stream for an update and opens the new one with its own SID, parameters and sequence', () => {
    const s = session({ turns: [{ say: 'Hello there' }, { say: 'Second line' }] });
    s.open(0);
    s.onMessage(reply('Welcome', 200, SID1), 20);
    run(s, 40, 900); // greeting heard, turn 0 spoken (25 frames)
    s.onMessage(reply('Answer one', 200, SID1), 1000);
    run(s, 1000, 1400); // reply heard, turn 1 starts speaking
    const stop = parse(s.stopForUpdate(1500));
    expect(stop).toEqual([{ event: 'stop', sequenceNumber: expect.any(String) as string, streamSid: SID1, stop: { accountSid: 'AC' + '0'.repeat(32), callSid: CALL } }]);
    expect(s.done).toBe(true);
    expect(s.resumable).toBe(true);
    expect(s.tick(1520)).toEqual([]);
    expect(s.beginLeg(next)).toBe(true);
    const opening = parse(s.open(1600));
    expect(opening[1]).toMatchObject({ event: 'start', sequenceNumber: '1', streamSid: SID2, start: { streamSid: SID2, callSid: CALL, customParameters: { token: 'second', resume: 'r1' } } });
    // The interrupted turn is said again from its start on the new stream; media counts from 1 again.
    const sent = run(s, 1620, 2400);
    const first = sent.find(({ m }) => m.event === 'media')!;
    expect(first.m).toMatchObject({ streamSid: SID2, sequenceNumber: '2', media: { chunk: '1', timestamp: '20' } });
    expect(sent.map(({ m }) => spoken(m)).filter(Boolean)).toEqual(['Second line']);
    const r = s.report();
    expect(r.turns.map((t) => t.said)).toEqual(['Hello there', 'Second line']);
    expect(r.legs).toMatchObject([
      { streamSid: SID1, via: 'webhook', startedAtMs: 0, endedAtMs: 1500, end: 'stop-by-twilio-update', closeCode: 1000, gapMs: null, firstAudioMs: 20 },
      { streamSid: SID2, via: 'update', startedAtMs: 1600, endedAtMs: null, end: null, gapMs: 100, firstAudioMs: null, repeatedTurn: true },
    ]);
    expect(r.streamSid).toBe(SID2);
    expect(r.endedBy).toBeNull();
    // Model audio on the new stream: the gap to it is measured from the old stream's stop.
    s.onMessage(reply('Answer two', 200, SID2), 2500);
    expect(s.report().legs[1]!.firstAudioMs).toBe(1000);
    // The old stream's messages are not this stream's.
    s.onMessage(reply('late', 200, SID1), 2600);
    expect(s.report().errors.some((e) => e.includes('31951'))).toBe(true);
  });

  it('drops audio and marks still queued on the old stream: they are never heard or echoed', () => {
    const s = session({ turns: [{ say: 'Hi' }] });
    s.open(0);
    s.onMessage(reply('A long greeting that is cut', 2000, SID1), 20);
    expect(parse(s.onMessage(JSON.stringify({ event: 'mark', streamSid: SID1, mark: { name: 'g1' } }), 40))).toEqual([]);
    s.onClose(1006, '', 500);
    expect(s.report().legs[0]).toMatchObject({ end: 'abnormal', closeCode: 1006, endedAtMs: 500 });
    s.beginLeg({ ...next, via: 'redirect' });
    s.open(900);
    const sent = run(s, 920, 3000);
    expect(sent.filter(({ m }) => m.event === 'mark')).toEqual([]);
    // The greeting had started: what played before the cut was heard, and the caller goes on with turn 0.
    expect(sent.map(({ m }) => spoken(m)).filter(Boolean)).toEqual(['Hi']);
    expect(s.report().legs[1]).toMatchObject({ via: 'redirect', gapMs: 400 });
  });

  it('a caller moved before any greeting speaks first; one still waiting says its turn again after silence', () => {
    const s = session({ turns: [{ say: 'Anyone there' }, { say: 'Next' }], repeatAfterMoveMs: 1000 });
    s.open(0);
    s.stopForUpdate(100);
    s.beginLeg(next);
    s.open(200);
    const sent = run(s, 220, 900);
    expect(sent.map(({ m }) => spoken(m)).filter(Boolean)).toEqual(['Anyone there']);
    const spokeAt = s.report().turns.length;
    expect(spokeAt).toBe(1);
    // Moved again while waiting for the reply: silence on the new stream, then the turn again.
    s.stopForUpdate(1000);
    s.beginLeg({ ...next, streamSid: 'MZ' + '3'.repeat(32) });
    s.open(1100);
    const again = run(s, 1120, 3000);
    const said = again.filter(({ m }) => spoken(m) !== undefined);
    expect(said.map(({ m }) => spoken(m))).toEqual(['Anyone there']);
    expect(said[0]!.t).toBeGreaterThanOrEqual(2100);
    expect(s.report().legs.map((l) => l.repeatedTurn)).toEqual([false, false, true]);
    expect(s.report().turns).toHaveLength(1);
  });

  it('does not go on after the caller hung up', () => {
    const s = session({ turns: [] });
    s.open(0);
    s.hangup(100);
    expect(s.resumable).toBe(false);
    expect(s.beginLeg(next)).toBe(false);
    expect(s.open(200)).toEqual([]);
    expect(s.report().legs.map((l) => l.end)).toEqual(['caller-hangup']);
  });
});

describe('afterLeg: what Twilio runs once a stream ended', () => {
  const call = { accountSid: 'AC' + '0'.repeat(32), callSid: CALL, from: '+15005550100', to: '+15005550006', authToken: 'tok', hmacSha1Base64: hmac };
  const streamXml = '<Response><Connect><Stream url="wss://svc/twilio/media"><Parameter name="resume" value="x"/></Stream></Connect></Response>';
  /** Drive it with canned answers; returns the result and the requests made. */
  function drive(o: Parameters<typeof afterLeg>[0], answers: FetchAnswer[]): { result: AfterLeg; urls: string[] } {
    const gen = afterLeg(o);
    const urls: string[] = [];
    for (let r = gen.next(); ; ) {
      if (r.done) return { result: r.value, urls };
      urls.push(`${r.value.method} ${r.value.url}`);
      r = gen.next(answers.shift() ?? { status: 0, body: '', error: 'no answer' });
    }
  }

  it('an update with a stream TwiML opens a new stream; other TwiML ends it; Status=completed hangs up', () => {
    expect(drive({ update: { kind: 'twiml', twiml: streamXml }, resumable: true, after: [], call }, []).result).toMatchObject({ kind: 'stream', via: 'update', twiml: { parameters: { resume: 'x' } } });
    expect(drive({ update: { kind: 'twiml', twiml: '<Response><Dial>+15005550007</Dial></Response>' }, resumable: true, after: [], call }, []).result).toEqual({ kind: 'end', via: 'update', heard: '<Dial>+15005550007</Dial>', fetched: false });
    expect(drive({ update: { kind: 'status', status: 'completed' }, resumable: true, after: [], call }, []).result).toMatchObject({ kind: 'end', heard: '<Hangup/>' });
  });

  it('after the relay closed, follows the <Redirect> with a signed POST; a GET Url update carries the fields in the query', () => {
    const t = parseTwiml('<Response><Connect><Stream url="wss://svc/twilio/media"/></Connect><Redirect>https://svc/twilio/after-stream</Redirect></Response>');
    if (t.kind !== 'stream') throw new Error('stream expected');
    const gen = afterLeg({ resumable: true, after: t.after, call });
    const req = gen.next().value as { method: string; url: string; body: string; headers: Record<string, string> };
    expect(req).toMatchObject({ method: 'POST', url: 'https://svc/twilio/after-stream' });
    expect(new URLSearchParams(req.body).get('CallSid')).toBe(CALL);
    expect(req.headers['x-twilio-signature']).toMatch(/^[A-Za-z0-9+/]{27}=$/);
    expect(gen.next({ status: 200, body: streamXml })).toMatchObject({ done: true, value: { kind: 'stream', via: 'redirect' } });

    const viaGet = drive({ update: { kind: 'url', url: 'https://svc/next?a=1', method: 'GET' }, resumable: true, after: [], call }, [{ status: 503, body: '' }]);
    expect(viaGet.urls[0]).toMatch(/^GET https:\/\/svc\/next\?a=1&AccountSid=AC0+&ApiVersion=2010-04-01&CallSid=CA0+/);
    expect(viaGet.result).toEqual({ kind: 'end', via: 'update', heard: '(redirect answered HTTP 503)', fetched: true });
  });

  it('retries a fetch whose connection failed once, as Twilio does by default; never an HTTP answer', () => {
    const update = { kind: 'url' as const, url: 'https://svc/next', method: 'POST' as const };
    const hangUp = { status: 0, body: '', error: 'socket hang up' };
    const once = drive({ update, resumable: true, after: [], call }, [hangUp, { status: 200, body: streamXml }]);
    expect(once.result).toMatchObject({ kind: 'stream', via: 'update' });
    expect(once.urls).toEqual(['POST https://svc/next', 'POST https://svc/next']);
    const twice = drive({ update, resumable: true, after: [], call }, [hangUp, hangUp, { status: 200, body: streamXml }]);
    expect(twice.result).toEqual({ kind: 'end', via: 'update', heard: '(redirect failed: socket hang up)', fetched: true });
    expect(twice.urls).toHaveLength(1 + WEBHOOK_RETRIES);
    const answered = drive({ update, resumable: true, after: [], call }, [{ status: 502, body: '' }, { status: 200, body: streamXml }]);
    expect(answered.result).toMatchObject({ kind: 'end', heard: '(redirect answered HTTP 502)' });
    expect(answered.urls).toHaveLength(1);
  });

  it('does nothing after a caller hang-up, and bounds redirect loops', () => {
    expect(drive({ resumable: false, after: [], call }, []).result).toEqual({ kind: 'end', via: null, heard: '', fetched: false });
    const loop = '<Response><Redirect>https://svc/again</Redirect></Response>';
    const r = drive({ update: { kind: 'twiml', twiml: loop }, resumable: true, after: [], call }, Array.from({ length: 10 }, () => ({ status: 200, body: loop })));
    expect(r.result).toMatchObject({ kind: 'end', heard: '(too many redirects)' });
    expect(r.urls.length).toBeLessThanOrEqual(5);
  });

  it('reads update forms as Twilio does', () => {
    expect(callUpdateFromForm({ Twiml: streamXml })).toEqual({ ok: true, update: { kind: 'twiml', twiml: streamXml } });
    expect(callUpdateFromForm({ Url: 'https://x/y' })).toEqual({ ok: true, update: { kind: 'url', url: 'https://x/y', method: 'POST' } });
    expect(callUpdateFromForm({ Status: 'completed' })).toEqual({ ok: true, update: { kind: 'status', status: 'completed' } });
    expect(callUpdateFromForm({ Status: 'busy' })).toMatchObject({ ok: false });
    expect(callUpdateFromForm({})).toMatchObject({ ok: false });
  });
});
