/**
 * Backpressure on real sockets: a Twilio peer that stops reading and a model that stops reading.
 * The relay must drop (and count) audio rather than buffer without bound, and stay healthy.
 */
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Relay } from '../../src/server/index.js';
import { randomSid } from '../../src/sim/sim-caller.js';
import { eventually, mediaFrame, metricValue, rawStream, scrape, startTestRelay } from '../helpers/relay.js';

interface FakeModel {
  url: string;
  sockets: WebSocket[];
  appends: number;
  /** response.create events read: the relay asks for its greeting once it is live. */
  responseCreates: number;
  close(): Promise<void>;
}

/** A GA-speaking model that confirms μ-law, then either stops reading once asked for the greeting or floods audio on request. */
async function fakeModel(mode: 'stall' | 'flood', floodDeltas = 0): Promise<FakeModel> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const fm: FakeModel = {
    url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}/v1/realtime`,
    sockets: [],
    appends: 0,
    responseCreates: 0,
    close: () =>
      new Promise((r) => {
        for (const s of fm.sockets) s.terminate();
        wss.close(() => r());
      }),
  };
  const delta = JSON.stringify({
    type: 'response.output_audio.delta',
    response_id: 'resp_1',
    item_id: 'item_1',
    output_index: 0,
    content_index: 0,
    delta: Buffer.alloc(8000, 0x20).toString('base64'),
  });
  wss.on('connection', (ws) => {
    fm.sockets.push(ws);
    ws.send(JSON.stringify({ type: 'session.created', session: { type: 'realtime' } }));
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      if (text.includes('"input_audio_buffer.append"')) {
        fm.appends++;
        return;
      }
      const ev = JSON.parse(text) as { type: string };
      if (ev.type === 'session.update') {
        ws.send(
          JSON.stringify({
            type: 'session.updated',
            session: { type: 'realtime', audio: { input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } } },
          }),
        );
      } else if (ev.type === 'response.create' && mode === 'stall') {
        fm.responseCreates++;
        (ws as unknown as { _socket: Socket })._socket.pause();
      } else if (ev.type === 'response.create' && mode === 'flood') {
        ws.send(JSON.stringify({ type: 'response.created', response: { id: 'resp_1', status: 'in_progress' } }));
        let sent = 0;
        const pump = (): void => {
          // Respect our own buffer so the fake itself stays bounded.
          while (sent < floodDeltas && ws.bufferedAmount < 1024 * 1024) {
            ws.send(delta);
            sent++;
          }
          if (sent < floodDeltas) setTimeout(pump, 1);
        };
        pump();
      }
    });
  });
  return fm;
}

let relay: Relay | undefined;
let model: FakeModel | undefined;
afterEach(async () => {
  await relay?.close();
  await model?.close();
  relay = undefined;
  model = undefined;
});

describe('slow peers', () => {
  it('a Twilio peer that stops reading: model audio is dropped and counted, memory stays bounded', async () => {
    const N = 2500; // 2500 × 1 s deltas ≈ 27 MB of JSON: far past socket buffers and the 16 KiB cap
    model = await fakeModel('flood', N);
    relay = await startTestRelay({
      MODEL_PROVIDER: 'openai',
      OPENAI_API_KEY: 'k',
      OPENAI_REALTIME_URL: model.url,
      TWILIO_MAX_BACKPRESSURE_BYTES: String(16 * 1024),
    });
    const callSid = randomSid('CA');
    const s = await rawStream(relay, callSid);
    // Stop reading at once: the relay's sends back up into uWS's buffer.
    (s.ws as unknown as { _socket: Socket })._socket.pause();
    s.start();
    const r = relay;
    await eventually(
      async () => {
        const m = await scrape(r);
        return metricValue(m, 'switchboard_frames_dropped_total', { direction: 'model_to_caller' }) + metricValue(m, 'switchboard_frame_relay_seconds_count', { direction: 'model_to_caller' }) >= N;
      },
      20_000,
      'every delta relayed or dropped',
    );
    const m = await scrape(r);
    const dropped = metricValue(m, 'switchboard_frames_dropped_total', { direction: 'model_to_caller', reason: 'caller_backpressure' });
    expect(dropped).toBeGreaterThan(N / 2);
    expect(metricValue(m, 'switchboard_active_calls')).toBe(1);
    expect((await fetch(`${r.url}/healthz`)).status).toBe(200);
    s.ws.terminate();
  });

  it('a model that stops reading: caller audio is dropped and counted, the call stays up', async () => {
    model = await fakeModel('stall');
    relay = await startTestRelay({
      MODEL_PROVIDER: 'openai',
      OPENAI_API_KEY: 'k',
      OPENAI_REALTIME_URL: model.url,
      MODEL_MAX_BUFFERED_BYTES: String(16 * 1024),
    });
    const callSid = randomSid('CA');
    const s = await rawStream(relay, callSid);
    s.start();
    const r = relay;
    await eventually(async () => metricValue(await scrape(r), 'switchboard_active_calls') === 1, 5000, 'call live');
    // The relay asks for the greeting once session.updated made the call live; the model then stops reading.
    await eventually(() => model!.responseCreates === 1, 5000, 'the call live (greeting requested)');
    const N = 60_000; // ≈ 15 MB of appends against a model that reads nothing
    for (let i = 0; i < N; i++) {
      s.ws.send(mediaFrame(callSid, i + 2));
      if (i % 2000 === 0) await new Promise((res) => setImmediate(res));
    }
    await eventually(
      async () => {
        const m = await scrape(r);
        return metricValue(m, 'switchboard_frames_dropped_total', { direction: 'caller_to_model' }) + metricValue(m, 'switchboard_frame_relay_seconds_count', { direction: 'caller_to_model' }) >= N;
      },
      20_000,
      'every frame relayed or dropped',
    );
    const m = await scrape(r);
    const dropped = metricValue(m, 'switchboard_frames_dropped_total', { direction: 'caller_to_model', reason: 'model_backpressure' });
    expect(dropped).toBeGreaterThan(N / 4);
    expect(metricValue(m, 'switchboard_active_calls')).toBe(1);
    s.ws.close();
    expect((await s.closed).code).toBe(1005);
    await eventually(async () => metricValue(await scrape(r), 'switchboard_active_calls') === 0, 5000, 'call ended');
  });
});
