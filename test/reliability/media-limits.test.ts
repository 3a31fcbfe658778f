/**
 * Frames uWS refuses before the bridge sees them (over
 * maxPayloadLength, invalid UTF-8) must still end as a counted, logged protocol error, never a hang-up.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { randomSid } from '../../src/sim/sim-caller.js';
import { createLogger } from '../../src/telemetry/index.js';
import { eventually, mediaFrame, metricValue, rawStream, scrape, startTestRelay } from '../helpers/relay.js';

/** TWILIO_MAX_MESSAGE_BYTES default. */
const MAX_MESSAGE = 64 * 1024;

const lines: { msg: string; callSid?: string }[] = [];
let relay: Relay;
beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as { msg: string; callSid?: string });
      done();
    },
  });
  relay = await startTestRelay({}, { log: createLogger({ level: 'warn', destination: sink }) });
});
afterAll(async () => {
  await relay.close();
});

async function abuse(frame: Buffer | string): Promise<{ callSid: string; code: number; invalid: number }> {
  const before = metricValue(await scrape(relay), 'switchboard_twilio_messages_invalid_total');
  const callSid = randomSid('CA');
  const s = await rawStream(relay, callSid);
  s.start();
  // Whole appends whatever MODEL_APPEND_FRAMES (1-3) is: the relay holds up to N-1 frames for the next one.
  for (let i = 0; i < 6; i++) s.ws.send(mediaFrame(callSid, 2 + i));
  await relay.sim!.waitForSession((x) => x.appendedBytes > 0 && !x.closed);
  s.ws.send(frame, { binary: false });
  const { code } = await s.closed;
  await eventually(() => relay.activeCalls() === 0, 5000, 'call ended');
  await eventually(() => relay.sim!.stats().openSessions === 0, 5000, 'model released');
  const invalid = metricValue(await scrape(relay), 'switchboard_twilio_messages_invalid_total') - before;
  return { callSid, code, invalid };
}

describe('frames refused below the bridge', () => {
  it('a frame just over TWILIO_MAX_MESSAGE_BYTES closes with 1009, counted and logged, outcome protocol_error', async () => {
    // Today uWS's maxPayloadLength equals the bridge's limit, so uWS drops the TCP connection
    // (client sees 1006) and the call is recorded as caller_hung_up, uncounted and unlogged.
    const r = await abuse(mediaFrame('CA' + '0'.repeat(32), 3, MAX_MESSAGE));
    expect(r.code).toBe(1009);
    expect(r.invalid).toBe(1);
    expect(lines.filter((l) => l.callSid === r.callSid && l.msg === 'invalid media-socket message')).toHaveLength(1);
    expect((await relay.store.getCall(r.callSid))?.outcome).toBe('protocol_error');
  });

  it('a text frame with invalid UTF-8 ends the call as a counted, logged protocol error', async () => {
    // uWS force-closes (1006, "Received invalid UTF-8") before any message callback; the close
    // handler must read that reason instead of treating it as a hang-up.
    const r = await abuse(Buffer.concat([Buffer.from('{"event":"media","media":{"payload":"'), Buffer.from([0xe2, 0x82]), Buffer.from('"}}')]));
    expect([1006, 1007]).toContain(r.code);
    expect(r.invalid).toBe(1);
    expect(lines.filter((l) => l.callSid === r.callSid && l.msg === 'invalid media-socket message')).toHaveLength(1);
    expect((await relay.store.getCall(r.callSid))?.outcome).toBe('protocol_error');
  });
});
