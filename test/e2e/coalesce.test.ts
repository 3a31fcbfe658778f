/**
 * Model audio toward Twilio coalesced once Twilio's buffer runs ahead (TWILIO_COALESCE_MS): the
 * simulated model streams 20 ms deltas four times faster than playback, as the real one does at the
 * start of a response. Real uWS relay, the sim model on a real socket, the sim caller acting as
 * Twilio (real-time playback, mark echoes, clear).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallScript } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel, type SimModelOptions } from '../../src/sim/sim-model.js';
import { demo, startTestRelay } from '../helpers/relay.js';

const relays: Relay[] = [];
const sims: SimModel[] = [];
afterEach(async () => {
  for (const r of relays.splice(0)) await r.close();
  for (const s of sims.splice(0)) await s.close();
});

/** 20 ms deltas every 5 ms: the model runs ahead of playback. */
const BURSTY: SimModelOptions = { mode: 'realistic', deltaMs: 20, gapMs: 5 };

async function relayWithSim(coalesceMs: number): Promise<{ relay: Relay; sim: SimModel }> {
  const sim = await startSimModel(BURSTY);
  sims.push(sim);
  const relay = await startTestRelay({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-sim', OPENAI_REALTIME_URL: sim.url, TWILIO_COALESCE_MS: String(coalesceMs) });
  relays.push(relay);
  return { relay, sim };
}

/** A call with `script`; returns its report and every byte of model audio it received, in order. */
async function call(r: Relay, script: Omit<CallScript, 'maxCallMs'>) {
  const chunks: Buffer[] = [];
  const report = await placeCall({
    baseUrl: r.url,
    ...demo,
    callSid: randomSid('CA'),
    script: { maxCallMs: 30_000, hangupAfterMs: 300, ...script },
    hooks: { onAudio: (bytes) => chunks.push(Buffer.from(bytes)) },
  });
  return { report, audio: Buffer.concat(chunks) };
}

describe('coalesced model audio toward Twilio (TWILIO_COALESCE_MS)', () => {
  it('a burst becomes fewer media messages with the same bytes in the same order, and the caller hears no later', async () => {
    const off = await call((await relayWithSim(0)).relay, { turns: [] });
    const on = await call((await relayWithSim(60)).relay, { turns: [] });
    for (const { report } of [off, on]) {
      expect(report.errors).toEqual([]);
      expect(report.greeting.length).toBeGreaterThan(10);
    }
    expect(on.report.greeting).toBe(off.report.greeting);
    // Off: one media per 20 ms delta, as the model sent them.
    expect(off.report.framesReceived).toBe(off.report.audioMsReceived / 20);
    // On: the first 100 ms as they came, then up to 60 ms per message.
    expect(on.audio.equals(off.audio)).toBe(true);
    expect(on.report.framesReceived).toBeLessThanOrEqual(Math.ceil(on.report.audioMsReceived / 60) + 8);
    expect(on.report.framesReceived).toBeLessThan(off.report.framesReceived / 2);
    // Held audio reached the caller's buffer before it ran dry: no more silence mid-reply than without.
    expect(on.report.dryMs).toBeLessThanOrEqual(off.report.dryMs + 20);
    // Marks still one per ~100 ms of audio.
    expect(on.report.marksSent).toBeLessThanOrEqual(Math.ceil(on.report.audioMsReceived / 100) + 2);
  });

  it('a barge-in while audio is held: the truncate is within a frame of what the caller had played', async () => {
    const { relay: r, sim: s } = await relayWithSim(60);
    // The greeting arrives 4x faster than it plays: 700 ms in, seconds of it are queued at Twilio
    // and the relay is joining what follows.
    const { report } = await call(r, { turns: [{ say: 'Sorry, quick question', bargeInAfterMs: 700 }], quietMs: 1200 });
    expect(report.errors).toEqual([]);
    const turn = report.turns[0]!;
    expect(turn.clearReceived).toBe(true);
    const heard = turn.playedMsAtClear!;
    expect(heard).toBeGreaterThan(500);
    const session = s.sessions[0]!;
    const t = session.received.filter((e) => e.type === 'conversation.item.truncate') as unknown as { audio_end_ms: number }[];
    expect(t).toHaveLength(1);
    // The same one-sided allowance as the thinned-marks tests: the caller measures a little late.
    const why = `truncated at ${t[0]!.audio_end_ms} ms, heard ${heard} ms`;
    expect(t[0]!.audio_end_ms, why).toBeLessThanOrEqual(heard + 20);
    expect(t[0]!.audio_end_ms, why).toBeGreaterThanOrEqual(heard - 40);
    expect(session.errors).toEqual([]);
    // Joined: fewer media than 20 ms deltas.
    expect(report.framesReceived).toBeLessThan(report.audioMsReceived / 20 / 2);
  });
});
