/**
 * The relay against the simulated model behaving as the real OpenAI Realtime API does on a live
 * call: audio in bursts with pauses mid-item, one active response at a time, server-side cancel on
 * speech, errors for needless cancels. Real uWS relay, the sim model on a real socket, the sim
 * caller acting as Twilio (real-time playback, mark echoes, clear).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallScript } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel, type SimModelOptions, type SimSession } from '../../src/sim/sim-model.js';
import { demo, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
let sim: SimModel | undefined;
afterEach(async () => {
  await relay?.close();
  await sim?.close();
  relay = sim = undefined;
});

/** A relay speaking to its own sim model started with `o` (as it would to OpenAI). */
async function relayWithSim(o: SimModelOptions): Promise<{ relay: Relay; sim: SimModel }> {
  sim = await startSimModel(o);
  relay = await startTestRelay({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-sim', OPENAI_REALTIME_URL: sim.url });
  return { relay, sim };
}

function call(r: Relay, script: Omit<CallScript, 'maxCallMs'> & { maxCallMs?: number }, callSid = randomSid('CA')) {
  return placeCall({ baseUrl: r.url, ...demo, callSid, script: { maxCallMs: 30_000, hangupAfterMs: 800, ...script } });
}

type Truncate = { item_id: string; content_index: number; audio_end_ms: number };
const truncates = (s: SimSession): Truncate[] =>
  s.received.filter((e) => e.type === 'conversation.item.truncate') as unknown as Truncate[];

describe('bursty model audio', () => {
  it('a barge-in after the model paused mid-item truncates at everything the caller heard of the item (±1 frame)', async () => {
    // 600 ms of audio, then 900 ms of nothing: Twilio's buffer runs dry and every mark is echoed
    // before the next burst of the same item arrives.
    const { relay: r, sim: s } = await relayWithSim({ mode: 'realistic', bursts: { audioMs: 600, pauseMs: 900 } });
    // The caller talks over the greeting in its second burst (~900 ms + 250 ms into the item).
    const report = await call(r, { turns: [{ say: 'Sorry, quick question', bargeInAfterMs: 1150 }], quietMs: 1200 });
    expect(report.errors).toEqual([]);
    const turn = report.turns[0]!;
    expect(turn.clearReceived).toBe(true);
    const heard = turn.playedMsAtClear!;
    // Past the first burst: the played position of the item survived the pause.
    expect(heard).toBeGreaterThan(650);
    const session = s.sessions[0]!;
    const t = truncates(session);
    expect(t).toHaveLength(1);
    expect(Math.abs(t[0]!.audio_end_ms - heard), `truncated at ${t[0]!.audio_end_ms} ms, heard ${heard} ms`).toBeLessThanOrEqual(20);
  });
});
