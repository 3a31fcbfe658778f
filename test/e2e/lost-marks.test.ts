/**
 * Marks under backpressure on real sockets. A media frame that passes the relay's own cap can
 * still push uWS's send buffer past its hard cap (twice the relay's), and uWS then drops the `mark`
 * sent right after it: the audio plays, its mark never comes back. Here Twilio's side reads nothing
 * while the goodbye arrives as one delta larger than the kernel's socket buffers (~4 MB on loopback),
 * which makes that crossing certain instead of a matter of luck. When Twilio reads again, the
 * wind-down after end_call must finish, not wait for a mark that can never come back.
 */
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { randomSid } from '../../src/sim/sim-caller.js';
import { eventually, metricValue, rawStream, scrape, startTestRelay } from '../helpers/relay.js';
import { startFaultModel, type FaultModel } from '../helpers/fault-model.js';

let relay: Relay | undefined;
let model: FaultModel | undefined;
afterEach(async () => {
  await relay?.close();
  await model?.close();
  relay = model = undefined;
});

/** One delta of 9 MB (12 MB of base64, under the 16 MiB model-socket cap), past what the kernel buffers. */
const DELTA_BYTES = 9_000_000;
const DELTAS = 1;

describe('marks dropped under backpressure', () => {
  it('an end_call goodbye whose marks uWS dropped still ends the call once Twilio has played what it got', async () => {
    model = await startFaultModel({ autoRespond: false });
    relay = await startTestRelay({
      MODEL_PROVIDER: 'openai',
      OPENAI_API_KEY: 'k',
      OPENAI_REALTIME_URL: model.url,
      TWILIO_MAX_BACKPRESSURE_BYTES: String(16 * 1024),
    });
    const callSid = randomSid('CA');
    const s = await rawStream(relay, callSid);
    const marks: string[] = [];
    s.ws.on('message', (data: Buffer) => {
      const m = JSON.parse(data.toString()) as { event: string; mark?: { name: string } };
      // Twilio echoes each mark once the audio before it has played.
      if (m.event === 'mark' && m.mark) {
        marks.push(m.mark.name);
        s.ws.send(JSON.stringify({ event: 'mark', sequenceNumber: '9', streamSid: 'MZ' + callSid.slice(2), mark: { name: m.mark.name } }));
      }
    });
    s.start();
    const conn = await model.waitForConnection(0);
    await conn.waitForClient((e) => e.type === 'response.create'); // the greeting: left unanswered
    // The model decides to end the call.
    conn.send({ type: 'response.created', response: { id: 'resp_tool', status: 'in_progress', output: [] } });
    conn.send({
      type: 'response.output_item.done',
      response_id: 'resp_tool',
      output_index: 0,
      item: { type: 'function_call', call_id: 'call_end', name: 'end_call', arguments: '{"reason":"done"}' },
    });
    conn.send({ type: 'response.done', response: { id: 'resp_tool', status: 'completed', output: [] } });
    await conn.waitForClient((e) => e.type === 'conversation.item.create');
    await conn.waitForClient((e) => e.type === 'response.create' && conn.received.filter((x) => x.type === 'response.create').length === 2);
    // Twilio stops reading; the goodbye arrives.
    const tcp = (s.ws as unknown as { _socket: Socket })._socket;
    tcp.pause();
    conn.speak('Goodbye', { deltaBytes: DELTA_BYTES, totalBytes: DELTA_BYTES * DELTAS });
    const r = relay;
    await eventually(
      async () => {
        const m = await scrape(r);
        return (
          metricValue(m, 'switchboard_frames_dropped_total', { direction: 'model_to_caller' }) +
            metricValue(m, 'switchboard_frame_relay_seconds_count', { direction: 'model_to_caller' }) >=
          DELTAS
        );
      },
      20_000,
      'every goodbye delta relayed or dropped',
    );
    const relayed = metricValue(await scrape(r), 'switchboard_frame_relay_seconds_count', { direction: 'model_to_caller' });
    expect(relayed).toBe(1);
    // Twilio reads again: it plays what it got and echoes the marks it got.
    tcp.resume();
    const closed = await s.closed;
    expect(closed).toEqual({ code: 4011, reason: 'assistant ended the call' });
    // Every frame that went out was marked, and every mark came back.
    expect(marks).toHaveLength(relayed);
    await eventually(async () => (await r.store.getCall(callSid))?.outcome === 'ended_by_assistant', 5000, 'outcome');
  });
});
