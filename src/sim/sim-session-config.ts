/**
 * A simulated session's configuration as the real API treats it: the default session of each shape
 * (GA, Azure's preview beta), what a session.update may not set and how a patch merges, the event
 * names that differ between the shapes, turn detection, transcription, the tools a response may
 * call, the session as session.updated echoes it, and the pacing of each mode.
 */
import { REALTIME_VOICES, toolParametersProblem } from '../model/session-rules.js';
import type { SimMode } from './sim-model-script.js';

export type ClientEvent = { type: string; [k: string]: unknown };

/**
 * Pacing. Realistic: 300 ms "thinking", then bursts 10 ms apart (faster than real time, as OpenAI
 * does), so the relay's buffering and barge-in truncation get exercised. Loadtest: the first delta at
 * once, then one per 20 ms: a 1 s reply takes 200 ms and costs one timer at a time per session.
 */
export const PACING: Record<SimMode, { thinkMs: number; gapMs: number; maxSilenceMs: number }> = {
  realistic: { thinkMs: 300, gapMs: 10, maxSilenceMs: Infinity },
  loadtest: { thinkMs: 0, gapMs: 20, maxSilenceMs: 200 },
};

export const NAMES = {
  ga: {
    audioDelta: 'response.output_audio.delta',
    audioDone: 'response.output_audio.done',
    transcriptDelta: 'response.output_audio_transcript.delta',
    transcriptDone: 'response.output_audio_transcript.done',
    itemAdded: 'conversation.item.added',
    audioPart: 'output_audio',
  },
  beta: {
    audioDelta: 'response.audio.delta',
    audioDone: 'response.audio.done',
    transcriptDelta: 'response.audio_transcript.delta',
    transcriptDone: 'response.audio_transcript.done',
    itemAdded: 'conversation.item.created',
    audioPart: 'audio',
  },
} as const;

export interface TurnDetection {
  on: boolean;
  silenceMs: number;
  createResponse: boolean;
  interrupt: boolean;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Keys whose values OpenAI replaces whole on session.update rather than merging field by field. */
const REPLACED_KEYS = new Set([
  'format',
  'turn_detection',
  'transcription',
  'noise_reduction',
  'input_audio_transcription',
  'input_audio_noise_reduction',
  'tools',
  'tool_choice',
  'prompt',
  'tracing',
  'include',
]);

/** What the real API refuses in a session.update the relay could send: a voice or a tool schema. */
export function sessionProblem(patch: Record<string, unknown>, shape: 'ga' | 'beta'): { code: string; message: string; param: string } | undefined {
  const audio = isObject(patch.audio) && isObject(patch.audio.output) ? patch.audio.output : undefined;
  const voice = shape === 'ga' ? audio?.voice : patch.voice;
  if (voice !== undefined && !(REALTIME_VOICES as readonly unknown[]).includes(voice)) {
    return {
      code: 'invalid_value',
      message: `Invalid value: '${JSON.stringify(voice)}'. Supported values are: ${REALTIME_VOICES.map((v) => `'${v}'`).join(', ')}.`,
      param: shape === 'ga' ? 'session.audio.output.voice' : 'session.voice',
    };
  }
  if (Array.isArray(patch.tools)) {
    for (const [i, t] of patch.tools.entries()) {
      const problem = isObject(t) ? toolParametersProblem(t.parameters ?? { type: 'object', properties: {} }) : 'not an object';
      if (problem) {
        const name = isObject(t) && typeof t.name === 'string' ? t.name : String(i);
        return { code: 'invalid_function_parameters', message: `Invalid schema for function '${name}': ${problem}`, param: `session.tools[${i}].parameters` };
      }
    }
  }
  return undefined;
}

export function mergeSession(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    const cur = out[k];
    out[k] = !REPLACED_KEYS.has(k) && isObject(v) && isObject(cur) ? mergeSession(cur, v) : v;
  }
  return out;
}

const SERVER_VAD_DEFAULTS = {
  type: 'server_vad',
  threshold: 0.5,
  prefix_padding_ms: 300,
  silence_duration_ms: 500,
  idle_timeout_ms: null,
  create_response: true,
  interrupt_response: true,
};

export function defaultSession(shape: 'ga' | 'beta', id: string, model: string): Record<string, unknown> {
  const expiresAt = Math.floor(Date.now() / 1000) + 3600;
  if (shape === 'beta') {
    return {
      id,
      object: 'realtime.session',
      model,
      expires_at: expiresAt,
      modalities: ['text', 'audio'],
      instructions: '',
      voice: 'alloy',
      input_audio_format: 'pcm16',
      output_audio_format: 'pcm16',
      input_audio_transcription: null,
      turn_detection: { ...SERVER_VAD_DEFAULTS, idle_timeout_ms: undefined },
      tools: [],
      tool_choice: 'auto',
      temperature: 0.8,
      max_response_output_tokens: 'inf',
    };
  }
  return {
    type: 'realtime',
    object: 'realtime.session',
    id,
    model,
    expires_at: expiresAt,
    output_modalities: ['audio'],
    instructions: '',
    audio: {
      input: {
        format: { type: 'audio/pcm', rate: 24000 },
        transcription: null,
        noise_reduction: null,
        turn_detection: { ...SERVER_VAD_DEFAULTS },
      },
      output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy', speed: 1 },
    },
    tools: [],
    tool_choice: 'auto',
    max_output_tokens: 'inf',
    tracing: null,
    prompt: null,
    include: null,
  };
}

/**
 * The turn detection a session asks for (GA `audio.input.turn_detection`, beta `turn_detection`):
 * null turns it off, absent keeps server VAD's defaults; the mode caps the silence it waits for.
 */
export function turnDetectionOf(session: Record<string, unknown>, shape: 'ga' | 'beta', maxSilenceMs: number): TurnDetection {
  const raw = shape === 'ga' ? (isObject(session.audio) && isObject(session.audio.input) ? session.audio.input.turn_detection : undefined) : session.turn_detection;
  if (raw === null || !isObject(raw)) return { on: raw !== null, silenceMs: 500, createResponse: true, interrupt: true };
  const silence = typeof raw.silence_duration_ms === 'number' ? raw.silence_duration_ms : 500;
  return {
    on: true,
    silenceMs: Math.min(silence, maxSilenceMs),
    createResponse: raw.create_response !== false,
    interrupt: raw.interrupt_response !== false,
  };
}

/** The transcription model a session names (GA `audio.input.transcription`, beta `input_audio_transcription`). */
function transcriptionModelOf(session: Record<string, unknown>, shape: 'ga' | 'beta'): string | undefined {
  const t = shape === 'ga' ? (isObject(session.audio) && isObject(session.audio.input) ? session.audio.input.transcription : undefined) : session.input_audio_transcription;
  return isObject(t) && typeof t.model === 'string' ? t.model : undefined;
}

/**
 * What a committed caller turn's transcription ends in: its transcript, or, when the endpoint lists
 * its transcription models (`deployments`, Azure) and the session's is not one of them, Azure's
 * answer to a model that is not a deployment (the model still hears the turn).
 */
export function transcriptionEvent(
  session: Record<string, unknown>,
  shape: 'ga' | 'beta',
  deployments: readonly string[] | undefined,
  itemId: string,
  transcript: string,
): Record<string, unknown> {
  const model = transcriptionModelOf(session, shape);
  if (deployments === undefined || (model !== undefined && deployments.includes(model))) {
    return { type: 'conversation.item.input_audio_transcription.completed', item_id: itemId, content_index: 0, transcript };
  }
  return {
    type: 'conversation.item.input_audio_transcription.failed',
    item_id: itemId,
    content_index: 0,
    error: {
      type: 'invalid_request_error',
      code: 'DeploymentNotFound',
      message: `The API deployment ${JSON.stringify(model ?? '')} for this resource does not exist.`,
      param: null,
    },
  };
}

/** The names of the tools a response may call: its own `tools` when it gives them, else the session's. */
export function toolNamesOf(session: Record<string, unknown>, override: unknown): Set<string> {
  const tools = Array.isArray(override) ? override : session.tools;
  const names = new Set<string>();
  if (Array.isArray(tools)) for (const t of tools) if (isObject(t) && typeof t.name === 'string') names.add(t.name);
  return names;
}

/**
 * The session as `session.updated` shows it: a GA session's μ-law formats spelled as `form` says
 * (the real API's `audio/pcmu` object, Azure's legacy `g711_ulaw` token or `{type:'g711_ulaw'}`).
 */
export function echoedSession(session: Record<string, unknown>, shape: 'ga' | 'beta', form: 'object' | 'token' | 'token-object'): Record<string, unknown> {
  if (form === 'object' || shape !== 'ga' || !isObject(session.audio)) return session;
  const respell = (dir: unknown): unknown => {
    if (!isObject(dir) || !isObject(dir.format) || dir.format.type !== 'audio/pcmu') return dir;
    return { ...dir, format: form === 'token' ? 'g711_ulaw' : { ...dir.format, type: 'g711_ulaw' } };
  };
  return { ...session, audio: { ...session.audio, input: respell(session.audio.input), output: respell(session.audio.output) } };
}
