/**
 * Media Streams socket abuse on the real relay (bad JSON, types, binary, numbers, base64, floods, seeded
 * mutations): counted, one warn per stream. Oversized and non-UTF-8 frames: pending-media-limits.test.ts.
 */
import { isUtf8 } from 'node:buffer';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import type { Relay } from '../../src/server/index.js';
import { randomSid } from '../../src/sim/sim-caller.js';
import { createLogger } from '../../src/telemetry/index.js';
import { parseTwilioMessage } from '../../src/twilio/index.js';
import { demo, eventually, mediaFrame, metricValue, rawStream, scrape, startTestRelay } from '../helpers/relay.js';
import { int, mutate, pick, prng } from './seeded.js';

const SEED = 0x5b0a4d;
/** TWILIO_MAX_MESSAGE_BYTES default. */
const MAX_MESSAGE = 64 * 1024;

interface LogLine {
  level: number;
  msg: string;
  callSid?: string;
  code?: string;
  reason?: string;
}
const lines: LogLine[] = [];
let relay: Relay;

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as LogLine);
      done();
    },
  });
  relay = await startTestRelay({}, { log: createLogger({ level: 'warn', destination: sink }) });
});
afterAll(async () => {
  await relay.close();
});

async function invalidTotal(): Promise<number> {
  return metricValue(await scrape(relay), 'switchboard_twilio_messages_invalid_total');
}

const warnsFor = (callSid: string): LogLine[] => lines.filter((l) => l.callSid === callSid && l.msg === 'invalid media-socket message');

const stopMsg = (callSid: string): string =>
  JSON.stringify({ event: 'stop', sequenceNumber: '999', streamSid: 'MZ' + callSid.slice(2), stop: { accountSid: demo.accountSid, callSid } });

/**
 * Caller frames sent at a time so that audio reaches the model whatever MODEL_APPEND_FRAMES (1-3) is:
 * the relay holds up to N-1 frames for the next append, and Twilio never stops sending frames, but a
 * test does. Counted in bytes, not appends (one append carries 1 to N frames).
 */
const FRAMES = 6;
const FRAME_BYTES = 160;

/** The newest simulated model session that has heard caller audio. */
const heardAudio = () =>
  relay.sim!.waitForSession((x) => x.appendedBytes > 0 && !x.closed && relay.sim!.sessions.indexOf(x) === relay.sim!.sessions.length - 1);

/** A started stream whose call is live upstream. */
async function live(): Promise<{ callSid: string; ws: WebSocket; closed: Promise<{ code: number; reason: string }> }> {
  const callSid = randomSid('CA');
  const s = await rawStream(relay, callSid);
  s.start();
  for (let i = 0; i < FRAMES; i++) s.ws.send(mediaFrame(callSid, 2 + i));
  await heardAudio();
  return { callSid, ws: s.ws, closed: s.closed };
}

const sid = (callSid: string): string => 'MZ' + callSid.slice(2);
const media = (callSid: string, over: Record<string, unknown>): string =>
  JSON.stringify({ event: 'media', sequenceNumber: '5', streamSid: sid(callSid), media: { track: 'inbound', chunk: '4', timestamp: '80', payload: '/////w==', ...over } });

/** Ten bad messages per category: each is invalid, none closes the stream on its own. */
const CATEGORIES: Record<string, (callSid: string, i: number) => string | Buffer> = {
  malformed_json: (c, i) => pick(prng(i), ['{', '{"event":"media"', '{"event":"media",}', "{'event':'media'}", 'null', '', '{"event":"media" "x":1}', mediaFrame(c, 3).slice(0, 50 + i)]),
  wrong_types: (c, i) =>
    pick(prng(i + 100), [
      JSON.stringify({ event: 5 }),
      JSON.stringify({ event: 'media', media: null }),
      JSON.stringify({ event: 'media', media: { timestamp: -20, payload: '/////w==' } }),
      JSON.stringify({ event: 'media', media: { timestamp: '20', payload: 12345 } }),
      JSON.stringify({ event: 'mark', mark: { name: 7 } }),
      JSON.stringify({ event: 'dtmf', dtmf: { digit: 'Z' } }),
      JSON.stringify([{ event: 'media' }]),
      media(c, { track: 'outbound' }),
    ]),
  binary: (_c, i) => Buffer.from([0x7b, 0x22, i, 0x00, 0xff]),
  huge_timestamp: (c, i) => media(c, { timestamp: ['99999999999999999999', '1e308', '-0', '9007199254740993000', '18446744073709551616'][i % 5] }),
  not_base64: (c, i) => media(c, { payload: ['not base64!', 'AAA', '====', 'AA=A', '\u00e9\u00e9\u00e9\u00e9', ''][i % 6] }),
};

describe('media socket abuse', () => {
  for (const [name, make] of Object.entries(CATEGORIES)) {
    it(`${name}: every message counted, one warn line for the stream, the call goes on`, async () => {
      const { callSid, ws, closed } = await live();
      const before = await invalidTotal();
      const session = relay.sim!.sessions.at(-1)!;
      const bytesBefore = session.appendedBytes;
      for (let i = 0; i < 10; i++) {
        const m = make(callSid, i);
        ws.send(m, { binary: name === 'binary' });
      }
      // Real audio after the garbage still reaches the model, all of it.
      for (let i = 0; i < FRAMES; i++) ws.send(mediaFrame(callSid, 10 + i));
      await eventually(() => session.appendedBytes >= bytesBefore + FRAMES * FRAME_BYTES, 5000, 'audio after garbage');
      expect((await invalidTotal()) - before).toBe(10);
      ws.send(stopMsg(callSid));
      expect((await closed).code).toBe(1000);
      const warns = warnsFor(callSid);
      expect(warns).toHaveLength(1);
      expect(warns[0]!.code).toBe('twilio_message_invalid');
    });
  }

  it('unknown event names (events Twilio may add): counted apart, ignored before and after start, never fatal', async () => {
    const callSid = randomSid('CA');
    const s = await rawStream(relay, callSid);
    const m0 = await scrape(relay);
    const invalidBefore = metricValue(m0, 'switchboard_twilio_messages_invalid_total');
    const unknownBefore = metricValue(m0, 'switchboard_twilio_events_unknown_total');
    const future = (i: number): string =>
      JSON.stringify({ event: ['stream-paused', 'transcription', 'close', 'media2', '__proto__'][i % 5], sequenceNumber: String(i), streamSid: sid(callSid), x: { y: i } });
    s.ws.send(future(0)); // before start: a stream is not refused for it
    s.start();
    for (let i = 0; i < FRAMES; i++) s.ws.send(mediaFrame(callSid, 2 + i));
    const session = await heardAudio();
    // More than the 20 invalid messages that close a stream.
    for (let i = 1; i <= 30; i++) s.ws.send(future(i));
    const bytes = session.appendedBytes;
    for (let i = 0; i < FRAMES; i++) s.ws.send(mediaFrame(callSid, 10 + i));
    await eventually(() => session.appendedBytes >= bytes + FRAMES * FRAME_BYTES, 5000, 'audio after the unknown events');
    const m1 = await scrape(relay);
    expect(metricValue(m1, 'switchboard_twilio_events_unknown_total') - unknownBefore).toBe(31);
    expect(metricValue(m1, 'switchboard_twilio_messages_invalid_total') - invalidBefore).toBe(0);
    s.ws.send(stopMsg(callSid));
    expect((await s.closed).code).toBe(1000);
    expect(warnsFor(callSid)).toHaveLength(0);
    await eventually(async () => (await relay.store.getCall(callSid))?.outcome === 'caller_hung_up', 5000, 'outcome');
  });

  it('past 20 invalid messages the stream closes with 4001 and the model socket is released', async () => {
    const { callSid, ws, closed } = await live();
    for (let i = 0; i < 30; i++) ws.send('{"event":');
    expect((await closed).code).toBe(4001);
    await eventually(() => relay.sim!.stats().openSessions === 0, 5000, 'model released');
    expect(warnsFor(callSid)).toHaveLength(1);
    expect((await relay.store.getCall(callSid))?.outcome).toBe('protocol_error');
  });

  it('a flood of 50k media frames: relayed or dropped, never queued without bound, the relay stays responsive', async () => {
    const { callSid, ws, closed } = await live();
    const m0 = await scrape(relay);
    const base =
      metricValue(m0, 'switchboard_frame_relay_seconds_count', { direction: 'caller_to_model' }) +
      metricValue(m0, 'switchboard_frames_dropped_total', { direction: 'caller_to_model' });
    const N = 50_000;
    const frame = mediaFrame(callSid, 7);
    for (let i = 0; i < N; i++) {
      ws.send(frame);
      if (i % 5000 === 0) await new Promise((r) => setImmediate(r));
    }
    await eventually(
      async () => {
        const m = await scrape(relay);
        return (
          metricValue(m, 'switchboard_frame_relay_seconds_count', { direction: 'caller_to_model' }) +
            metricValue(m, 'switchboard_frames_dropped_total', { direction: 'caller_to_model' }) - base >= N
        );
      },
      30_000,
      'every flooded frame handled',
    );
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
    expect(relay.activeCalls()).toBe(1);
    ws.send(stopMsg(callSid));
    expect((await closed).code).toBe(1000);
  });

  it(`seeded mutations (seed ${SEED.toString(16)}): 40 streams × 15 mutated frames, counts match the codec, nothing crashes`, async () => {
    const rand = prng(SEED);
    const before = await invalidTotal();
    let expectedInvalid = 0;
    let tried = 0;
    for (let k = 0; k < 40; k++) {
      const { callSid, ws, closed } = await live();
      const seeds = [Buffer.from(mediaFrame(callSid, 3)), Buffer.from(stopMsg(callSid)), Buffer.from(JSON.stringify({ event: 'mark', sequenceNumber: '4', streamSid: sid(callSid), mark: { name: 'm1' } }))];
      let invalid = 0;
      for (let i = 0; i < 15; i++) {
        let m: Buffer = pick(rand, seeds);
        const rounds = int(rand, 1, 3);
        for (let j = 0; j < rounds; j++) m = mutate(rand, m);
        // Invalid UTF-8 never reaches the codec (uWS drops the socket): pending-media-limits covers it.
        if (!isUtf8(m)) continue;
        const r = parseTwilioMessage(m, MAX_MESSAGE);
        // A mutation that still parses as a control event (a valid stop or start) would end or
        // restart the call: it is not abuse, so it is not sent.
        if (r.ok && r.msg.event !== 'media' && r.msg.event !== 'mark') continue;
        // An unknown event name is a future Twilio event, not abuse: ignored, not counted invalid.
        if (!r.ok && r.reason !== 'unknown_event') invalid++;
        tried++;
        ws.send(m, { binary: false });
      }
      ws.send(stopMsg(callSid));
      const c = await closed;
      expectedInvalid += invalid;
      expect(c.code).toBe(1000);
      expect(warnsFor(callSid)).toHaveLength(invalid > 0 ? 1 : 0);
    }
    expect(tried).toBeGreaterThan(400);
    const counted = (await invalidTotal()) - before;
    expect(counted).toBe(expectedInvalid);
    expect(expectedInvalid).toBeGreaterThan(300);
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
    await eventually(() => relay.activeCalls() === 0, 5000, 'every call ended');
  });
});
