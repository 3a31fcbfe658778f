/**
 * The realtime model wire protocol as pure functions: session.update in the GA and beta shapes, the
 * client events as ready-to-send JSON text, and server events parsed into one tagged union.
 * Sockets, retries and timing are left to realtime-connection.ts and the call bridge.
 */
import { isAscii } from 'node:buffer';
import { z } from 'zod';
import type { ToolDefinition } from '../tools/index.js';
import { usageFromWire, UsageWire, type ResponseUsage } from './response-usage.js';

/**
 * `ga`: OpenAI GA (and Azure /openai/v1). `beta`: Azure preview deployments only; OpenAI closes
 * beta-shape sessions with 4000 beta_api_shape_disabled (docs/wire-formats.md §5, §6).
 */
export type SessionShape = 'ga' | 'beta';

export interface SessionOptions {
  shape: SessionShape;
  /** GA only; beta (Azure preview) names the deployment in the URL instead. */
  model?: string;
  instructions: string;
  voice: string;
  tools: ToolDefinition[];
  /**
   * Default gpt-4o-mini-transcribe. On Azure this must be a deployment name, else every caller turn
   * ends in `conversation.item.input_audio_transcription.failed`. null: no caller transcription.
   */
  transcriptionModel?: string | null;
  language?: string;
  vad?: { threshold?: number; prefixPaddingMs?: number; silenceDurationMs?: number };
}

/** The caller's transcript model when the tenant does not name one (docs/wire-formats.md §5). */
export const DEFAULT_TRANSCRIPTION_MODEL = 'gpt-4o-mini-transcribe';

/**
 * Server VAD cancels the active response itself when the caller starts speaking; a client
 * `response.cancel` after that only earns `response_cancel_not_active`.
 */
export const INTERRUPT_RESPONSE = true;

function turnDetection(vad: SessionOptions['vad']): Record<string, unknown> {
  return {
    type: 'server_vad',
    threshold: vad?.threshold ?? 0.5,
    prefix_padding_ms: vad?.prefixPaddingMs ?? 300,
    silence_duration_ms: vad?.silenceDurationMs ?? 500,
    // The model answers on its own when the caller stops, and VAD cancels the response on barge-in.
    create_response: true,
    interrupt_response: INTERRUPT_RESPONSE,
  };
}

function transcription(o: SessionOptions): Record<string, unknown> | null {
  if (o.transcriptionModel === null) return null;
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

/**
 * `response.create`, optionally with per-response instructions (e.g. the greeting) and a client
 * `event_id` (an `error` rejecting it names that id).
 */
export function responseCreate(o: { instructions?: string | undefined; eventId?: string } = {}): string {
  const ev: Record<string, unknown> = { type: 'response.create' };
  if (o.eventId !== undefined) ev.event_id = o.eventId;
  if (o.instructions !== undefined) ev.response = { instructions: o.instructions };
  return JSON.stringify(ev);
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

/**
 * An earlier function call re-created in a new session (a moved call), so the model knows the tool
 * ran; its `function_call_output` follows with the same call_id. GA and beta share this shape.
 */
export function functionCallItem(callId: string, name: string, args: string): string {
  return JSON.stringify({
    type: 'conversation.item.create',
    item: { type: 'function_call', call_id: callId, name, arguments: args },
  });
}

/** A user text message (e.g. "Greet the caller."), as `conversation.item.create`. */
export function userText(text: string): string {
  return JSON.stringify({
    type: 'conversation.item.create',
    item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] },
  });
}

/**
 * An earlier assistant turn replayed as text into a new session (after a reconnect): GA names the
 * content part `output_text`, the beta shape `text`. Text items cannot be truncated, which is fine:
 * only what the caller heard is replayed.
 */
export function assistantText(text: string, shape: SessionShape): string {
  return JSON.stringify({
    type: 'conversation.item.create',
    item: { type: 'message', role: 'assistant', content: [{ type: shape === 'ga' ? 'output_text' : 'text', text }] },
  });
}

// ---------------------------------------------------------------------------------------------
// Server events

/** Server events the relay acts on. Parsing never throws; new upstream events become `ignored`. */
export type ModelEvent =
  | { type: 'session.created' | 'session.updated'; audioFormatOk: boolean }
  | { type: 'speech_started'; audioStartMs: number; itemId: string }
  | { type: 'speech_stopped'; audioEndMs: number; itemId: string }
  | { type: 'audio_delta'; responseId: string; itemId: string; contentIndex: number; delta: string }
  | { type: 'audio_done'; responseId: string; itemId: string }
  | { type: 'assistant_transcript'; responseId: string; itemId: string; transcript: string }
  | { type: 'caller_transcript'; itemId: string; transcript: string }
  /** The caller's words could not be transcribed (on Azure: a transcription model that is not a deployment). */
  | { type: 'caller_transcript_failed'; itemId: string; code: string; message: string }
  | { type: 'response_created'; responseId: string }
  | { type: 'function_call'; responseId: string; callId: string; name: string; arguments: string }
  | { type: 'response_done'; responseId: string; status: string; reason?: string; usage?: ResponseUsage }
  | { type: 'error'; code: string; message: string; eventId?: string }
  | { type: 'ignored'; eventType: string }
  | { type: 'invalid'; detail: string };

// What each error code means for the call: model-errors.ts (the one table).

// GA `format` is an object; accept a bare string too, as some gateways flatten it.
const AudioFormat = z
  .union([z.string(), z.object({ type: z.string() }).loose()])
  .optional()
  .nullable();

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
const AssistantTranscript = z.object({
  response_id: z.string(),
  item_id: z.string(),
  transcript: z.string(),
});
const CallerTranscript = z.object({ item_id: z.string(), transcript: z.string() });
const CallerTranscriptFailed = z.object({
  item_id: z.string(),
  error: z
    .object({ type: z.string().optional().nullable(), code: z.string().optional().nullable(), message: z.string().optional().nullable() })
    .loose()
    .optional()
    .nullable(),
});
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
      usage: UsageWire.optional().nullable().catch(undefined),
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

/**
 * The names μ-law goes by in a session echo: GA `{type:'audio/pcmu'}`, the beta/legacy token
 * `g711_ulaw` (which Azure's GA endpoint also accepts in `audio.*.format`, as a string or as the
 * object's `type`), whatever the case.
 */
const MULAW_FORMATS: ReadonlySet<string> = new Set(['audio/pcmu', 'g711_ulaw']);

function isMulaw(f: z.infer<typeof AudioFormat>): boolean {
  if (f === undefined || f === null) return false;
  return MULAW_FORMATS.has((typeof f === 'string' ? f : f.type).toLowerCase());
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
      // Each direction on its own: the GA field, or the beta field of the same direction.
      const input = isMulaw(s.audio?.input?.format) || isMulaw(s.input_audio_format);
      const output = isMulaw(s.audio?.output?.format) || isMulaw(s.output_audio_format);
      return { type: t, audioFormatOk: input && output };
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
    case 'conversation.item.input_audio_transcription.failed': {
      const r = CallerTranscriptFailed.safeParse(obj);
      if (!r.success) return invalid(t, r.error);
      const e = r.data.error;
      return { type: 'caller_transcript_failed', itemId: r.data.item_id, code: e?.code ?? e?.type ?? 'unknown', message: e?.message ?? '' };
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
      if (resp.usage) ev.usage = usageFromWire(resp.usage);
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
// Deltas are most of the model's messages and can be tens of KB. The fast path walks the flat
// object the server sends with a few string searches: type first, ASCII only, no backslash
// anywhere (so every string ends at the next quote), no whitespace between tokens, scalar values
// only. Anything else (nesting, escapes, spaces, odd numbers) falls back to JSON.parse + zod, so the
// fast path returns what the slow path would, duplicate keys included (last wins). The one
// difference: a raw control character inside the delta string, which JSON forbids, is not looked
// for (it would cost a scan of the payload and no server sends one).
//
// Measured: a native call per Buffer.indexOf, and V8's multi-character String#indexOf, cost more
// than the search itself; so the Buffer is decoded once (latin1 equals UTF-8 for ASCII and is the
// cheapest decode) and walked with single-character searches.

const GA_DELTA_HEAD = '{"type":"response.output_audio.delta"';
const BETA_DELTA_HEAD = '{"type":"response.audio.delta"';
const GA_DELTA_HEAD_B = Buffer.from(GA_DELTA_HEAD, 'latin1');
const BETA_DELTA_HEAD_B = Buffer.from(BETA_DELTA_HEAD, 'latin1');
const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const CLOSE_BRACE = 0x7d;
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

function startsWithBuf(buf: Buffer, head: Buffer): boolean {
  return buf.length > head.length && buf.compare(head, 0, head.length, 0, head.length) === 0;
}

/** A small non-negative JSON integer as JSON.parse reads it, or undefined to let zod judge. */
function intToken(tok: string): number | undefined {
  const len = tok.length;
  if (len === 0 || len > 9 || (len > 1 && tok.charCodeAt(0) === 0x30)) return undefined;
  let n = 0;
  for (let i = 0; i < len; i++) {
    const c = tok.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
    n = n * 10 + (c - 0x30);
  }
  return n;
}

/** `s` is known to start with a delta head of length `pos`. */
function fastDelta(s: string, pos: number): ModelEvent | undefined {
  if (s.indexOf('\\', pos) >= 0) return undefined;
  let responseId: string | undefined;
  let itemId: string | undefined;
  let contentIndex: number | undefined;
  let delta: string | undefined;
  // Each round: at `,` (another member follows) or `}` (done).
  for (let guard = 0; guard < 64; guard++) {
    const c = s.charCodeAt(pos);
    if (c === CLOSE_BRACE) {
      for (let i = pos + 1; i < s.length; i++) {
        const w = s.charCodeAt(i);
        if (w !== 0x20 && w !== 0x0a && w !== 0x0d && w !== 0x09) return undefined;
      }
      if (
        responseId === undefined ||
        itemId === undefined ||
        contentIndex === undefined ||
        delta === undefined
      ) {
        return undefined;
      }
      return { type: 'audio_delta', responseId, itemId, contentIndex, delta };
    }
    if (c !== COMMA || s.charCodeAt(pos + 1) !== QUOTE) return undefined;
    const keyEnd = s.indexOf('"', pos + 2);
    if (keyEnd < 0 || s.charCodeAt(keyEnd + 1) !== COLON) return undefined;
    const key = s.slice(pos + 2, keyEnd);
    const v = keyEnd + 2;
    if (s.charCodeAt(v) === QUOTE) {
      const valEnd = s.indexOf('"', v + 1);
      if (valEnd < 0) return undefined;
      if (key === 'delta') delta = s.slice(v + 1, valEnd);
      else if (key === 'item_id') itemId = s.slice(v + 1, valEnd);
      else if (key === 'response_id') responseId = s.slice(v + 1, valEnd);
      else if (key === 'content_index' || key === 'type') return undefined; // zod or a second type decides
      pos = valEnd + 1;
    } else {
      // A scalar (number, true, false, null) runs to the next `,` or `}`; it is short, so walk it.
      let tokEnd = v;
      const limit = Math.min(s.length, v + 32);
      while (tokEnd < limit && s.charCodeAt(tokEnd) !== COMMA && s.charCodeAt(tokEnd) !== CLOSE_BRACE)
        tokEnd++;
      if (tokEnd === limit) return undefined;
      const tok = s.slice(v, tokEnd);
      if (key === 'content_index') {
        contentIndex = intToken(tok);
        if (contentIndex === undefined) return undefined;
      } else if (key === 'response_id' || key === 'item_id' || key === 'delta' || key === 'type') {
        return undefined;
      } else if (
        tok !== 'true' &&
        tok !== 'false' &&
        tok !== 'null' &&
        intToken(tok) === undefined &&
        !JSON_NUMBER.test(tok)
      ) {
        return undefined;
      }
      pos = tokEnd;
    }
  }
  return undefined;
}

function fastDeltaBuffer(buf: Buffer): ModelEvent | undefined {
  const head = startsWithBuf(buf, GA_DELTA_HEAD_B)
    ? GA_DELTA_HEAD_B.length
    : startsWithBuf(buf, BETA_DELTA_HEAD_B)
      ? BETA_DELTA_HEAD_B.length
      : -1;
  if (head < 0 || !isAscii(buf)) return undefined;
  return fastDelta(buf.toString('latin1'), head);
}

function fastDeltaString(s: string): ModelEvent | undefined {
  const head = s.startsWith(GA_DELTA_HEAD)
    ? GA_DELTA_HEAD.length
    : s.startsWith(BETA_DELTA_HEAD)
      ? BETA_DELTA_HEAD.length
      : -1;
  // A string is already decoded: non-ASCII is harmless here.
  return head < 0 ? undefined : fastDelta(s, head);
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
    return {
      type: 'invalid',
      detail: `not a JSON object: ${Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v}`,
    };
  }
  return fromObject(v as Record<string, unknown>);
}

/**
 * Frequent events the relay never reads, recognised by their opening bytes so they skip JSON.parse:
 * the model sends a transcript delta beside every audio delta (GA and beta names).
 */
const SKIPPED = [
  'response.output_audio_transcript.delta',
  'response.audio_transcript.delta',
  'response.function_call_arguments.delta',
].map((t) => ({ type: t, head: Buffer.from(`{"type":"${t}"`) }));

function skippable(data: Buffer | string): string | undefined {
  for (const s of SKIPPED) {
    if (typeof data === 'string' ? data.startsWith(`{"type":"${s.type}"`) : startsWithBuf(data, s.head)) return s.type;
  }
  return undefined;
}

/** Parse one server event. Never throws: unknown events are `ignored`, broken ones `invalid`. */
export function parseModelEvent(data: Buffer | string): ModelEvent {
  const fast = typeof data === 'string' ? fastDeltaString(data) : fastDeltaBuffer(data);
  if (fast) return fast;
  const skipped = skippable(data);
  return skipped ? { type: 'ignored', eventType: skipped } : parseModelEventSlow(data);
}
