/**
 * The server events of the realtime model wire protocol, parsed into one tagged union: the slow
 * path (JSON.parse, then zod for the kinds the relay acts on). parse-model-event.ts puts the audio
 * delta fast path in front of it.
 */
import { z } from 'zod';
import { usageFromWire, UsageWire, type ResponseUsage } from './response-usage.js';

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
    .object({
      type: z.string().optional().nullable(),
      code: z.string().optional().nullable(),
      message: z.string().optional().nullable(),
    })
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
      return {
        type: 'caller_transcript_failed',
        itemId: r.data.item_id,
        code: e?.code ?? e?.type ?? 'unknown',
        message: e?.message ?? '',
      };
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
