import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  APPEND_PREFIX,
  functionCallOutput,
  parseModelEvent,
  parseModelEventSlow,
  responseCancel,
  responseCreate,
  sessionUpdate,
  totalTokens,
  truncateItem,
  userText,
  type ModelEvent,
  type ToolDefinition,
} from '../../src/model/index.js';

const tool: ToolDefinition = {
  type: 'function',
  name: 'book_appointment',
  description: 'Book a slot',
  parameters: { type: 'object', properties: { slot: { type: 'string' } }, required: ['slot'] },
};

/** Parse both as Buffer and as string, and check the slow path agrees. */
function parse(obj: unknown): ModelEvent {
  const text = typeof obj === 'string' ? obj : JSON.stringify(obj);
  const fromBuf = parseModelEvent(Buffer.from(text));
  expect(parseModelEvent(text)).toEqual(fromBuf);
  expect(parseModelEventSlow(Buffer.from(text))).toEqual(fromBuf);
  return fromBuf;
}

describe('sessionUpdate', () => {
  it('GA shape matches docs/wire-formats.md §5', () => {
    const msg: unknown = JSON.parse(
      sessionUpdate({
        shape: 'ga',
        model: 'gpt-realtime',
        instructions: 'You answer the phone for Acme.',
        voice: 'marin',
        tools: [tool],
        transcriptionModel: 'gpt-4o-mini-transcribe',
        language: 'en',
      }),
    );
    expect(msg).toEqual({
      type: 'session.update',
      session: {
        type: 'realtime',
        model: 'gpt-realtime',
        output_modalities: ['audio'],
        instructions: 'You answer the phone for Acme.',
        audio: {
          input: {
            format: { type: 'audio/pcmu' },
            turn_detection: {
              type: 'server_vad',
              threshold: 0.5,
              prefix_padding_ms: 300,
              silence_duration_ms: 500,
              create_response: true,
              interrupt_response: true,
            },
            transcription: { model: 'gpt-4o-mini-transcribe', language: 'en' },
          },
          output: { format: { type: 'audio/pcmu' }, voice: 'marin' },
        },
        tools: [tool],
        tool_choice: 'auto',
      },
    });
  });

  it('GA applies VAD overrides and leaves out what is unset', () => {
    const msg = JSON.parse(
      sessionUpdate({
        shape: 'ga',
        instructions: 'x',
        voice: 'alloy',
        tools: [],
        vad: { threshold: 0.7, silenceDurationMs: 800 },
      }),
    ) as { session: Record<string, unknown> & { audio: { input: Record<string, unknown> } } };
    expect(msg.session).not.toHaveProperty('model');
    expect(msg.session.audio.input.turn_detection).toMatchObject({
      threshold: 0.7,
      prefix_padding_ms: 300,
      silence_duration_ms: 800,
    });
    expect(msg.session.audio.input.transcription).toEqual({ model: 'gpt-4o-mini-transcribe' });
    expect(msg.session.tools).toEqual([]);
  });

  it('transcriptionModel null turns caller transcription off (GA and beta)', () => {
    const base = { instructions: 'i', voice: 'marin', tools: [], transcriptionModel: null };
    const ga = JSON.parse(sessionUpdate({ shape: 'ga', ...base })) as { session: { audio: { input: Record<string, unknown> } } };
    expect(ga.session.audio.input.transcription).toBeNull();
    const beta = JSON.parse(sessionUpdate({ shape: 'beta', ...base })) as { session: Record<string, unknown> };
    expect(beta.session.input_audio_transcription).toBeNull();
  });

  it('beta shape has top-level formats and no session.type', () => {
    const msg: unknown = JSON.parse(
      sessionUpdate({
        shape: 'beta',
        model: 'ignored-on-beta',
        instructions: 'Hi',
        voice: 'alloy',
        tools: [tool],
        transcriptionModel: 'whisper-deployment',
        vad: { prefixPaddingMs: 200 },
      }),
    );
    expect(msg).toEqual({
      type: 'session.update',
      session: {
        modalities: ['text', 'audio'],
        instructions: 'Hi',
        voice: 'alloy',
        input_audio_format: 'g711_ulaw',
        output_audio_format: 'g711_ulaw',
        input_audio_transcription: { model: 'whisper-deployment' },
        turn_detection: {
          type: 'server_vad',
          threshold: 0.5,
          prefix_padding_ms: 200,
          silence_duration_ms: 500,
          create_response: true,
          interrupt_response: true,
        },
        tools: [tool],
        tool_choice: 'auto',
      },
    });
  });
});

describe('client events', () => {
  it('append splices the payload into a valid envelope', () => {
    const b64 = randomBytes(160).toString('base64');
    expect(APPEND_PREFIX).toBe('{"type":"input_audio_buffer.append","audio":"');
    // What the bridge sends per frame (call-bridge.ts splices exactly this).
    expect(JSON.parse(APPEND_PREFIX + b64 + '"}')).toEqual({ type: 'input_audio_buffer.append', audio: b64 });
  });

  it('response.create, cancel, truncate, function output and user text', () => {
    expect(JSON.parse(responseCreate())).toEqual({ type: 'response.create' });
    expect(JSON.parse(responseCreate({ instructions: 'Say "hi"' }))).toEqual({
      type: 'response.create',
      response: { instructions: 'Say "hi"' },
    });
    expect(JSON.parse(responseCancel())).toEqual({ type: 'response.cancel' });
    expect(JSON.parse(responseCancel('resp_1'))).toEqual({ type: 'response.cancel', response_id: 'resp_1' });
    expect(JSON.parse(truncateItem('item_1', 0, 1840.7))).toEqual({
      type: 'conversation.item.truncate',
      item_id: 'item_1',
      content_index: 0,
      audio_end_ms: 1840,
    });
    expect(JSON.parse(truncateItem('item_1', 0, -5))).toMatchObject({ audio_end_ms: 0 });
    expect(JSON.parse(truncateItem('item_1', 0, Number.NaN))).toMatchObject({ audio_end_ms: 0 });
    expect(JSON.parse(functionCallOutput('call_9', '{"ok":true}'))).toEqual({
      type: 'conversation.item.create',
      item: { type: 'function_call_output', call_id: 'call_9', output: '{"ok":true}' },
    });
    expect(JSON.parse(userText('Greet the caller.'))).toEqual({
      type: 'conversation.item.create',
      item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Greet the caller.' }] },
    });
  });
});

describe('parseModelEvent', () => {
  it('session.created / updated check μ-law both ways (GA and beta)', () => {
    const ga = (i: string, o: string) => ({
      type: 'session.updated',
      event_id: 'ev1',
      session: {
        type: 'realtime',
        audio: { input: { format: { type: i } }, output: { format: { type: o }, voice: 'marin' } },
      },
    });
    expect(parse(ga('audio/pcmu', 'audio/pcmu'))).toEqual({ type: 'session.updated', audioFormatOk: true });
    expect(parse(ga('audio/pcmu', 'audio/pcm'))).toEqual({ type: 'session.updated', audioFormatOk: false });
    expect(parse(ga('audio/pcm', 'audio/pcmu'))).toEqual({ type: 'session.updated', audioFormatOk: false });
    expect(parse({ type: 'session.created', session: { type: 'realtime' } })).toEqual({
      type: 'session.created',
      audioFormatOk: false,
    });
    const beta = (i: string, o: string) => ({
      type: 'session.created',
      session: { modalities: ['text', 'audio'], input_audio_format: i, output_audio_format: o },
    });
    expect(parse(beta('g711_ulaw', 'g711_ulaw'))).toEqual({ type: 'session.created', audioFormatOk: true });
    expect(parse(beta('g711_ulaw', 'pcm16'))).toEqual({ type: 'session.created', audioFormatOk: false });
    expect(parse({ type: 'session.updated' })).toMatchObject({ type: 'invalid' });
  });

  it('accepts the forms Azure GA may echo for μ-law: the g711_ulaw token as a string or as type, any case', () => {
    const ga = (i: unknown, o: unknown) => ({ type: 'session.updated', session: { type: 'realtime', audio: { input: { format: i }, output: { format: o } } } });
    expect(parse(ga('g711_ulaw', 'g711_ulaw'))).toEqual({ type: 'session.updated', audioFormatOk: true });
    expect(parse(ga({ type: 'g711_ulaw' }, { type: 'audio/pcmu', rate: 8000 }))).toEqual({ type: 'session.updated', audioFormatOk: true });
    expect(parse(ga('audio/PCMU', 'G711_ULAW'))).toEqual({ type: 'session.updated', audioFormatOk: true });
    // A-law and PCM are not μ-law, whatever the spelling.
    expect(parse(ga('g711_alaw', 'g711_ulaw'))).toEqual({ type: 'session.updated', audioFormatOk: false });
    expect(parse(ga({ type: 'audio/pcma' }, 'g711_ulaw'))).toEqual({ type: 'session.updated', audioFormatOk: false });
    expect(parse(ga('pcm16', 'pcm16'))).toEqual({ type: 'session.updated', audioFormatOk: false });
  });

  it('input_audio_transcription.failed: the caller turn that could not be transcribed, with the error code', () => {
    expect(
      parse({
        type: 'conversation.item.input_audio_transcription.failed',
        item_id: 'item_f',
        content_index: 0,
        error: { type: 'invalid_request_error', code: 'DeploymentNotFound', message: 'no such deployment', param: null },
      }),
    ).toEqual({ type: 'caller_transcript_failed', itemId: 'item_f', code: 'DeploymentNotFound', message: 'no such deployment' });
    expect(parse({ type: 'conversation.item.input_audio_transcription.failed', item_id: 'item_g', error: { type: 'server_error' } })).toEqual({
      type: 'caller_transcript_failed',
      itemId: 'item_g',
      code: 'server_error',
      message: '',
    });
    expect(parse({ type: 'conversation.item.input_audio_transcription.failed' })).toMatchObject({ type: 'invalid' });
  });

  it('VAD events', () => {
    expect(
      parse({ type: 'input_audio_buffer.speech_started', audio_start_ms: 1200, item_id: 'item_a' }),
    ).toEqual({
      type: 'speech_started',
      audioStartMs: 1200,
      itemId: 'item_a',
    });
    expect(
      parse({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: 2400, item_id: 'item_a' }),
    ).toEqual({
      type: 'speech_stopped',
      audioEndMs: 2400,
      itemId: 'item_a',
    });
    expect(parse({ type: 'input_audio_buffer.speech_started', item_id: 'item_a' })).toMatchObject({
      type: 'invalid',
      detail: expect.stringContaining('audio_start_ms') as unknown,
    });
  });

  for (const name of ['response.output_audio', 'response.audio']) {
    it(`${name}.delta / .done / transcript`, () => {
      const delta = randomBytes(800).toString('base64');
      expect(
        parse({
          type: `${name}.delta`,
          event_id: 'e',
          response_id: 'resp_1',
          item_id: 'item_1',
          output_index: 0,
          content_index: 0,
          delta,
        }),
      ).toEqual({ type: 'audio_delta', responseId: 'resp_1', itemId: 'item_1', contentIndex: 0, delta });
      expect(
        parse({
          type: `${name}.done`,
          response_id: 'resp_1',
          item_id: 'item_1',
          output_index: 0,
          content_index: 0,
        }),
      ).toEqual({
        type: 'audio_done',
        responseId: 'resp_1',
        itemId: 'item_1',
      });
      expect(
        parse({
          type: `${name}_transcript.done`,
          response_id: 'resp_1',
          item_id: 'item_1',
          content_index: 0,
          transcript: 'Hello, how can I help?',
        }),
      ).toEqual({
        type: 'assistant_transcript',
        responseId: 'resp_1',
        itemId: 'item_1',
        transcript: 'Hello, how can I help?',
      });
      expect(parse({ type: `${name}_transcript.delta`, delta: 'Hel' })).toEqual({
        type: 'ignored',
        eventType: `${name}_transcript.delta`,
      });
    });
  }

  it('caller transcript, response.created, function call, other output items', () => {
    expect(
      parse({
        type: 'conversation.item.input_audio_transcription.completed',
        item_id: 'item_c',
        content_index: 0,
        transcript: 'my boiler broke',
      }),
    ).toEqual({ type: 'caller_transcript', itemId: 'item_c', transcript: 'my boiler broke' });
    expect(
      parse({ type: 'response.created', response: { id: 'resp_2', status: 'in_progress', output: [] } }),
    ).toEqual({
      type: 'response_created',
      responseId: 'resp_2',
    });
    expect(
      parse({
        type: 'response.output_item.done',
        response_id: 'resp_2',
        output_index: 0,
        item: {
          id: 'item_f',
          type: 'function_call',
          status: 'completed',
          call_id: 'call_1',
          name: 'book_appointment',
          arguments: '{"slot":"9am"}',
        },
      }),
    ).toEqual({
      type: 'function_call',
      responseId: 'resp_2',
      callId: 'call_1',
      name: 'book_appointment',
      arguments: '{"slot":"9am"}',
    });
    expect(
      parse({
        type: 'response.output_item.done',
        response_id: 'resp_2',
        output_index: 0,
        item: { id: 'i', type: 'message', role: 'assistant', content: [] },
      }),
    ).toEqual({ type: 'ignored', eventType: 'response.output_item.done' });
    expect(
      parse({
        type: 'response.output_item.done',
        response_id: 'resp_2',
        item: { type: 'function_call', call_id: 'call_1', name: 'x' },
      }),
    ).toMatchObject({ type: 'invalid' });
  });

  it('response.done with status, reason and usage', () => {
    expect(
      parse({
        type: 'response.done',
        response: {
          id: 'resp_3',
          status: 'cancelled',
          status_details: { type: 'cancelled', reason: 'turn_detected' },
          output: [],
          usage: {
            total_tokens: 30,
            input_tokens: 10,
            output_tokens: 20,
            input_token_details: { audio_tokens: 5 },
          },
        },
      }),
    ).toEqual({
      type: 'response_done',
      responseId: 'resp_3',
      status: 'cancelled',
      reason: 'turn_detected',
      // Partial details: the input tokens not listed as audio are text.
      usage: { inputText: 5, inputAudio: 5, inputTextCached: 0, inputAudioCached: 0, outputText: 20, outputAudio: 0 },
    });
    expect(
      parse({
        type: 'response.done',
        response: { id: 'r', status: 'completed', status_details: null, usage: null },
      }),
    ).toEqual({
      type: 'response_done',
      responseId: 'r',
      status: 'completed',
    });
    expect(
      parse({
        type: 'response.done',
        response: {
          id: 'r',
          status: 'failed',
          status_details: { type: 'failed', error: { type: 'server_error', code: 'rate_limit_exceeded' } },
        },
      }),
    ).toEqual({ type: 'response_done', responseId: 'r', status: 'failed', reason: 'rate_limit_exceeded' });
  });

  it('response.done usage from the GA wire shape: cached tokens are a subset of input, split by modality', () => {
    // A usage block as OpenAI sends it (community.openai.com "Help me understand the realtime usage block").
    const usage = {
      total_tokens: 821,
      input_tokens: 789,
      output_tokens: 32,
      input_token_details: {
        text_tokens: 313,
        audio_tokens: 476,
        image_tokens: 0,
        cached_tokens: 640,
        cached_tokens_details: { text_tokens: 256, audio_tokens: 384, image_tokens: 0 },
      },
      output_token_details: { text_tokens: 9, audio_tokens: 23 },
    };
    const ev = parse({ type: 'response.done', response: { id: 'r', status: 'completed', output: [], usage } });
    expect(ev).toMatchObject({
      type: 'response_done',
      usage: { inputText: 57, inputAudio: 92, inputTextCached: 256, inputAudioCached: 384, outputText: 9, outputAudio: 23 },
    });
    expect(ev.type === 'response_done' && ev.usage ? totalTokens(ev.usage) : 0).toBe(821);
    // A garbled usage block never costs the response.done itself.
    expect(parse({ type: 'response.done', response: { id: 'r', status: 'completed', usage: { input_tokens: 'many' } } })).toMatchObject({
      type: 'response_done',
      responseId: 'r',
      usage: { inputText: 0, outputText: 0 },
    });
  });

  it('error events, fatal for codes that no retry can fix', () => {
    expect(
      parse({
        type: 'error',
        event_id: 'ev_s',
        error: {
          type: 'invalid_request_error',
          code: 'conversation_already_has_active_response',
          message: 'busy',
          param: null,
          event_id: 'ev_c',
        },
      }),
    ).toEqual({
      type: 'error',
      code: 'conversation_already_has_active_response',
      message: 'busy',
      eventId: 'ev_c',
    });
    expect(
      parse({ type: 'error', error: { type: 'server_error', message: 'oops', code: null, event_id: null } }),
    ).toEqual({
      type: 'error',
      code: 'server_error',
      message: 'oops',
    });
    for (const code of [
      'invalid_api_key',
      'insufficient_quota',
      'session_expired',
      'account_deactivated',
      'billing_hard_limit_reached',
    ]) {
      expect(parse({ type: 'error', error: { type: 'invalid_request_error', code, message: 'm' } })).toEqual({
        type: 'error',
        code,
        message: 'm',
      });
    }
  });

  it('unknown events are ignored; broken frames are invalid; nothing throws', () => {
    expect(parse({ type: 'rate_limits.updated', rate_limits: [] })).toEqual({
      type: 'ignored',
      eventType: 'rate_limits.updated',
    });
    expect(parse({ type: 'conversation.item.added', item: {} })).toEqual({
      type: 'ignored',
      eventType: 'conversation.item.added',
    });
    expect(parse('{"type":"response.output_audio.delta","delta":')).toMatchObject({
      type: 'invalid',
      detail: expect.stringMatching(/^not JSON/) as unknown,
    });
    expect(parse('')).toMatchObject({ type: 'invalid' });
    expect(parse('\u00ff\u00fe')).toMatchObject({ type: 'invalid' });
    expect(parse('[1,2]')).toEqual({ type: 'invalid', detail: 'not a JSON object: array' });
    expect(parse('null')).toEqual({ type: 'invalid', detail: 'not a JSON object: null' });
    expect(parse('"str"')).toEqual({ type: 'invalid', detail: 'not a JSON object: string' });
    expect(parse('42')).toEqual({ type: 'invalid', detail: 'not a JSON object: number' });
    expect(parse({ no: 'type' })).toMatchObject({ type: 'invalid' });
    expect(parse({ type: 7 })).toMatchObject({ type: 'invalid' });
    expect(parse(Buffer.from([0xc3, 0x28, 0xa0, 0xa1]).toString('latin1'))).toMatchObject({
      type: 'invalid',
    });
    expect(parseModelEvent(Buffer.from([0x7b, 0xff, 0xfe]))).toMatchObject({ type: 'invalid' });
  });
});

describe('audio delta fast path agrees with JSON.parse', () => {
  // A small deterministic PRNG so a failure reproduces.
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

  function shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
    }
    return xs;
  }

  const ids = [
    'resp_CZ1',
    'item_9xQ',
    'a',
    '',
    'ünïcødé',
    'with "quote"',
    'back\\slash',
    'brace{}',
    'bracket]',
    'comma,',
    'colon":"',
    'slash/',
    'x'.repeat(200),
  ];
  const extras: [string, string][] = [
    ['"event_id"', '"event_ABC"'],
    ['"output_index"', '0'],
    ['"extra_num"', '1.5e3'],
    ['"extra_bool"', 'true'],
    ['"extra_null"', 'null'],
    ['"nested"', '{"item_id":"WRONG","delta":"WRONG"}'],
    ['"arr"', '["delta"]'],
    ['"fake"', '"\\"item_id\\":\\"WRONG\\""'],
    ['"str"', '"a,b}c:d"'],
    ['"item_id"', '"dup_last_wins"'],
    ['"neg"', '-0.5'],
    ['"bad_token"', 'tru'],
    ['"big"', '123456789012'],
  ];

  function build(): string {
    const type = pick(['response.output_audio.delta', 'response.audio.delta']);
    const b64 = randomBytes(1 + Math.floor(rand() * 2000)).toString('base64');
    const fields: [string, string][] = [
      ['"response_id"', JSON.stringify(rand() < 0.6 ? 'resp_CZ1' : pick(ids))],
      ['"item_id"', JSON.stringify(rand() < 0.6 ? 'item_9xQ' : pick(ids))],
      [
        '"content_index"',
        rand() < 0.6 ? '0' : pick(['0', '1', '12', '01', '-1', '2.5', '1e0', '10000000000', '"0"']),
      ],
      [
        '"delta"',
        rand() < 0.6
          ? JSON.stringify(b64)
          : pick([
              JSON.stringify(b64),
              JSON.stringify(b64).replace(/\//g, '\\/'),
              '"' + b64.slice(0, 8) + '"',
              '""',
            ]),
      ],
    ];
    for (const e of extras) if (rand() < 0.12) fields.push(e);
    const drop = rand() < 0.1 ? Math.floor(rand() * fields.length) : -1;
    const body = shuffle(fields.filter((_, i) => i !== drop));
    const sep = rand() < 0.1 ? ': ' : ':';
    const parts = body.map(([k, v]) => k + sep + v);
    const typeFirst = rand() < 0.85;
    const typePart = `"type"${sep}${JSON.stringify(type)}`;
    const all = typeFirst ? [typePart, ...parts] : shuffle([typePart, ...parts]);
    return '{' + all.join(',') + '}' + (rand() < 0.1 ? '\n' : '');
  }

  it('on 3000 generated messages (shuffled fields, escapes, spaces, extra, duplicate and missing fields)', () => {
    const original = JSON.parse;
    let parses = 0;
    JSON.parse = ((...a: Parameters<typeof JSON.parse>) => {
      parses++;
      return original(...a) as unknown;
    }) as typeof JSON.parse;
    let valid = 0;
    let fastHits = 0;
    try {
      for (let i = 0; i < 3000; i++) {
        const text = build();
        const slow = parseModelEventSlow(text);
        const before = parses;
        expect(parseModelEvent(Buffer.from(text)), text).toEqual(slow);
        if (parses === before) fastHits++;
        expect(parseModelEvent(text), text).toEqual(slow);
        if (slow.type === 'audio_delta') valid++;
      }
    } finally {
      JSON.parse = original;
    }
    // The generator must exercise both paths a good share of the time, or the test proves nothing.
    expect(valid).toBeGreaterThan(300);
    expect(fastHits).toBeGreaterThan(150);
  });

  it('takes the fast path for the server shape (delta returned without JSON.parse)', () => {
    const delta = randomBytes(800).toString('base64');
    const text = `{"type":"response.output_audio.delta","event_id":"event_1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"${delta}"}`;
    const original = JSON.parse;
    let calls = 0;
    JSON.parse = ((...a: Parameters<typeof JSON.parse>) => {
      calls++;
      return original(...a) as unknown;
    }) as typeof JSON.parse;
    try {
      expect(parseModelEvent(Buffer.from(text))).toEqual({
        type: 'audio_delta',
        responseId: 'resp_1',
        itemId: 'item_1',
        contentIndex: 0,
        delta,
      });
      expect(parseModelEvent(text)).toMatchObject({ type: 'audio_delta', delta });
    } finally {
      JSON.parse = original;
    }
    expect(calls).toBe(0);
  });
});
