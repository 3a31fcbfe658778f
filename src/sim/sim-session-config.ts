/**
 * A simulated session's configuration as the real API treats it: the default session of each shape
 * (GA, Azure's preview beta), what a session.update may not set and how a patch merges, the event
 * names that differ between the shapes, turn detection, and the pacing of each mode.
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
