/**
 * The client side of the realtime model wire protocol, as pure functions: session.update in the GA
 * and beta shapes, and the client events as ready-to-send JSON text. Parsing what the model sends
 * is server-events.ts and parse-model-event.ts; sockets, retries and timing are left to
 * realtime-connection.ts and the call's model session (src/call/model-session.ts).
 */
/**
 * A function tool as sent to the model in session.update (GA and beta share this shape). The model's
 * wire shape, so it lives here; tools/ implements the tools.
 */
export interface ToolDefinition {
  type: 'function';
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

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
 * The head of `input_audio_buffer.append`. Base64 needs no JSON escaping, so the call's append
 * batcher (call/append-batcher.ts, the one place it is used) splices the audio between this and a
 * literal `'"}'` instead of stringifying an object (or calling a builder: an imported suffix
 * measured slower on the per-frame path).
 */
export const APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"';

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
 * audio generated ("Audio content of X ms is already shorter than Y ms"); PlaybackTracker
 * (src/call/playback.ts) clamps the top to what was sent,
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
    item: {
      type: 'message',
      role: 'assistant',
      content: [{ type: shape === 'ga' ? 'output_text' : 'text', text }],
    },
  });
}
