/**
 * The simulated realtime model over real loopback WebSockets, driven by a plain `ws` client as the
 * relay would: handshake and auth, session.update rules per shape, VAD and transcripts from the
 * spoken-text marker, replies whose audio carries their text, barge-in, tools, truncation, faults.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { IncomingMessage } from 'node:http';
import { FRAME_BYTES, SpeechTextCollector, silence, speechFrames } from '../../src/sim/portable/audio.js';
import { startSimModel, type SimModel, type SimModelOptions } from '../../src/sim/sim-model.js';

type Ev = { type: string } & Record<string, unknown>;

/** A relay-like client: records every server event and awaits the one a test expects. */
class Client {
  readonly events: Ev[] = [];
  readonly closed: Promise<number>;
  private readonly waiters = new Set<() => void>();

  constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      this.events.push(JSON.parse(d.toString('utf8')) as Ev);
      for (const w of [...this.waiters]) w();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code: number) => resolve(code)));
  }

  static open(url: string, headers: Record<string, string> = {}): Promise<Client> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      const c = new Client(ws);
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
    });
  }

  send(ev: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(ev));
  }

  append(bytes: Uint8Array): void {
    this.send({ type: 'input_audio_buffer.append', audio: Buffer.from(bytes).toString('base64') });
  }

  appendFrames(frames: Uint8Array[]): void {
    for (const f of frames) this.append(f);
  }

  /** The first event (from index `from`) matching pred; rejects after timeoutMs. */
  waitFor(pred: (e: Ev) => boolean, timeoutMs = 5000, from = 0): Promise<Ev> {
    const find = (): Ev | undefined => this.events.slice(from).find(pred);
    const hit = find();
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = (): void => {
        const e = find();
        if (!e) return;
        this.waiters.delete(w);
        clearTimeout(t);
        resolve(e);
      };
      const t = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`no matching event within ${timeoutMs} ms; got ${this.events.map((e) => e.type).join(', ')}`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  type(type: string, from = 0): Promise<Ev> {
    return this.waitFor((e) => e.type === type, 5000, from);
  }

  all(type: string): Ev[] {
    return this.events.filter((e) => e.type === type);
  }

  close(): Promise<number> {
    this.ws.close();
    return this.closed;
  }
}

/** Resolves with the HTTP status of a refused upgrade. */
function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => reject(new Error('upgrade unexpectedly succeeded')));
    ws.on('error', () => undefined);
  });
}

function str(e: Ev | undefined, ...path: string[]): string {
  let v: unknown = e;
  for (const k of path) v = (v as Record<string, unknown> | undefined)?.[k];
  if (typeof v !== 'string') throw new Error(`${path.join('.')} is not a string in ${JSON.stringify(e)}`);
  return v;
}

/** Decodes every delta of one response and reads the spoken-text marker back. */
function heard(c: Client, responseId: string, deltaType = 'response.output_audio.delta'): { text: string | undefined; bytes: number } {
  const collector = new SpeechTextCollector();
  let bytes = 0;
  for (const d of c.all(deltaType)) {
    if (d.response_id !== responseId) continue;
    const audio = Buffer.from(str(d, 'delta'), 'base64');
    expect(audio.length % FRAME_BYTES).toBe(0);
    bytes += audio.length;
    for (let o = 0; o < audio.length; o += FRAME_BYTES) collector.push(audio.subarray(o, o + FRAME_BYTES));
  }
  return { text: collector.text(), bytes };
}

const silent = (ms: number): Uint8Array[] => Array.from({ length: ms / 20 }, () => silence());

const PCMU_SESSION = {
  type: 'realtime',
  output_modalities: ['audio'],
  audio: {
    input: { format: { type: 'audio/pcmu' }, turn_detection: { type: 'server_vad', silence_duration_ms: 500 } },
    output: { format: { type: 'audio/pcmu' }, voice: 'marin' },
  },
};

const fn = (name: string): Record<string, unknown> => ({
  type: 'function',
  name,
  description: name,
  parameters: { type: 'object', properties: {} },
});

let model: SimModel | undefined;
const clients: Client[] = [];

async function start(o: SimModelOptions = {}): Promise<SimModel> {
  model = await startSimModel(o);
  return model;
}

async function connect(url: string, headers: Record<string, string> = {}): Promise<Client> {
  const c = await Client.open(url, headers);
  clients.push(c);
  return c;
}

/** Opens a GA session configured for μ-law with the given tools. */
async function gaSession(m: SimModel, tools: string[] = []): Promise<Client> {
  const c = await connect(`${m.url}?model=gpt-realtime`);
  await c.type('session.created');
  c.send({ type: 'session.update', session: { ...PCMU_SESSION, tools: tools.map(fn) } });
  await c.type('session.updated');
  return c;
}

/** Speaks `text` then silence; resolves with the response that answers it. */
async function say(c: Client, text: string, from = c.events.length): Promise<{ responseId: string; done: Ev }> {
  c.appendFrames([...speechFrames(text), ...silent(600)]);
  const created = await c.type('response.created', from);
  const responseId = str(created, 'response', 'id');
  const done = await c.waitFor((e) => e.type === 'response.done' && str(e, 'response', 'id') === responseId);
  return { responseId, done };
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await model?.close();
  model = undefined;
});

describe('sim model: GA handshake and session', () => {
  it('sends session.created with OpenAI defaults, then merges session.update', async () => {
    const m = await start();
    expect(m.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/v1\/realtime$/);
    const c = await connect(`${m.url}?model=gpt-realtime`);
    const created = await c.type('session.created');
    expect(created.session).toMatchObject({
      type: 'realtime',
      model: 'gpt-realtime',
      audio: { input: { format: { type: 'audio/pcm', rate: 24000 } }, output: { format: { type: 'audio/pcm', rate: 24000 } } },
    });
    c.send({ type: 'session.update', event_id: 'ev1', session: { ...PCMU_SESSION, instructions: 'Be brief.' } });
    const updated = await c.type('session.updated');
    expect(updated.session).toMatchObject({
      type: 'realtime',
      instructions: 'Be brief.',
      audio: {
        input: { format: { type: 'audio/pcmu' }, turn_detection: { type: 'server_vad', silence_duration_ms: 500 } },
        output: { format: { type: 'audio/pcmu' }, voice: 'marin' },
      },
    });
    // A format object is replaced whole, not merged: no stale 24 kHz rate next to pcmu.
    expect(JSON.stringify(updated.session)).not.toContain('24000');
    const s = await m.waitForSession();
    expect(s).toMatchObject({ shape: 'ga', path: '/v1/realtime?model=gpt-realtime' });
    await m.waitForEvent(s, (e) => e.type === 'session.update');
    expect(s.session).toMatchObject({ instructions: 'Be brief.' });
  });

  it('rejects a GA session.update without session.type, and unknown events, keeping the session open', async () => {
    const m = await start();
    const c = await connect(m.url);
    await c.type('session.created');
    c.send({ type: 'session.update', event_id: 'ev_missing', session: { instructions: 'x' } });
    const err = await c.type('error');
    expect(err.error).toMatchObject({
      type: 'invalid_request_error',
      code: 'missing_required_parameter',
      param: 'session.type',
      event_id: 'ev_missing',
    });
    c.send({ type: 'conversation.frobnicate', event_id: 'ev_unknown' });
    const unknown = await c.waitFor((e) => e.type === 'error' && (e.error as Ev).code === 'unknown_event');
    expect(unknown.error).toMatchObject({ event_id: 'ev_unknown' });
    c.send({ type: 'session.update', session: PCMU_SESSION });
    await c.type('session.updated');
    expect(c.all('session.updated')).toHaveLength(1);
  });

  it('also serves the Azure GA path', async () => {
    const m = await start();
    const base = m.url.replace('/v1/realtime', '/openai/v1/realtime?model=my-deployment');
    const c = await connect(base);
    expect((await c.type('session.created')).session).toMatchObject({ type: 'realtime', model: 'my-deployment' });
  });
});

describe('sim model: Azure preview (beta shape)', () => {
  it('uses beta names and rejects session.type as unknown_parameter', async () => {
    const m = await start();
    const url = m.url.replace('/v1/realtime', '/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-realtime');
    const c = await connect(url);
    const created = await c.type('session.created');
    expect(created.session).toMatchObject({ input_audio_format: 'pcm16', output_audio_format: 'pcm16' });
    expect(created.session).not.toHaveProperty('type');

    c.send({ type: 'session.update', session: { type: 'realtime', input_audio_format: 'g711_ulaw' } });
    expect((await c.type('error')).error).toMatchObject({ code: 'unknown_parameter', param: 'session.type' });
    c.send({ type: 'session.update', session: { input_audio_format: 'g711_ulaw', output_audio_format: 'g711_ulaw' } });
    expect((await c.type('session.updated')).session).toMatchObject({ input_audio_format: 'g711_ulaw', output_audio_format: 'g711_ulaw' });
    expect(m.sessions[0]?.shape).toBe('beta');

    c.send({ type: 'response.create', response: { instructions: 'Greet with exactly: Hello from Azure.' } });
    const created2 = await c.type('response.created');
    const id = str(created2, 'response', 'id');
    await c.waitFor((e) => e.type === 'response.done' && str(e, 'response', 'id') === id);
    expect(c.all('response.output_audio.delta')).toHaveLength(0);
    expect(heard(c, id, 'response.audio.delta').text).toBe('Hello from Azure.');
    expect(c.all('response.audio.done')).toHaveLength(1);
    expect(c.all('response.audio_transcript.done')[0]).toMatchObject({ transcript: 'Hello from Azure.' });
  });
});

describe('sim model: VAD, transcripts and replies', () => {
  it('hears speech frames, commits the exact text, and answers with audio carrying the reply', async () => {
    const m = await start();
    const c = await gaSession(m);
    c.appendFrames(silent(100));
    const { responseId, done } = await say(c, 'I need a plumber.');

    expect(c.events.map((e) => e.type).slice(2, 6)).toEqual([
      'input_audio_buffer.speech_started',
      'input_audio_buffer.speech_stopped',
      'input_audio_buffer.committed',
      'conversation.item.input_audio_transcription.completed',
    ]);
    const started = await c.type('input_audio_buffer.speech_started');
    const stopped = await c.type('input_audio_buffer.speech_stopped');
    const committed = await c.type('input_audio_buffer.committed');
    const transcript = await c.type('conversation.item.input_audio_transcription.completed');
    // Audio time, not wall time: 100 ms of silence, then 25 speech frames (500 ms).
    expect(started).toMatchObject({ audio_start_ms: 100 });
    expect(stopped).toMatchObject({ audio_end_ms: 600, item_id: started.item_id });
    expect(committed).toMatchObject({ item_id: started.item_id });
    expect(transcript).toMatchObject({ item_id: started.item_id, transcript: 'I need a plumber.' });

    const reply = 'You said: I need a plumber. Anything else?';
    const { text, bytes } = heard(c, responseId);
    expect(text).toBe(reply);
    expect(bytes).toBe(reply.length * 60 * 8);
    const deltas = c.all('response.output_audio.delta');
    expect(deltas[0]).toMatchObject({ response_id: responseId, output_index: 0, content_index: 0 });
    expect(Buffer.from(str(deltas[0], 'delta'), 'base64').length).toBe(800);
    expect(await c.type('response.output_audio_transcript.done')).toMatchObject({ transcript: reply });
    expect(done.response).toMatchObject({
      status: 'completed',
      output: [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_audio', transcript: reply }] }],
      usage: { total_tokens: expect.any(Number) as number },
    });
    const order = c.events.map((e) => e.type).filter((t) => t.startsWith('response.') && !t.endsWith('.delta'));
    expect(order).toEqual([
      'response.created',
      'response.output_item.added',
      'response.output_audio.done',
      'response.output_audio_transcript.done',
      'response.output_item.done',
      'response.done',
    ]);
    const s = m.sessions[0];
    expect(s?.appendedBytes).toBe((5 + 25 + 30) * FRAME_BYTES);
    expect(s?.received.some((e) => e.type === 'input_audio_buffer.append')).toBe(false);
  });

  it('transcribes a caller without the marker as (unintelligible)', async () => {
    const m = await start();
    const c = await gaSession(m);
    const noise = new Uint8Array(FRAME_BYTES).fill(0x10); // loud, no marker
    c.appendFrames([...Array.from({ length: 10 }, () => noise), ...silent(600)]);
    expect(await c.type('conversation.item.input_audio_transcription.completed')).toMatchObject({ transcript: '(unintelligible)' });
  });

  it('barge-in: speech during an active response cancels it with turn_detected', async () => {
    const m = await start();
    const c = await gaSession(m);
    c.send({ type: 'response.create', response: { instructions: `exactly: ${'A long greeting that goes on. '.repeat(8)}` } });
    const created = await c.type('response.created');
    const id = str(created, 'response', 'id');
    await c.type('response.output_audio.delta');
    c.appendFrames(speechFrames('Stop, I have a question', { minFrames: 3 }));
    await c.type('input_audio_buffer.speech_started');
    const done = await c.waitFor((e) => e.type === 'response.done');
    expect(done.response).toMatchObject({ id, status: 'cancelled', status_details: { type: 'cancelled', reason: 'turn_detected' } });
    expect(c.all('response.output_audio.done')).toHaveLength(0);
    expect(heard(c, id).bytes).toBeLessThan(6000 * 8);
  });

  it('with interrupt_response false, speech does not cancel', async () => {
    const m = await start();
    const c = await gaSession(m);
    c.send({
      type: 'session.update',
      session: { type: 'realtime', audio: { input: { turn_detection: { type: 'server_vad', interrupt_response: false, create_response: false } } } },
    });
    await c.type('session.updated');
    c.send({ type: 'response.create', response: { instructions: 'exactly: Hello there, how can I help you today?' } });
    await c.type('response.output_audio.delta');
    c.appendFrames([...speechFrames('bye'), ...silent(600)]);
    await c.type('conversation.item.input_audio_transcription.completed');
    const done = await c.type('response.done');
    expect(done.response).toMatchObject({ status: 'completed' });
    expect(c.all('response.created')).toHaveLength(1);
  });

  it('one response at a time; response.cancel cancels with client_cancelled, or errors when idle', async () => {
    const m = await start();
    const c = await gaSession(m);
    c.send({ type: 'response.cancel', event_id: 'c0' });
    expect((await c.type('error')).error).toMatchObject({ code: 'response_cancel_not_active', event_id: 'c0' });
    c.send({ type: 'response.create' });
    const created = await c.type('response.created');
    c.send({ type: 'response.create', event_id: 'second' });
    await c.waitFor((e) => e.type === 'error' && (e.error as Ev).code === 'conversation_already_has_active_response');
    c.send({ type: 'response.cancel' });
    const done = await c.type('response.done');
    expect(done.response).toMatchObject({
      id: str(created, 'response', 'id'),
      status: 'cancelled',
      status_details: { type: 'cancelled', reason: 'client_cancelled' },
    });
    expect(c.all('response.created')).toHaveLength(1);
  });
});

describe('sim model: tools', () => {
  it('calls end_call when asked, then says goodbye after its output', async () => {
    const m = await start();
    const c = await gaSession(m, ['end_call', 'quote_price']);
    const { done } = await say(c, 'call tool end_call {"reason":"done"}');
    const args = await c.type('response.function_call_arguments.done');
    expect(args).toMatchObject({ name: 'end_call', arguments: '{"reason":"done"}' });
    const callId = str(args, 'call_id');
    expect(done.response).toMatchObject({
      status: 'completed',
      output: [{ type: 'function_call', call_id: callId, name: 'end_call', arguments: '{"reason":"done"}' }],
    });
    expect((await c.type('response.output_item.added')).item).toMatchObject({ type: 'function_call', call_id: callId });

    const from = c.events.length;
    c.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: callId, output: '{"ok":true}' } });
    await c.type('conversation.item.added', from);
    c.send({ type: 'response.create' });
    const transcript = await c.type('response.output_audio_transcript.done', from);
    expect(transcript).toMatchObject({ transcript: 'Goodbye, have a good day.' });
    expect(heard(c, str(transcript, 'response_id')).text).toBe('Goodbye, have a good day.');
  });

  it('answers a keyword tool with its output, and rejects an unknown call_id', async () => {
    const m = await start();
    const c = await gaSession(m, ['quote_price']);
    await say(c, 'How much does a drain cleaning cost?');
    const args = await c.type('response.function_call_arguments.done');
    expect(args).toMatchObject({ name: 'quote_price' });
    expect(JSON.parse(str(args, 'arguments'))).toMatchObject({ service: 'drain_cleaning' });

    const from = c.events.length;
    c.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: 'call_nope', output: '{}' } });
    expect((await c.type('error', from)).error).toMatchObject({ code: 'invalid_value', param: 'item.call_id' });
    const output = JSON.stringify({ ok: true, service: 'drain_cleaning', min: 120, max: 250, currency: 'USD', note: 'x'.repeat(150) });
    c.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: str(args, 'call_id'), output } });
    c.send({ type: 'response.create' });
    const transcript = await c.type('response.output_audio_transcript.done', from);
    expect(transcript).toMatchObject({ transcript: `Tool quote_price answered: ${output.slice(0, 119)}…` });
  });
});

describe('sim model: truncation', () => {
  it('truncates within the audio sent and refuses past it, recording the request', async () => {
    const m = await start({ mode: 'loadtest' });
    const c = await gaSession(m);
    c.send({ type: 'response.create', response: { instructions: 'exactly: Hello.' } });
    const added = await c.type('response.output_item.added');
    await c.type('response.done');
    const itemId = str(added, 'item', 'id');

    c.send({ type: 'conversation.item.truncate', item_id: itemId, content_index: 0, audio_end_ms: 1020 });
    expect((await c.type('error')).error).toMatchObject({
      code: 'invalid_value',
      message: 'Audio content of 1000ms is already shorter than 1020ms',
    });
    c.send({ type: 'conversation.item.truncate', item_id: itemId, content_index: 0, audio_end_ms: 640 });
    expect(await c.type('conversation.item.truncated')).toMatchObject({ item_id: itemId, content_index: 0, audio_end_ms: 640 });
    const from = c.events.length;
    c.send({ type: 'conversation.item.truncate', item_id: 'item_unknown', content_index: 0, audio_end_ms: 0 });
    expect((await c.type('error', from)).error).toMatchObject({ param: 'item_id' });

    const s = m.sessions[0];
    if (!s) throw new Error('no session');
    const truncs = s.received.filter((e) => e.type === 'conversation.item.truncate');
    expect(truncs.map((e) => e.audio_end_ms)).toEqual([1020, 640, 0]);
  });
});

describe('sim model: usage in response.done, as OpenAI bills it', () => {
  type Usage = {
    total_tokens: number;
    input_tokens: number;
    output_tokens: number;
    input_token_details: { text_tokens: number; audio_tokens: number; cached_tokens: number; cached_tokens_details: { text_tokens: number; audio_tokens: number } };
    output_token_details: { text_tokens: number; audio_tokens: number };
  };
  const usageOf = (done: Ev): Usage => (done.response as { usage: Usage }).usage;

  it('counts the whole conversation as input, caller audio at 10 tokens/s and assistant audio at 20/s, the previous prefix as cached', async () => {
    const m = await start();
    const c = await gaSession(m);
    const instructions = 'You answer the phone for a plumber. Be brief.';
    c.send({ type: 'session.update', session: { type: 'realtime', instructions } });
    await c.waitFor((e) => e.type === 'session.updated' && JSON.stringify(e).includes('plumber'));
    c.send({ type: 'response.create', response: { instructions: 'exactly: Hello there.' } });
    const first = await c.waitFor((e) => e.type === 'response.done');
    const u1 = usageOf(first);
    const systemText = Math.ceil(instructions.length / 4) + 4;
    // The greeting: nothing but instructions as input; 'Hello there.' spoken for 720 ms -> 15 audio tokens.
    expect(u1.input_token_details).toMatchObject({ text_tokens: systemText, audio_tokens: 0, cached_tokens: 0 });
    expect(u1.output_token_details).toEqual({ text_tokens: Math.ceil('Hello there.'.length / 4), audio_tokens: Math.ceil(720 / 50) });
    expect(u1.total_tokens).toBe(u1.input_tokens + u1.output_tokens);

    c.appendFrames(silent(100));
    const { done } = await say(c, 'I need a plumber.', c.events.length);
    const u2 = usageOf(done);
    // Input now holds the greeting (its text + 720 ms of assistant audio) and the caller's committed
    // audio: 100 ms silence + 500 ms speech + 500 ms of silence until VAD stopped = 1.1 s -> 11 tokens.
    expect(u2.input_token_details.audio_tokens).toBe(Math.ceil(720 / 50) + 11);
    expect(u2.input_token_details.text_tokens).toBe(systemText + (u1.output_token_details.text_tokens + 4) + 4);
    // What the first response read is now cached: a subset of the input, split by modality.
    expect(u2.input_token_details.cached_tokens_details).toEqual({ text_tokens: systemText, audio_tokens: 0, image_tokens: 0 });
    expect(u2.input_token_details.cached_tokens).toBe(systemText);
    expect(u2.total_tokens).toBe(u2.input_tokens + u2.output_tokens);

    const s = m.sessions[0]!;
    expect(s.usage).toEqual({
      responses: 2,
      inputText: u1.input_token_details.text_tokens + u2.input_token_details.text_tokens - systemText,
      inputAudio: u2.input_token_details.audio_tokens,
      inputTextCached: systemText,
      inputAudioCached: 0,
      outputText: u1.output_token_details.text_tokens + u2.output_token_details.text_tokens,
      outputAudio: u1.output_token_details.audio_tokens + u2.output_token_details.audio_tokens,
    });
  });
});

describe('sim model: auth and faults', () => {
  it('answers 401 to a wrong or missing key and accepts Bearer or api-key', async () => {
    const m = await start({ apiKey: 'sk-sim' });
    expect(await upgradeStatus(m.url)).toBe(401);
    expect(await upgradeStatus(m.url, { authorization: 'Bearer sk-wrong' })).toBe(401);
    await connect(m.url, { authorization: 'Bearer sk-sim' });
    await connect(m.url.replace('/v1/realtime', '/openai/v1/realtime'), { 'api-key': 'sk-sim' });
    expect(await upgradeStatus(m.url.replace('/v1/realtime', '/v2/nothing'), { authorization: 'Bearer sk-sim' })).toBe(404);
    await m.waitForSession((s) => s.path.startsWith('/openai/'));
    expect(m.sessions).toHaveLength(2);
  });

  it('answers every upgrade with an injected status', async () => {
    const m = await start({ faults: { upgradeStatus: 503 } });
    expect(await upgradeStatus(m.url)).toBe(503);
    expect(m.sessions).toHaveLength(0);
  });

  it('can hold a connection without ever upgrading', async () => {
    const m = await start({ faults: { acceptButNeverUpgrade: true } });
    const err = await new Promise<Error>((resolve) => {
      const ws = new WebSocket(m.url, { handshakeTimeout: 200 });
      ws.on('error', resolve);
    });
    expect(err.message).toMatch(/timed out/i);
  });

  it('drops each session after dropAfterMs', async () => {
    const m = await start({ faults: { dropAfterMs: 50 } });
    const c = await connect(m.url);
    expect(await c.closed).toBe(1006);
    const s = await m.waitForSession((x) => x.closed);
    expect(s.closed).toBe(true);
  });
});

describe('sim model: lifecycle and load mode', () => {
  it('close() ends sockets, timers and the server', async () => {
    const tcp = (): number => process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
    const before = tcp();
    const m = await start();
    const c = await gaSession(m);
    c.send({ type: 'response.create' }); // realistic: a 300 ms thinking timer is now pending
    await c.type('response.created');
    expect(m.stats().timers).toBe(1);
    await m.close();
    model = undefined;
    expect(await c.closed).toBe(1006);
    expect(m.stats()).toEqual({ openSessions: 0, timers: 0, sockets: 0 });
    expect(m.sessions[0]?.closed).toBe(true);
    await expect(m.waitForSession((s) => s.id === 'never')).rejects.toThrow(/closed/);
    expect(tcp()).toBe(before);
  });

  it('deltaMs: replies in deltas of that much audio, as the real API often sends (tens of ms)', async () => {
    await expect(startSimModel({ deltaMs: 0 })).rejects.toThrow(/deltaMs/);
    const m = await start({ mode: 'loadtest', deltaMs: 20 });
    const c = await gaSession(m);
    c.send({ type: 'response.create', response: { instructions: 'exactly: Hello.' } });
    const created = await c.type('response.created');
    const id = str(created, 'response', 'id');
    await c.waitFor((e) => e.type === 'response.done' && str(e, 'response', 'id') === id);
    const sizes = c.all('response.output_audio.delta').map((d) => Buffer.from(str(d, 'delta'), 'base64').length);
    expect(sizes.length).toBeGreaterThan(5);
    expect(sizes.every((n) => n === 160)).toBe(true);
    expect(heard(c, id)).toEqual({ text: 'Hello.', bytes: sizes.length * 160 });
  });

  it('loadtest mode: 200 ms end of speech, 1 s replies, hooks see the audio both ways', async () => {
    let callerBytes = 0;
    const m = await start({
      mode: 'loadtest',
      hooks: {
        onCallerAudio: (bytes) => (callerBytes += bytes.length),
        beforeAudioDelta: (bytes) => {
          bytes[FRAME_BYTES * 4 + 100] = 0x42; // stamp a byte past the marker of frame 0
        },
      },
    });
    const c = await gaSession(m);
    // Appends need not be frame-aligned: send the utterance in 250-byte pieces.
    const all = Buffer.concat([...speechFrames('Is 10001 in your area?'), ...silent(240)]);
    for (let o = 0; o < all.length; o += 250) c.append(all.subarray(o, o + 250));
    const stopped = await c.type('input_audio_buffer.speech_stopped');
    expect(stopped).toMatchObject({ audio_end_ms: 500 });
    const created = await c.type('response.created');
    const id = str(created, 'response', 'id');
    await c.waitFor((e) => e.type === 'response.done' && str(e, 'response', 'id') === id);
    const deltas = c.all('response.output_audio.delta');
    expect(deltas).toHaveLength(10);
    for (const d of deltas) expect(Buffer.from(str(d, 'delta'), 'base64')[FRAME_BYTES * 4 + 100]).toBe(0x42);
    expect(heard(c, id)).toEqual({ text: 'You said: Is 10001 in your area. Anything else?', bytes: 8000 });
    expect(callerBytes).toBe(all.length);
    expect(m.sessions[0]?.appendCount).toBe(Math.ceil(all.length / 250));
  });
});

describe('sim model pacing options', () => {
  it('refuses a negative or fractional gap between deltas', async () => {
    await expect(startSimModel({ gapMs: -1 })).rejects.toThrow(/gapMs must be a whole number/);
    await expect(startSimModel({ gapMs: 2.5 })).rejects.toThrow(RangeError);
  });
});
