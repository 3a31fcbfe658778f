/**
 * The realtime model wire protocol as pure functions: session.update in the GA and beta shapes, the
 * client events as ready-to-send JSON text, and server events parsed into one tagged union.
 * Sockets, retries and timing are left to realtime-connection.ts and the call bridge.
 */
import { z } from 'zod';
import type { ToolDefinition } from '../tools/index.js';

/**
 * `ga`: OpenAI GA (and Azure /openai/v1). `beta`: Azure preview deployments only; OpenAI closes
 * beta-shape sessions with 4000 beta_api_shape_disabled (PROTOCOLS.md §5, §6).
 */
export type SessionShape = 'ga' | 'beta';

export interface SessionOptions {
  shape: SessionShape;
  /** GA only; beta (Azure preview) names the deployment in the URL instead. */
  model?: string;
  instructions: string;
  voice: string;
  tools: ToolDefinition[];
  /** Default gpt-4o-mini-transcribe. On Azure this must be a deployment name. */
  transcriptionModel?: string;
  language?: string;
  vad?: { threshold?: number; prefixPaddingMs?: number; silenceDurationMs?: number };
}

/** The caller's transcript model when the tenant does not name one (PROTOCOLS.md §5). */
export const DEFAULT_TRANSCRIPTION_MODEL = 'gpt-4o-mini-transcribe';

function turnDetection(vad: SessionOptions['vad']): Record<string, unknown> {
  return {
    type: 'server_vad',
    threshold: vad?.threshold ?? 0.5,
    prefix_padding_ms: vad?.prefixPaddingMs ?? 300,
    silence_duration_ms: vad?.silenceDurationMs ?? 500,
    // The model answers on its own when the caller stops, and VAD cancels the response on barge-in.
    create_response: true,
    interrupt_response: true,
  };
}

function transcription(o: SessionOptions): Record<string, unknown> {
  const t: Record<string, unknown> = { model: o.transcriptionModel ?? DEFAULT_TRANSCRIPTION_MODEL };
  if (o.language !== undefined) t.language = o.language;
  return t;
}

/**
 * The `session.update` client event as JSON text. μ-law both ways so base64 payloads pass
 * between Twilio and the model untouched; the GA default (24 kHz PCM) would play as static.
 */
export function sessionUpdate(o: SessionOptions): string {
  let session: Record<string, unknown>;
  if (o.shape === 'ga') {
    session = { type: 'realtime' };
    if (o.model !== undefined) session.model = o.model;
    session.output_modalities = ['audio'];
    session.instructions = o.instructions;
    session.audio = {
      input: {
        format: { type: 'audio/pcmu' },
        turn_detection: turnDetection(o.vad),
        transcription: transcription(o),
      },
      output: { format: { type: 'audio/pcmu' }, voice: o.voice },
    };
  } else {
    // Beta rejects `session.type` as unknown_parameter.
    session = {
      modalities: ['text', 'audio'],
      instructions: o.instructions,
      voice: o.voice,
      input_audio_format: 'g711_ulaw',
      output_audio_format: 'g711_ulaw',
      input_audio_transcription: transcription(o),
      turn_detection: turnDetection(o.vad),
    };
  }
  session.tools = o.tools.map((t) => ({
    type: 'function',
    name: t.name,
    description: t.description,
    parameters: t.parameters,
  }));
  session.tool_choice = 'auto';
  return JSON.stringify({ type: 'session.update', session });
}

// ---------------------------------------------------------------------------------------------
// Client events

/**
 * The head of `input_audio_buffer.append`. Base64 needs no JSON escaping, so the bridge splices a
 * Twilio payload between this and `'"}'` instead of stringifying an object per frame.
 */
export const APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"';
/** What closes an APPEND_PREFIX envelope. */
export const APPEND_SUFFIX = '"}';

/** `input_audio_buffer.append` for one base64 μ-law payload (not re-validated: hot path). */
export function appendAudio(b64: string): string {
  return APPEND_PREFIX + b64 + APPEND_SUFFIX;
}

/** `response.create`, optionally with per-response instructions (e.g. the greeting). */
export function responseCreate(o: { instructions?: string } = {}): string {
  if (o.instructions === undefined) return '{"type":"response.create"}';
  return JSON.stringify({ type: 'response.create', response: { instructions: o.instructions } });
}

/** `response.cancel`; without an id the server cancels whatever response is active. */
export function responseCancel(responseId?: string): string {
  if (responseId === undefined) return '{"type":"response.cancel"}';
  return JSON.stringify({ type: 'response.cancel', response_id: responseId });
}

/**
 * `conversation.item.truncate`. `audio_end_ms` must be a non-negative integer no longer than the
 * audio generated ("Audio content of X ms is already shorter than Y ms"); the bridge clamps the top,
 * this clamps the bottom and floors.
 */
export function truncateItem(itemId: string, contentIndex: number, audioEndMs: number): string {
  const ms = Number.isFinite(audioEndMs) ? Math.max(0, Math.floor(audioEndMs)) : 0;
  return JSON.stringify({
    type: 'conversation.item.truncate',
    item_id: itemId,
    content_index: contentIndex,
    audio_end_ms: ms,
  });
}

/** A tool result for the model; `output` is a string (usually JSON text), never an object. */
export function functionCallOutput(callId: string, output: string): string {
  return JSON.stringify({
    type: 'conversation.item.create',
    item: { type: 'function_call_output', call_id: callId, output },
  });
}

/** A user text message (e.g. "Greet the caller."), as `conversation.item.create`. */
export function userText(text: string): string {
  return JSON.stringify({
    type: 'conversation.item.create',
    item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] },
  });
}

// ---------------------------------------------------------------------------------------------
// Server events

export interface ResponseUsage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
}

/** Server events the relay acts on. Parsing never throws; new upstream events become `ignored`. */
export type ModelEvent =
  | { type: 'session.created' | 'session.updated'; audioFormatOk: boolean }
  | { type: 'speech_started'; audioStartMs: number; itemId: string }
  | { type: 'speech_stopped'; audioEndMs: number; itemId: string }
  | { type: 'audio_delta'; responseId: string; itemId: string; contentIndex: number; delta: string }
  | { type: 'audio_done'; responseId: string; itemId: string }
  | { type: 'assistant_transcript'; responseId: string; itemId: string; transcript: string }
  | { type: 'caller_transcript'; itemId: string; transcript: string }
  | { type: 'response_created'; responseId: string }
  | { type: 'function_call'; responseId: string; callId: string; name: string; arguments: string }
  | { type: 'response_done'; responseId: string; status: string; reason?: string; usage?: ResponseUsage }
  | { type: 'error'; code: string; message: string; eventId?: string; fatal: boolean }
  | { type: 'ignored'; eventType: string }
  | { type: 'invalid'; detail: string };

/**
 * Error codes after which the session cannot go on and a reconnect would fail the same way
 * (PROTOCOLS.md §8: never retry these).
 */
export const FATAL_ERROR_CODES: ReadonlySet<string> = new Set([
  'invalid_api_key',
  'insufficient_quota',
  'session_expired',
  'account_deactivated',
  'billing_hard_limit_reached',
]);

// GA `format` is an object; accept a bare string too, as some gateways flatten it.
const AudioFormat = z.union([z.string(), z.object({ type: z.string() }).loose()]).optional().nullable();

const SessionEvent = z.object({
  session: z
    .object({
      // GA
      audio: z
        .object({
          input: z.object({ format: AudioFormat }).loose().optional().nullable(),
          output: z.object({ format: AudioFormat }).loose().optional().nullable(),
        })
        .loose()
        .optional()
        .nullable(),
      // beta
      input_audio_format: z.string().optional().nullable(),
      output_audio_format: z.string().optional().nullable(),
    })
    .loose(),
});

const SpeechStarted = z.object({ audio_start_ms: z.number(), item_id: z.string() });
const SpeechStopped = z.object({ audio_end_ms: z.number(), item_id: z.string() });
const AudioDelta = z.object({
  response_id: z.string(),
  item_id: z.string(),
  content_index: z.number().int().nonnegative().default(0),
  delta: z.string(),
});
const AudioDone = z.object({ response_id: z.string(), item_id: z.string() });
const AssistantTranscript = z.object({ response_id: z.string(), item_id: z.string(), transcript: z.string() });
const CallerTranscript = z.object({ item_id: z.string(), transcript: z.string() });
const ResponseCreated = z.object({ response: z.object({ id: z.string() }).loose() });
const OutputItemDone = z.object({
  response_id: z.string(),
  item: z.object({ type: z.string() }).loose(),
});
const FunctionCallItem = z.object({
  type: z.literal('function_call'),
  call_id: z.string(),
  name: z.string(),
  arguments: z.string(),
});
const ResponseDone = z.object({
  response: z
    .object({
      id: z.string(),
      status: z.string(),
      status_details: z
        .object({
          type: z.string().optional().nullable(),
          reason: z.string().optional().nullable(),
          error: z
            .object({ type: z.string().optional().nullable(), code: z.string().optional().nullable() })
            .loose()
            .optional()
            .nullable(),
        })
        .loose()
        .optional()
        .nullable(),
      usage: z
        .object({
          input_tokens: z.number().default(0),
          output_tokens: z.number().default(0),
          total_tokens: z.number().default(0),
        })
        .loose()
        .optional()
        .nullable(),
    })
    .loose(),
});
const ErrorEvent = z.object({
  error: z
    .object({
      type: z.string().optional().nullable(),
      code: z.string().optional().nullable(),
      message: z.string().optional().nullable(),
      event_id: z.string().optional().nullable(),
    })
    .loose(),
});

function formatType(f: z.infer<typeof AudioFormat>): string | undefined {
  if (f === undefined || f === null) return undefined;
  return typeof f === 'string' ? f : f.type;
}

function invalid(eventType: string, err: z.ZodError): ModelEvent {
  const first = err.issues[0];
  const where = first ? `${first.path.join('.') || '(root)'}: ${first.message}` : 'invalid';
  return { type: 'invalid', detail: `${eventType}: ${where}` };
}

/** Interpret one already-parsed server event object (the slow path). */
function fromObject(obj: Record<string, unknown>): ModelEvent {
  const t = obj.type;
  if (typeof t !== 'string') return { type: 'invalid', detail: 'event without a string "type"' };
  switch (t) {
    case 'session.created':
    case 'session.updated': {
      const r = SessionEvent.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      const s = r.data.session;
      const ga = formatType(s.audio?.input?.format) === 'audio/pcmu' && formatType(s.audio?.output?.format) === 'audio/pcmu';
      const beta = s.input_audio_format === 'g711_ulaw' && s.output_audio_format === 'g711_ulaw';
      return { type: t, audioFormatOk: ga || beta };
    }
    case 'input_audio_buffer.speech_started': {
      const r = SpeechStarted.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      return { type: 'speech_started', audioStartMs: r.data.audio_start_ms, itemId: r.data.item_id };
    }
    case 'input_audio_buffer.speech_stopped': {
      const r = SpeechStopped.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      return { type: 'speech_stopped', audioEndMs: r.data.audio_end_ms, itemId: r.data.item_id };
    }
    case 'response.output_audio.delta':
    case 'response.audio.delta': {
      const r = AudioDelta.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      const d = r.data;
      return {
        type: 'audio_delta',
        responseId: d.response_id,
        itemId: d.item_id,
        contentIndex: d.content_index,
        delta: d.delta,
      };
    }
    case 'response.output_audio.done':
    case 'response.audio.done': {
      const r = AudioDone.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      return { type: 'audio_done', responseId: r.data.response_id, itemId: r.data.item_id };
    }
    case 'response.output_audio_transcript.done':
    case 'response.audio_transcript.done': {
      const r = AssistantTranscript.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      return {
        type: 'assistant_transcript',
        responseId: r.data.response_id,
        itemId: r.data.item_id,
        transcript: r.data.transcript,
      };
    }
    case 'conversation.item.input_audio_transcription.completed': {
      const r = CallerTranscript.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      return { type: 'caller_transcript', itemId: r.data.item_id, transcript: r.data.transcript };
    }
    case 'response.created': {
      const r = ResponseCreated.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      return { type: 'response_created', responseId: r.data.response.id };
    }
    case 'response.output_item.done': {
      const r = OutputItemDone.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      // Messages and audio items end here too; only function calls concern the relay.
      if (r.data.item.type !== 'function_call') return { type: 'ignored', eventType: t };
      const f = FunctionCallItem.safeParse(r.data.item);
      if (!f.success) return invalid(t, f.error);
      return {
        type: 'function_call',
        responseId: r.data.response_id,
        callId: f.data.call_id,
        name: f.data.name,
        arguments: f.data.arguments,
      };
    }
    case 'response.done': {
      const r = ResponseDone.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      const resp = r.data.response;
      const sd = resp.status_details;
      const ev: ModelEvent = { type: 'response_done', responseId: resp.id, status: resp.status };
      const reason = sd?.reason ?? sd?.error?.code ?? sd?.error?.type ?? undefined;
      if (reason !== undefined) ev.reason = reason;
      if (resp.usage) {
        ev.usage = {
          inputTokens: resp.usage.input_tokens,
          outputTokens: resp.usage.output_tokens,
          totalTokens: resp.usage.total_tokens,
        };
      }
      return ev;
    }
    case 'error': {
      const r = ErrorEvent.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      const e = r.data.error;
      const code = e.code ?? e.type ?? 'unknown';
      const ev: ModelEvent = {
        type: 'error',
        code,
        message: e.message ?? '',
        fatal: FATAL_ERROR_CODES.has(code),
      };
      if (e.event_id !== undefined && e.event_id !== null) ev.eventId = e.event_id;
      return ev;
    }
    default:
      return { type: 'ignored', eventType: t };
  }
}

// ---------------------------------------------------------------------------------------------
// Fast path for audio deltas (bench/model-event.bench.ts has the numbers)
//
// Deltas are most of the model's messages and can be tens of KB; JSON.parse + zod of each costs
// several times a string scan. The scan accepts only the flat shape the server sends: type first,
// no nested object or array, string values without escapes, `"key":"` with no space. Anything else
// falls back to JSON.parse, so the fast path can only ever agree with the slow one. In valid JSON
// `"key":` cannot occur inside a string value (every quote in a string is escaped), so in a flat
// object a match is a top-level key.

const GA_DELTA_HEAD = Buffer.from('{"type":"response.output_audio.delta"');
const BETA_DELTA_HEAD = Buffer.from('{"type":"response.audio.delta"');
const GA_DELTA_HEAD_S = GA_DELTA_HEAD.toString('latin1');
const BETA_DELTA_HEAD_S = BETA_DELTA_HEAD.toString('latin1');
const K_RESPONSE_ID = '"response_id":"';
const K_ITEM_ID = '"item_id":"';
const K_CONTENT_INDEX = '"content_index":';
const K_DELTA = '"delta":"';
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;

function startsWithBuf(buf: Buffer, head: Buffer): boolean {
  return buf.length > head.length && buf.compare(head, 0, head.length, 0, head.length) === 0;
}

/** The string value starting at `from` (just past its opening quote), or undefined if escaped/unterminated. */
function bufString(buf: Buffer, from: number): string | undefined {
  const end = buf.indexOf(QUOTE, from);
  if (end < 0) return undefined;
  const bs = buf.indexOf(BACKSLASH, from);
  if (bs >= 0 && bs < end) return undefined;
  // utf8 like the slow path, so a non-ASCII id decodes the same either way.
  return buf.toString('utf8', from, end);
}

function bufInt(buf: Buffer, from: number): number | undefined {
  let n = 0;
  let i = from;
  for (; i < buf.length && i < from + 9; i++) {
    const c = buf[i] as number;
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  if (i === from || (buf[from] === 0x30 && i > from + 1)) return undefined;
  const next = buf[i];
  // `1.5`, `1e3` or a 10+ digit number: let JSON.parse and zod decide.
  if (next !== 0x2c && next !== CLOSE_BRACE && next !== 0x20) return undefined;
  return n;
}

function lastNonSpace(buf: Buffer): number | undefined {
  let i = buf.length - 1;
  while (i >= 0 && (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x0d || buf[i] === 0x09)) i--;
  return buf[i];
}

function fastDeltaBuffer(buf: Buffer): ModelEvent | undefined {
  const head = startsWithBuf(buf, GA_DELTA_HEAD)
    ? GA_DELTA_HEAD.length
    : startsWithBuf(buf, BETA_DELTA_HEAD)
      ? BETA_DELTA_HEAD.length
      : -1;
  if (head < 0) return undefined;
  if (buf[head] !== 0x2c && buf[head] !== CLOSE_BRACE) return undefined;
  if (lastNonSpace(buf) !== CLOSE_BRACE) return undefined;
  // Flat objects only: memchr over the buffer is far cheaper than parsing it.
  if (buf.indexOf(OPEN_BRACE, 1) >= 0 || buf.indexOf(OPEN_BRACKET, 1) >= 0) return undefined;

  const r = buf.indexOf(K_RESPONSE_ID, head, 'latin1');
  if (r < 0) return undefined;
  const responseId = bufString(buf, r + K_RESPONSE_ID.length);
  if (responseId === undefined) return undefined;
  const it = buf.indexOf(K_ITEM_ID, head, 'latin1');
  if (it < 0) return undefined;
  const itemId = bufString(buf, it + K_ITEM_ID.length);
  if (itemId === undefined) return undefined;
  const ci = buf.indexOf(K_CONTENT_INDEX, head, 'latin1');
  if (ci < 0) return undefined;
  const contentIndex = bufInt(buf, ci + K_CONTENT_INDEX.length);
  if (contentIndex === undefined) return undefined;
  const d = buf.indexOf(K_DELTA, head, 'latin1');
  if (d < 0) return undefined;
  const delta = bufString(buf, d + K_DELTA.length);
  if (delta === undefined) return undefined;
  return { type: 'audio_delta', responseId, itemId, contentIndex, delta };
}

function strString(s: string, from: number): string | undefined {
  const end = s.indexOf('"', from);
  if (end < 0) return undefined;
  const bs = s.indexOf('\\', from);
  if (bs >= 0 && bs < end) return undefined;
  return s.slice(from, end);
}

function strInt(s: string, from: number): number | undefined {
  let n = 0;
  let i = from;
  for (; i < s.length && i < from + 9; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  if (i === from || (s.charCodeAt(from) === 0x30 && i > from + 1)) return undefined;
  const next = s.charCodeAt(i);
  if (next !== 0x2c && next !== CLOSE_BRACE && next !== 0x20) return undefined;
  return n;
}

function fastDeltaString(s: string): ModelEvent | undefined {
  const head = s.startsWith(GA_DELTA_HEAD_S)
    ? GA_DELTA_HEAD_S.length
    : s.startsWith(BETA_DELTA_HEAD_S)
      ? BETA_DELTA_HEAD_S.length
      : -1;
  if (head < 0) return undefined;
  const after = s.charCodeAt(head);
  if (after !== 0x2c && after !== CLOSE_BRACE) return undefined;
  const trimmed = s.trimEnd();
  if (trimmed.charCodeAt(trimmed.length - 1) !== CLOSE_BRACE) return undefined;
  if (s.indexOf('{', 1) >= 0 || s.indexOf('[', 1) >= 0) return undefined;

  const r = s.indexOf(K_RESPONSE_ID, head);
  if (r < 0) return undefined;
  const responseId = strString(s, r + K_RESPONSE_ID.length);
  if (responseId === undefined) return undefined;
  const it = s.indexOf(K_ITEM_ID, head);
  if (it < 0) return undefined;
  const itemId = strString(s, it + K_ITEM_ID.length);
  if (itemId === undefined) return undefined;
  const ci = s.indexOf(K_CONTENT_INDEX, head);
  if (ci < 0) return undefined;
  const contentIndex = strInt(s, ci + K_CONTENT_INDEX.length);
  if (contentIndex === undefined) return undefined;
  const d = s.indexOf(K_DELTA, head);
  if (d < 0) return undefined;
  const delta = strString(s, d + K_DELTA.length);
  if (delta === undefined) return undefined;
  return { type: 'audio_delta', responseId, itemId, contentIndex, delta };
}

/** The slow path alone: JSON.parse, then zod for the event kinds we act on. Exported for the bench. */
export function parseModelEventSlow(data: Buffer | string): ModelEvent {
  let v: unknown;
  try {
    v = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch (err) {
    return { type: 'invalid', detail: `not JSON: ${err instanceof Error ? err.message : 'parse error'}` };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    return { type: 'invalid', detail: `not a JSON object: ${Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v}` };
  }
  return fromObject(v as Record<string, unknown>);
}

/** Parse one server event. Never throws: unknown events are `ignored`, broken ones `invalid`. */
export function parseModelEvent(data: Buffer | string): ModelEvent {
  const fast = typeof data === 'string' ? fastDeltaString(data) : fastDeltaBuffer(data);
  return fast ?? parseModelEventSlow(data);
}
