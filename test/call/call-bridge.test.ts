/**
 * The call bridge driven by scripted doubles: a Twilio socket and a model socket that record what
 * the bridge sends and let the test play the other side's events, with a manual clock.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/telemetry/logger.js';
import { CallBridge, type BridgeDeps, type TwilioSocket } from '../../src/call/call-bridge.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryCallStore } from '../../src/store/index.js';
import { createMetrics, type RelayMetrics } from '../../src/telemetry/metrics.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../../src/tenants/index.js';
import { BuiltinToolRunner, toolOk, type ToolResult, type ToolRunner } from '../../src/tools/index.js';
import { FakeRealtimeSocket as FakeModel } from '../helpers/fake-realtime-socket.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});

class FakeTwilio implements TwilioSocket {
  sent: unknown[] = [];
  buffered = 0;
  ended: { code: number; reason: string } | undefined;
  /** uWS's answer per event kind: 2 = dropped (past its hard backpressure cap), not recorded. */
  result: Record<string, number> = {};
  send(text: string): number {
    const msg = JSON.parse(text) as Record<string, unknown>;
    const r = this.result[msg['event'] as string] ?? 1;
    if (r !== 2) this.sent.push(msg);
    return r;
  }
  bufferedAmount(): number {
    return this.buffered;
  }
  cork(fn: () => void): void {
    fn();
  }
  end(code: number, reason: string): void {
    this.ended = { code, reason };
  }
  events(name: string): Record<string, unknown>[] {
    return (this.sent as Record<string, unknown>[]).filter((m) => m['event'] === name);
  }
}

const STREAM = 'MZ00000000000000000000000000000001';
const CALL = 'CA00000000000000000000000000000001';
const payload = (bytes = 160, fill = 0xff) => Buffer.alloc(bytes, fill).toString('base64');

function startMsg(): Buffer {
  return Buffer.from(
    JSON.stringify({
      event: 'start',
      sequenceNumber: '1',
      streamSid: STREAM,
      start: {
        accountSid: tenant.twilio.accountSid,
        streamSid: STREAM,
        callSid: CALL,
        tracks: ['inbound'],
        customParameters: { tenant: 'demo', token: 't' },
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    }),
  );
}

let seq = 1;
function mediaMsg(ts: number, p = payload()): Buffer {
  seq++;
  return Buffer.from(
    `{"event":"media","sequenceNumber":"${seq}","streamSid":"${STREAM}","media":{"track":"inbound","chunk":"${seq}","timestamp":"${ts}","payload":"${p}"}}`,
  );
}
const markMsg = (name: string) => Buffer.from(JSON.stringify({ event: 'mark', sequenceNumber: '9', streamSid: STREAM, mark: { name } }));

const pcmuSession = { type: 'session.updated', session: { type: 'realtime', audio: { input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } } } };
const delta = (responseId: string, itemId: string, bytes = 800) => ({
  type: 'response.output_audio.delta',
  event_id: 'ev',
  response_id: responseId,
  item_id: itemId,
  output_index: 0,
  content_index: 0,
  delta: payload(bytes, 0x10),
});

interface Harness {
  bridge: CallBridge;
  twilio: FakeTwilio;
  model: FakeModel;
  models: FakeModel[];
  failReconnect?: boolean;
  clock: ManualClock;
  metrics: RelayMetrics;
  store: MemoryCallStore;
  connect: { resolve: () => void; reject: (e: Error) => void; signal: AbortSignal | undefined; calls: number };
  ended: boolean;
}

const flush = () => new Promise((r) => setImmediate(r));

/** The model calls a tool (end_call) in response `resp_t` (its output is sent at once; the follow-up waits for response.done). */
async function modelCallsTool(h: Harness, name = 'end_call', args = '{"reason":"done"}'): Promise<void> {
  h.model.emit({ type: 'response.created', response: { id: 'resp_t', status: 'in_progress' } });
  h.model.emit({
    type: 'response.output_item.done',
    response_id: 'resp_t',
    output_index: 0,
    item: { id: 'item_f', type: 'function_call', call_id: 'call_1', name, arguments: args },
  });
  await flush();
}

function harness(limits: Partial<BridgeDeps['limits']> = {}, autoConnect = true, tools: ToolRunner = new BuiltinToolRunner()): Harness {
  const clock = new ManualClock(1_000_000);
  const twilio = new FakeTwilio();
  const model = new FakeModel();
  const models = [model];
  const metrics = createMetrics({ defaultMetrics: false });
  const store = new MemoryCallStore(() => clock.now());
  const h = { twilio, model, models, clock, metrics, store, ended: false } as Harness;
  h.connect = { resolve: () => {}, reject: () => {}, signal: undefined, calls: 0 };
  const deps: BridgeDeps = {
    clock,
    store,
    tools,
    metrics,
    log: silentLogger(),
    pod: 'pod-a',
    authorise: () => Promise.resolve({ ok: true, tenant }),
    model: {
      provider: 'sim',
      shape: 'ga',
      connect: (signal) => {
        h.connect.calls++;
        h.connect.signal = signal;
        if (h.connect.calls > 1) {
          // A reconnect gets a fresh socket, like a new session.
          if (h.failReconnect) return Promise.reject(new Error('refused'));
          h.model = new FakeModel();
          h.models.push(h.model);
          return Promise.resolve(h.model);
        }
        if (autoConnect) return Promise.resolve(model);
        return new Promise((resolve, reject) => {
          h.connect.resolve = () => resolve(model);
          h.connect.reject = reject;
        });
      },
    },
    limits: {
      twilioMaxBackpressureBytes: 64 * 1024,
      modelMaxBufferedBytes: 64 * 1024,
      twilioMaxMessageBytes: 64 * 1024,
      callerAudioRingFrames: 250,
      maxCallMs: 3_600_000,
      modelConnectTimeoutMs: 5000,
      frameMetrics: true,
      windDownMs: 15_000,
      ...limits,
    },
  };
  h.bridge = new CallBridge(twilio, deps, undefined, () => {
    h.ended = true;
  });
  return h;
}

async function live(h: Harness): Promise<void> {
  h.bridge.onTwilioMessage(Buffer.from('{"event":"connected","protocol":"Call","version":"1.0.0"}'), false);
  h.bridge.onTwilioMessage(startMsg(), false);
  await flush();
  h.model.emit(pcmuSession);
  expect(h.bridge.state.kind).toBe('live');
}

async function dropped(m: RelayMetrics, direction: string, reason: string): Promise<number> {
  const v = (await m.framesDropped.get()).values.find((x) => x.labels['direction'] === direction && x.labels['reason'] === reason);
  return v?.value ?? 0;
}

beforeEach(() => {
  seq = 1;
});

describe('CallBridge', () => {
  it('closes with 4000 on media before start and never connects upstream', () => {
    const h = harness();
    h.bridge.onTwilioMessage(mediaMsg(0), false);
    expect(h.twilio.ended).toEqual({ code: 4000, reason: 'media before start' });
    expect(h.connect.calls).toBe(0);
    expect(h.ended).toBe(true);
  });

  it('configures the session, flushes audio that arrived while connecting, then greets', async () => {
    const h = harness({}, false);
    h.bridge.onTwilioMessage(startMsg(), false);
    h.bridge.onTwilioMessage(mediaMsg(0, payload(160, 1)), false);
    h.bridge.onTwilioMessage(mediaMsg(20, payload(160, 2)), false);
    await flush();
    expect(h.bridge.state.kind).toBe('connecting');
    h.connect.resolve();
    await flush();
    expect(h.model.types()).toEqual(['session.update']);
    const session = h.model.sent[0]!['session'] as Record<string, unknown>;
    expect(session['type']).toBe('realtime');
    expect(JSON.stringify(session)).toContain('"audio/pcmu"');
    h.model.emit(pcmuSession);
    expect(h.model.types()).toEqual(['session.update', 'input_audio_buffer.append', 'input_audio_buffer.append', 'response.create']);
    expect(h.model.sent[1]!['audio']).toBe(payload(160, 1));
    expect(h.model.sent[2]!['audio']).toBe(payload(160, 2));
    expect(JSON.stringify(h.model.sent[3])).toContain(`exactly: ${tenant.model.greeting}`);
    h.bridge.onTwilioMessage(mediaMsg(40, payload(160, 3)), false);
    expect(h.model.sent[4]).toEqual({ type: 'input_audio_buffer.append', audio: payload(160, 3) });
  });

  it('MODEL_APPEND_FRAMES=3: frames held while connecting still go one append per frame, each as Twilio sent it', async () => {
    const h = harness({ modelAppendFrames: 3 }, false);
    h.bridge.onTwilioMessage(startMsg(), false);
    h.bridge.onTwilioMessage(mediaMsg(0, payload(160, 1)), false);
    h.bridge.onTwilioMessage(mediaMsg(20, payload(160, 2)), false);
    await flush();
    h.connect.resolve();
    await flush();
    h.model.emit(pcmuSession);
    expect(h.model.sent.slice(1, 3)).toEqual([
      { type: 'input_audio_buffer.append', audio: payload(160, 1) },
      { type: 'input_audio_buffer.append', audio: payload(160, 2) },
    ]);
  });

  it('MODEL_APPEND_FRAMES=2: one append per two caller frames, and a DTMF key flushes the held frame ahead of it', async () => {
    const h = harness({ modelAppendFrames: 2 });
    await live(h);
    const before = h.model.sent.length;
    for (let i = 1; i <= 3; i++) h.bridge.onTwilioMessage(mediaMsg(i * 20, payload(160, i)), false);
    const appends = () => h.model.sent.slice(before).filter((e) => e['type'] === 'input_audio_buffer.append');
    expect(appends()).toHaveLength(1);
    expect(Buffer.from(appends()[0]!['audio'] as string, 'base64').equals(Buffer.concat([Buffer.alloc(160, 1), Buffer.alloc(160, 2)]))).toBe(true);
    h.bridge.onTwilioMessage(Buffer.from(`{"event":"dtmf","streamSid":"${STREAM}","sequenceNumber":"99","dtmf":{"track":"inbound_track","digit":"5"}}`), false);
    const after = h.model.sent.slice(before).map((e) => e['type']);
    expect(after.slice(0, 3)).toEqual(['input_audio_buffer.append', 'input_audio_buffer.append', 'conversation.item.create']);
    expect(Buffer.from(appends()[1]!['audio'] as string, 'base64').equals(Buffer.alloc(160, 3))).toBe(true);
  });

  it('switchboard_frame_relay_seconds{caller_to_model} is each frame\'s arrival to the send of its append, the hold included', async () => {
    const h = harness({ modelAppendFrames: 3 });
    await live(h);
    const c2m = async () => {
      const v = (await h.metrics.frameRelay.get()).values.filter((x) => x.labels['direction'] === 'caller_to_model');
      const at = (name: string, le?: number) => v.find((x) => x.metricName.endsWith(name) && (le === undefined || x.labels['le'] === le))?.value ?? 0;
      return { count: at('_count'), sum: at('_sum'), le10ms: at('_bucket', 0.01), le25ms: at('_bucket', 0.025) };
    };
    const before = await c2m();
    for (let i = 1; i <= 3; i++) {
      h.bridge.onTwilioMessage(mediaMsg(i * 20, payload(160, i)), false);
      if (i < 3) h.clock.advance(20);
    }
    // Held 40, 20 and 0 ms: observed when their one append went, not when each came in.
    const sent = await c2m();
    expect(sent.count - before.count).toBe(3);
    expect(sent.sum - before.sum).toBeCloseTo(0.06, 6);
    expect(sent.le25ms - before.le25ms).toBe(2);
    h.bridge.onTwilioMessage(mediaMsg(80, payload(160, 4)), false);
    expect((await c2m()).count).toBe(sent.count); // held: not observed yet
    h.clock.advance(5);
    h.bridge.onTwilioMessage(Buffer.from(`{"event":"dtmf","streamSid":"${STREAM}","sequenceNumber":"99","dtmf":{"track":"inbound_track","digit":"5"}}`), false);
    const flushed = await c2m();
    expect(flushed.count - sent.count).toBe(1);
    expect(flushed.sum - sent.sum).toBeCloseTo(0.005, 6);
    expect(flushed.le10ms - sent.le10ms).toBe(1);
  });

  it('MODEL_APPEND_FRAMES=3: a stop sends the held frames as one append before the model socket closes', async () => {
    const h = harness({ modelAppendFrames: 3 });
    await live(h);
    const before = h.model.sent.length;
    for (let i = 1; i <= 5; i++) h.bridge.onTwilioMessage(mediaMsg(i * 20, payload(160, i)), false);
    const appends = () => h.model.sent.slice(before).filter((e) => e['type'] === 'input_audio_buffer.append');
    expect(appends()).toHaveLength(1);
    expect(h.model.closed).toBeUndefined();
    h.bridge.onTwilioMessage(Buffer.from(`{"event":"stop","sequenceNumber":"9","streamSid":"${STREAM}","stop":{"accountSid":"AC1","callSid":"CA1"}}`), false);
    await flush();
    expect(appends()).toHaveLength(2);
    expect(Buffer.from(appends()[1]!['audio'] as string, 'base64').equals(Buffer.concat([Buffer.alloc(160, 4), Buffer.alloc(160, 5)]))).toBe(true);
    expect(h.model.closed?.code).toBe(1000);
  });

  it('refuses a model that did not accept μ-law (forwarding 24 kHz PCM would be static)', async () => {
    const h = harness();
    h.bridge.onTwilioMessage(startMsg(), false);
    await flush();
    h.model.emit({ type: 'session.updated', session: { type: 'realtime', audio: { output: { format: { type: 'audio/pcm', rate: 24000 } } } } });
    await flush(); // the socket closes once the outcome is stored
    expect(h.twilio.ended?.code).toBe(4010);
    expect(h.bridge.state).toEqual({ kind: 'ended', outcome: 'model_failed', callSid: CALL, tenant });
    expect(h.model.closed?.code).toBe(1000);
  });

  it('drops the oldest frames when the ring overflows while the model connects', async () => {
    const h = harness({ callerAudioRingFrames: 5 }, false);
    h.bridge.onTwilioMessage(startMsg(), false);
    for (let i = 0; i < 8; i++) h.bridge.onTwilioMessage(mediaMsg(i * 20, payload(160, i)), false);
    expect(await dropped(h.metrics, 'caller_to_model', 'model_not_ready')).toBe(3);
    h.connect.resolve();
    await flush();
    h.model.emit(pcmuSession);
    const appends = h.model.sent.filter((e) => e['type'] === 'input_audio_buffer.append').map((e) => e['audio']);
    expect(appends).toEqual([3, 4, 5, 6, 7].map((i) => payload(160, i)));
  });

  it('relays model audio with a mark after each chunk, on the stream sid', async () => {
    const h = harness();
    await live(h);
    h.model.emit({ type: 'response.created', response: { id: 'resp_1', status: 'in_progress' } });
    h.model.emit(delta('resp_1', 'item_1'));
    h.model.emit(delta('resp_1', 'item_1'));
    const out = h.twilio.sent as Record<string, unknown>[];
    expect(out.map((m) => m['event'])).toEqual(['media', 'mark', 'media', 'mark']);
    expect(out[0]).toEqual({ event: 'media', streamSid: STREAM, media: { payload: payload(800, 0x10) } });
    expect(out[1]).toMatchObject({ event: 'mark', streamSid: STREAM });
    expect(((out[1]!['mark'] as { name: string }).name)).toMatch(/^item_1:100:g0:m1$/);
    expect(((out[3]!['mark'] as { name: string }).name)).toMatch(/^item_1:200:g0:m2$/);
  });

  it('barge-in while the model is talking: clear first, truncate at what was heard, drop stale audio (the server cancels)', async () => {
    const h = harness();
    await live(h);
    h.bridge.onTwilioMessage(mediaMsg(1000), false);
    h.model.emit({ type: 'response.created', response: { id: 'resp_1', status: 'in_progress' } });
    for (let i = 0; i < 5; i++) h.model.emit(delta('resp_1', 'item_1')); // 500 ms sent at stream time 1000
    const marks = h.twilio.events('mark').map((m) => (m['mark'] as { name: string }).name);
    // Twilio played the first 200 ms (two marks echoed by stream time 1200), then 60 ms more.
    h.bridge.onTwilioMessage(mediaMsg(1200), false);
    h.bridge.onTwilioMessage(markMsg(marks[0]!), false);
    h.bridge.onTwilioMessage(markMsg(marks[1]!), false);
    h.bridge.onTwilioMessage(mediaMsg(1260), false);
    const before = h.twilio.sent.length;
    const modelBefore = h.model.sent.length;
    h.model.emit({ type: 'input_audio_buffer.speech_started', audio_start_ms: 900, item_id: 'item_c' });
    expect(h.twilio.sent.slice(before)).toEqual([{ event: 'clear', streamSid: STREAM }]);
    // interrupt_response: the server cancelled resp_1 itself; a response.cancel would be an error.
    expect(h.model.sent.slice(modelBefore)).toEqual([
      { type: 'conversation.item.truncate', item_id: 'item_1', content_index: 0, audio_end_ms: 260 },
    ]);
    // Audio of the cancelled response still in flight is not played.
    h.model.emit(delta('resp_1', 'item_1'));
    expect(h.twilio.sent.length).toBe(before + 1);
    expect(await dropped(h.metrics, 'model_to_caller', 'stale_response')).toBe(1);
    // Marks echoed by the clear (old generation) are ignored; a new response plays normally.
    h.bridge.onTwilioMessage(markMsg(marks[4]!), false);
    h.model.emit({ type: 'response.done', response: { id: 'resp_1', status: 'cancelled', status_details: { type: 'cancelled', reason: 'turn_detected' } } });
    h.model.emit({ type: 'response.created', response: { id: 'resp_2', status: 'in_progress' } });
    h.model.emit(delta('resp_2', 'item_2'));
    expect((h.twilio.sent.at(-1) as { mark: { name: string } }).mark.name).toMatch(/^item_2:100:g1:/);
  });

  it('speech while a response is still thinking: no clear (Twilio holds nothing), no cancel, its audio is dropped', async () => {
    const h = harness();
    await live(h);
    h.model.emit({ type: 'response.created', response: { id: 'resp_1', status: 'in_progress' } });
    const n = h.twilio.sent.length;
    const m = h.model.sent.length;
    h.model.emit({ type: 'input_audio_buffer.speech_started', audio_start_ms: 10, item_id: 'item_c' });
    expect(h.twilio.sent.length).toBe(n);
    expect(h.model.sent.length).toBe(m);
    h.model.emit(delta('resp_1', 'item_1'));
    expect(h.twilio.sent.length).toBe(n);
  });

  it('a media frame uWS dropped gets no mark: nothing is waited for, and speech is no barge-in', async () => {
    const h = harness();
    await live(h);
    h.model.emit({ type: 'response.created', response: { id: 'resp_1', status: 'in_progress' } });
    h.twilio.result = { media: 2, mark: 2 };
    h.model.emit(delta('resp_1', 'item_1'));
    h.model.emit({ type: 'response.done', response: { id: 'resp_1', status: 'completed', output: [] } });
    expect(await dropped(h.metrics, 'model_to_caller', 'caller_backpressure')).toBe(1);
    const n = h.twilio.sent.length;
    h.model.emit({ type: 'input_audio_buffer.speech_started', audio_start_ms: 10, item_id: 'item_c' });
    expect(h.twilio.sent.length).toBe(n); // no clear: nothing of ours is queued at Twilio
    expect(h.model.types()).not.toContain('conversation.item.truncate');
  });

  it('a mark uWS dropped after its media went out is sent again when the socket drains, in order', async () => {
    const h = harness();
    await live(h);
    h.model.emit({ type: 'response.created', response: { id: 'resp_1', status: 'in_progress' } });
    h.twilio.result = { mark: 2 };
    h.model.emit(delta('resp_1', 'item_1'));
    h.model.emit(delta('resp_1', 'item_1'));
    expect(h.twilio.events('media')).toHaveLength(2);
    expect(h.twilio.events('mark')).toHaveLength(0);
    h.bridge.onTwilioDrain(); // still full: kept
    expect(h.twilio.events('mark')).toHaveLength(0);
    h.twilio.result = {};
    h.bridge.onTwilioDrain();
    const names = h.twilio.events('mark').map((m) => (m['mark'] as { name: string }).name);
    expect(names).toEqual(['item_1:100:g0:m1', 'item_1:200:g0:m2']);
    h.bridge.onTwilioDrain(); // nothing left to send
    expect(h.twilio.events('mark')).toHaveLength(2);
  });

  it('no barge-in work when nothing is playing', async () => {
    const h = harness();
    await live(h);
    const n = h.twilio.sent.length;
    h.model.emit({ type: 'input_audio_buffer.speech_started', audio_start_ms: 10, item_id: 'item_c' });
    expect(h.twilio.sent.length).toBe(n);
    expect(h.model.types()).not.toContain('conversation.item.truncate');
  });

  it('tool call: output sent at once, follow-up only after response.done, end_call hangs up after the goodbye played', async () => {
    const h = harness();
    await live(h);
    await modelCallsTool(h);
    const out = h.model.sent.find((e) => e['type'] === 'conversation.item.create')!;
    expect(out).toEqual({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: 'call_1', output: expect.stringContaining('"ok":true') as unknown } });
    const creates = () => h.model.types().filter((t) => t === 'response.create').length;
    expect(creates()).toBe(1); // only the greeting so far: wait for response.done
    h.model.emit({ type: 'response.done', response: { id: 'resp_t', status: 'completed', output: [] } });
    expect(creates()).toBe(2);
    expect(h.bridge.state.kind).toBe('ending');
    // The goodbye: played fully before the line closes.
    h.model.emit({ type: 'response.created', response: { id: 'resp_g', status: 'in_progress' } });
    h.model.emit(delta('resp_g', 'item_g'));
    h.model.emit({ type: 'response.done', response: { id: 'resp_g', status: 'completed', output: [] } });
    expect(h.twilio.ended).toBeUndefined();
    const mark = (h.twilio.events('mark').at(-1)!['mark'] as { name: string }).name;
    h.bridge.onTwilioMessage(markMsg(mark), false);
    await flush(); // the socket closes once the outcome is stored
    expect(h.twilio.ended).toEqual({ code: 4011, reason: 'assistant ended the call' });
    const rec = await h.store.getCall(CALL);
    expect(rec?.outcome).toBe('ended_by_assistant');
    expect(rec?.tools.map((t) => t.name)).toEqual(['end_call']);
  });

  it('thinned marks: a goodbye in small deltas gets a mark per 100 ms and one for its tail, and the line closes only once the tail played', async () => {
    const h = harness({ twilioMarkIntervalMs: 100 });
    await live(h);
    await modelCallsTool(h);
    h.model.emit({ type: 'response.done', response: { id: 'resp_t', status: 'completed', output: [] } });
    expect(h.bridge.state.kind).toBe('ending');
    h.model.emit({ type: 'response.created', response: { id: 'resp_g', status: 'in_progress' } });
    for (let i = 0; i < 7; i++) h.model.emit(delta('resp_g', 'item_g', 160)); // 7 × 20 ms
    expect(h.twilio.events('media')).toHaveLength(7);
    const names = () => h.twilio.events('mark').map((m) => (m['mark'] as { name: string }).name);
    expect(names()).toEqual([expect.stringMatching(/^item_g:100:/)]);
    h.bridge.onTwilioMessage(markMsg(names()[0]!), false);
    h.model.emit({ type: 'response.output_audio.done', response_id: 'resp_g', item_id: 'item_g', output_index: 0, content_index: 0 });
    h.model.emit({ type: 'response.done', response: { id: 'resp_g', status: 'completed', output: [] } });
    expect(names()).toEqual([expect.stringMatching(/^item_g:100:/), expect.stringMatching(/^item_g:140:/)]);
    await flush();
    expect(h.twilio.ended).toBeUndefined(); // the last 40 ms have not played yet
    h.bridge.onTwilioMessage(markMsg(names()[1]!), false);
    await flush();
    expect(h.twilio.ended).toEqual({ code: 4011, reason: 'assistant ended the call' });
  });

  it('two effects in one response: both are kept, and the hand-off to a human is not lost to a later end_call', async () => {
    const tools: ToolRunner = {
      definitions: () => [],
      run: (_ctx, name) =>
        Promise.resolve(
          name === 'transfer_to_human'
            ? toolOk({ transferring: true }, { kind: 'transfer', to: '+15550100', reason: 'caller-asked' })
            : toolOk({}, { kind: 'end_call', reason: 'done' }),
        ),
    };
    const h = harness({}, true, tools);
    await live(h);
    h.model.emit({ type: 'response.created', response: { id: 'resp_t', status: 'in_progress' } });
    const call = (id: string, name: string) => ({
      type: 'response.output_item.done',
      response_id: 'resp_t',
      output_index: 0,
      item: { id: `item_${id}`, type: 'function_call', call_id: id, name, arguments: '{}' },
    });
    h.model.emit(call('call_1', 'transfer_to_human'));
    h.model.emit(call('call_2', 'end_call'));
    await flush();
    expect(h.model.sent.filter((e) => e['type'] === 'conversation.item.create')).toHaveLength(2);
    h.model.emit({ type: 'response.done', response: { id: 'resp_t', status: 'completed', output: [] } });
    expect(h.bridge.state).toMatchObject({ kind: 'ending', outcome: 'transferred' });
    h.model.emit({ type: 'response.created', response: { id: 'resp_g', status: 'in_progress' } });
    h.model.emit({ type: 'response.done', response: { id: 'resp_g', status: 'completed', output: [] } });
    await flush();
    expect(h.twilio.ended).toEqual({ code: 4012, reason: 'handed to a human' });
    expect((await h.store.getCall(CALL))?.outcome).toBe('transferred');
  });

  it('a transfer decided before the session dropped (its response never done): carried out at once, no new session; the call is not stuck busy', async () => {
    const h = harness();
    await live(h);
    await modelCallsTool(h, 'transfer_to_human', '{"reason":"gas smell"}');
    expect(h.model.sent.some((e) => e['type'] === 'conversation.item.create')).toBe(true); // the tool answered
    expect(h.bridge.migratable()?.migrationReadiness()).toBe('busy');
    h.model.drop(1006); // before response.done: the session that would say the last words is gone
    await flush(); // the socket closes once the outcome is stored
    expect(h.models).toHaveLength(1); // no session is opened for words nobody can say any more
    expect(h.twilio.ended).toEqual({ code: 4012, reason: 'handed to a human' });
    expect(h.bridge.state).toEqual({ kind: 'ended', outcome: 'transferred', callSid: CALL, tenant });
    expect((await h.store.getCall(CALL))?.outcome).toBe('transferred');
    expect(h.bridge.migratable()).toBeUndefined();
  });

  it('an end_call decided before a fatal model error: the call ends as the assistant decided, not with the fallback', async () => {
    const h = harness();
    await live(h);
    await modelCallsTool(h);
    h.model.emit({ type: 'error', error: { type: 'invalid_request_error', code: 'invalid_api_key', message: 'bad key' } });
    await flush();
    expect(h.twilio.ended).toEqual({ code: 4011, reason: 'assistant ended the call' });
    expect(h.bridge.state).toEqual({ kind: 'ended', outcome: 'ended_by_assistant', callSid: CALL, tenant });
  });

  it('a drop with no effect decided still opens a new session (the call goes on)', async () => {
    const h = harness();
    await live(h);
    await modelCallsTool(h, 'check_service_area', '{"postcode":"10001"}');
    h.model.drop(1006);
    await flush();
    expect(h.models).toHaveLength(2);
    h.model.emit(pcmuSession);
    expect(h.bridge.state.kind).toBe('live');
    expect(h.bridge.migratable()?.migrationReadiness()).not.toBe('ending');
  });

  it('answers an unknown tool with an error result instead of failing the call', async () => {
    const h = harness();
    await live(h);
    h.model.emit({
      type: 'response.output_item.done',
      response_id: 'r',
      output_index: 0,
      item: { id: 'i', type: 'function_call', call_id: 'call_x', name: 'launch_rockets', arguments: '{}' },
    });
    await flush();
    const out = h.model.sent.find((e) => e['type'] === 'conversation.item.create') as { item: { output: string } };
    expect(JSON.parse(out.item.output)).toEqual({ ok: false, error: 'No tool named launch_rockets is available on this call.' });
    expect(h.bridge.state.kind).toBe('live');
    const tool = (await h.metrics.toolCall.get()).values.find((v) => v.metricName === 'switchboard_tool_call_seconds_count');
    expect(tool?.labels).toEqual({ tool: 'unknown', outcome: 'unknown_tool' });
  });

  it('backpressure: drops audio toward a slow Twilio and caller audio toward a slow model, counted', async () => {
    const h = harness({ twilioMaxBackpressureBytes: 16 * 1024, modelMaxBufferedBytes: 16 * 1024 });
    await live(h);
    h.twilio.buffered = 20 * 1024;
    const n = h.twilio.sent.length;
    h.model.emit(delta('resp_1', 'item_1'));
    expect(h.twilio.sent.length).toBe(n);
    expect(await dropped(h.metrics, 'model_to_caller', 'caller_backpressure')).toBe(1);
    h.model.bufferedAmount = 20 * 1024;
    const m = h.model.sent.length;
    h.bridge.onTwilioMessage(mediaMsg(100), false);
    expect(h.model.sent.length).toBe(m);
    expect(await dropped(h.metrics, 'caller_to_model', 'model_backpressure')).toBe(1);
    expect(h.bridge.state.kind).toBe('live');
  });

  it('counts malformed messages and closes after too many; oversized messages close with 1009', async () => {
    const h = harness();
    await live(h);
    for (let i = 0; i < 19; i++) h.bridge.onTwilioMessage(Buffer.from('{not json'), false);
    expect(h.twilio.ended).toBeUndefined();
    h.bridge.onTwilioMessage(Buffer.from('{"event":"media"}'), false);
    await flush(); // the socket closes once the outcome is stored
    expect(h.twilio.ended?.code).toBe(4001);
    const big = harness({ twilioMaxMessageBytes: 1024 });
    await live(big);
    big.bridge.onTwilioMessage(Buffer.alloc(2048, 0x20), false);
    await flush(); // the socket closes once the outcome is stored
    expect(big.twilio.ended?.code).toBe(1009);
  });

  it('a second start on one stream closes with 4006', async () => {
    const h = harness();
    await live(h);
    h.bridge.onTwilioMessage(startMsg(), false);
    await flush(); // the socket closes once the outcome is stored
    expect(h.twilio.ended?.code).toBe(4006);
  });

  it('hang-up while the model connects aborts the connect and closes a late socket', async () => {
    const h = harness({}, false);
    h.bridge.onTwilioMessage(startMsg(), false);
    await flush();
    expect(h.connect.signal?.aborted).toBe(false);
    h.bridge.onTwilioClose(1006);
    expect(h.connect.signal?.aborted).toBe(true);
    h.connect.resolve();
    await flush();
    expect(h.model.closed?.code).toBe(1000);
    expect(h.bridge.state).toEqual({ kind: 'ended', outcome: 'caller_hung_up', callSid: CALL, tenant });
    expect((await h.metrics.activeCalls.get()).values[0]?.value).toBe(0);
  });

  it('turn latency runs on the call clock: speech end (mapped to its append time) to the first audio relayed', async () => {
    const h = harness();
    await live(h);
    for (let i = 0; i < 10; i++) {
      h.bridge.onTwilioMessage(mediaMsg(i * 20), false);
      h.clock.advance(20);
    }
    // The model places the end of speech at 100 ms of input audio: appended 100 ms after the first frame.
    h.model.emit({ type: 'input_audio_buffer.speech_stopped', event_id: 'e', audio_end_ms: 100, item_id: 'i1' });
    h.clock.advance(250);
    h.model.emit({ type: 'response.created', response: { id: 'resp_1', status: 'in_progress' } });
    h.model.emit(delta('resp_1', 'item_1'));
    const sum = (await h.metrics.turnLatency.get()).values.find((v) => v.metricName === 'switchboard_turn_latency_seconds_sum');
    // Audio up to 100 ms was in with the 5th frame (80 ms after the first); the delta came at 200 + 250.
    expect(sum?.value).toBeCloseTo(0.37);
  });

  it('the model dropping mid-call: one new session with the conversation replayed, caller audio kept meanwhile', async () => {
    const h = harness();
    await live(h);
    h.model.emit({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'i1', content_index: 0, transcript: 'I need a plumber' });
    h.model.emit({ type: 'response.output_audio_transcript.done', response_id: 'r1', item_id: 'i2', output_index: 0, content_index: 0, transcript: 'Sure, where are you?' });
    h.model.emit({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'i3', content_index: 0, transcript: 'In 10001' });
    const first = h.model;
    first.drop(1006);
    expect(h.bridge.state.kind).toBe('reconnecting');
    expect(h.twilio.ended).toBeUndefined();
    h.bridge.onTwilioMessage(mediaMsg(5000, payload(160, 7)), false); // buffered, not lost
    await flush();
    expect(h.models).toHaveLength(2);
    const second = h.model;
    expect(second.types()).toEqual(['session.update']);
    second.emit(pcmuSession);
    expect(h.bridge.state.kind).toBe('live');
    expect(second.sent.slice(1)).toEqual([
      { type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'I need a plumber' }] } },
      { type: 'conversation.item.create', item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Sure, where are you?' }] } },
      { type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'In 10001' }] } },
      { type: 'input_audio_buffer.append', audio: payload(160, 7) },
      { type: 'response.create', event_id: expect.stringMatching(/^sb_response_/) as unknown }, // the caller's last words were never answered
    ]);
    // Events from the old socket are ignored; a second loss ends the call with the fallback.
    first.emit(delta('old', 'old_item'));
    expect(h.twilio.events('media')).toHaveLength(0);
    second.drop(1006);
    await flush(); // the socket closes once the outcome is stored
    expect(h.twilio.ended?.code).toBe(4010);
    expect(h.bridge.state).toEqual({ kind: 'ended', outcome: 'model_failed', callSid: CALL, tenant });
  });

  it('a reconnect that fails ends the call with the fallback', async () => {
    const h = harness();
    await live(h);
    h.failReconnect = true;
    h.model.drop(1006);
    await flush();
    expect(h.twilio.ended?.code).toBe(4010);
    expect(h.bridge.state).toEqual({ kind: 'ended', outcome: 'model_failed', callSid: CALL, tenant });
  });

  it('session expiry opens a new session; fatal errors end the call; benign races do not', async () => {
    const h = harness();
    await live(h);
    h.model.emit({ type: 'error', error: { type: 'invalid_request_error', code: 'conversation_already_has_active_response', message: 'busy' } });
    expect(h.bridge.state.kind).toBe('live');
    h.model.emit({ type: 'error', error: { type: 'invalid_request_error', code: 'session_expired', message: 'expired' } });
    await flush();
    expect(h.models[0]!.closed?.code).toBe(1000);
    expect(h.models).toHaveLength(2);
    h.model.emit(pcmuSession);
    expect(h.bridge.state.kind).toBe('live');
    h.model.emit({ type: 'error', error: { type: 'invalid_request_error', code: 'invalid_api_key', message: 'bad key' } });
    await flush(); // the socket closes once the outcome is stored
    expect(h.twilio.ended?.code).toBe(4010);
    expect(h.bridge.state).toEqual({ kind: 'ended', outcome: 'model_failed', callSid: CALL, tenant });
  });

  it('ends a call that runs past MAX_CALL_SECONDS with a goodbye, then 4014 (at the latest after the wind-down)', async () => {
    const h = harness({ maxCallMs: 60_000 });
    await live(h);
    h.model.emit({ type: 'response.created', response: { id: 'r_greet' } });
    h.model.emit({ type: 'response.done', response: { id: 'r_greet', status: 'completed' } });
    h.clock.advance(60_001);
    expect(JSON.stringify(h.model.sent.at(-1))).toContain('time limit');
    expect(h.twilio.ended).toBeUndefined();
    h.clock.advance(15_001);
    await flush(); // the socket closes once the outcome is stored
    expect(h.twilio.ended?.code).toBe(4014);
    expect(h.bridge.state).toEqual({ kind: 'ended', outcome: 'too_long', callSid: CALL, tenant });
  });

  it('a move whose Twilio update failed after the stream had stopped: the caller hung up, and the call ends as such', async () => {
    const h = harness();
    await live(h);
    await flush(); // the call record is written
    const m = h.bridge.migratable()!;
    await h.store.beginMigration(CALL);
    m.beginMigration();
    h.bridge.onTwilioMessage(Buffer.from(JSON.stringify({ event: 'stop', sequenceNumber: '9', streamSid: STREAM, stop: { accountSid: tenant.twilio.accountSid, callSid: CALL } })), false);
    expect(h.bridge.state.kind).toBe('ended');
    expect(h.bridge.migratable()).toBeUndefined();
    m.cancelMigration(); // the migrator's update did not go through: that stop was the caller hanging up
    await flush();
    expect((await h.store.getCall(CALL))?.outcome).toBe('caller_hung_up');
    const total = (await h.metrics.callsTotal.get()).values.find((v) => v.labels['outcome'] === 'caller_hung_up');
    expect(total?.value).toBe(1);
  });

  it('a session.update the model never confirms ends the call within the connect timeout', async () => {
    const h = harness({ modelConnectTimeoutMs: 3000 });
    h.bridge.onTwilioMessage(startMsg(), false);
    await flush();
    h.clock.advance(3001);
    await flush(); // the socket closes once the outcome is stored
    expect(h.twilio.ended?.code).toBe(4010);
    expect(h.bridge.state).toEqual({ kind: 'ended', outcome: 'model_unavailable', callSid: CALL, tenant });
  });
});

/** A live call whose tools answer only when the test says (`answer`). */
async function liveWithSlowTool(): Promise<{ h: Harness; answer: (r: ToolResult) => void }> {
  const slow = { answer: (_r: ToolResult): void => {} };
  const tools: ToolRunner = { definitions: () => [], run: () => new Promise((r) => { slow.answer = r; }) };
  const h = harness({}, true, tools);
  await live(h);
  return { h, answer: (r) => slow.answer(r) };
}

/** The model calls a slow tool, then its session drops while the tool runs. */
async function toolRunningAtDrop(name: string, args: string): Promise<{ h: Harness; answer: (r: ToolResult) => void }> {
  const t = await liveWithSlowTool();
  await modelCallsTool(t.h, name, args);
  t.h.model.drop(1006);
  await flush();
  return t;
}

/** Twilio echoes the last mark sent: the audio before it has played. */
function echoLastMark(h: Harness): void {
  h.bridge.onTwilioMessage(markMsg((h.twilio.events('mark').at(-1)!['mark'] as { name: string }).name), false);
}

describe('CallBridge: the last words and effects across sessions', () => {
  it('end_call answered while server VAD answers the caller: the line closes after the goodbye, not after that answer', async () => {
    const { h, answer } = await liveWithSlowTool();
    await modelCallsTool(h); // resp_t asks end_call; the tool is slow
    h.model.emit({ type: 'response.done', response: { id: 'resp_t', status: 'completed', output: [] } });
    // The caller speaks meanwhile; server VAD answers with resp_v
    h.model.emit({ type: 'input_audio_buffer.speech_started', audio_start_ms: 0, item_id: 'it_c' });
    h.model.emit({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: 500, item_id: 'it_c' });
    h.model.emit({ type: 'response.created', response: { id: 'resp_v', status: 'in_progress' } });
    answer(toolOk({}, { kind: 'end_call', reason: 'done' }));
    await flush();
    expect(h.bridge.state.kind).toBe('ending');
    const creates = () => h.model.types().filter((t) => t === 'response.create').length;
    const createsBefore = creates();
    h.model.emit(delta('resp_v', 'item_v'));
    h.model.emit({ type: 'response.done', response: { id: 'resp_v', status: 'completed', output: [] } });
    expect(creates()).toBe(createsBefore + 1); // the goodbye, asked for once resp_v is done
    echoLastMark(h);
    await flush();
    expect(h.twilio.ended).toBeUndefined(); // resp_v played; the goodbye is not said yet
    h.model.emit({ type: 'response.created', response: { id: 'resp_bye', status: 'in_progress' } });
    h.model.emit(delta('resp_bye', 'item_bye'));
    h.model.emit({ type: 'response.done', response: { id: 'resp_bye', status: 'completed', output: [] } });
    expect(h.twilio.ended).toBeUndefined(); // said, not yet heard
    echoLastMark(h);
    await flush();
    expect(h.twilio.ended).toEqual({ code: 4011, reason: 'assistant ended the call' });
  });

  it('a transfer answered just after the model session dropped is carried out once the call is live again', async () => {
    const { h, answer } = await toolRunningAtDrop('transfer_to_human', '{"reason":"x"}');
    h.model.emit(pcmuSession);
    await flush();
    expect(h.bridge.state.kind).toBe('live'); // on the new session, the tool still running
    answer(toolOk({ transferring: true }, { kind: 'transfer', to: '+15550100', reason: 'caller-asked' }));
    await flush();
    expect(h.twilio.ended).toEqual({ code: 4012, reason: 'handed to a human' });
    expect((await h.store.getCall(CALL))?.outcome).toBe('transferred');
    expect(h.model.types().filter((t) => t === 'conversation.item.create')).toHaveLength(0); // the new session never hears of it
  });

  it('a transfer answered while the new session is still opening is carried out at once', async () => {
    const { h, answer } = await toolRunningAtDrop('transfer_to_human', '{"reason":"x"}');
    expect(h.bridge.state.kind).toBe('reconnecting');
    answer(toolOk({ transferring: true }, { kind: 'transfer', to: '+15550100', reason: 'caller-asked' }));
    await flush();
    expect(h.twilio.ended).toEqual({ code: 4012, reason: 'handed to a human' });
  });

  it('a tool of a lost session still running keeps the call busy: no renewal at a pause, no move', async () => {
    const { h, answer } = await toolRunningAtDrop('check_availability', '{}');
    h.model.emit(pcmuSession);
    await flush();
    expect(h.bridge.state.kind).toBe('live');
    h.model.emit({ type: 'response.created', response: { id: 'resp_hi', status: 'in_progress' } }); // the new session's greeting
    h.model.emit({ type: 'response.done', response: { id: 'resp_hi', status: 'completed', output: [] } });
    expect(h.bridge.migratable()?.migrationReadiness()).toBe('busy');
    answer(toolOk({ slots: [] }));
    await flush();
    expect(h.bridge.state.kind).toBe('live'); // no effect: the call goes on
    expect(h.bridge.migratable()?.migrationReadiness()).toBe('ready');
  });

  it('a transfer asked for during the time-limit goodbye hands the call over once its answer is said and heard', async () => {
    const h = harness({ maxCallMs: 60_000 });
    await live(h);
    h.model.emit({ type: 'response.created', response: { id: 'resp_greet', status: 'in_progress' } });
    h.model.emit({ type: 'response.done', response: { id: 'resp_greet', status: 'completed', output: [] } });
    h.clock.advance(60_000);
    expect(h.bridge.state.kind).toBe('ending');
    h.model.emit({ type: 'response.created', response: { id: 'resp_g', status: 'in_progress' } });
    h.model.emit({ type: 'response.output_item.done', response_id: 'resp_g', output_index: 0, item: { id: 'item_f', type: 'function_call', call_id: 'call_x', name: 'transfer_to_human', arguments: '{"reason":"wants a person"}' } });
    await flush(); await flush();
    h.model.emit({ type: 'response.done', response: { id: 'resp_g', status: 'completed', output: [] } });
    await flush();
    expect(h.model.sent.filter((e) => e['type'] === 'conversation.item.create')).toHaveLength(1);
    expect(h.twilio.ended).toBeUndefined();
    h.model.emit({ type: 'response.created', response: { id: 'resp_f', status: 'in_progress' } });
    h.model.emit(delta('resp_f', 'item_f2'));
    h.model.emit({ type: 'response.done', response: { id: 'resp_f', status: 'completed', output: [] } });
    echoLastMark(h);
    await flush();
    expect(h.twilio.ended).toEqual({ code: 4012, reason: 'handed to a human' });
    expect((await h.store.getCall(CALL))?.outcome).toBe('transferred');
  });
});
