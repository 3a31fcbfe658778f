/**
 * What a simulated model is told (SimModelOptions: mode, faults to inject, Azure's quirks, hooks for
 * the bench) and what tests observe of each of its sessions (SimSession). sim-model.ts serves it.
 */
import type { Logger } from '../telemetry/index.js';
import type { SimMode } from './sim-model-script.js';
import type { SimUsageTotals } from './sim-usage.js';

export interface SimModelOptions {
  /** `realistic` (default) thinks ~300 ms and speaks ~60 ms per character; `loadtest` is cheap and fixed. */
  mode?: SimMode;
  host?: string;
  port?: number;
  /** When set, upgrades whose `Authorization: Bearer` / `api-key` (header or query) differ get HTTP 401. */
  apiKey?: string;
  log?: Logger;
  /** Serve `wss` with this key and certificate (PEM), as the real API does; plain `ws` when unset. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /**
   * Speak each reply in bursts: `audioMs` of audio at the mode's pace, then nothing for `pauseMs`,
   * until the item is done. The real model stalls like this mid-item; with a pause longer than the
   * burst, Twilio's buffer runs dry and every pending mark is echoed before more audio arrives.
   */
  bursts?: { audioMs: number; pauseMs: number };
  /**
   * Audio per `output_audio.delta`, in ms (default 100, a multiple of 20 keeps the reply's text
   * markers whole). The real API's deltas are often tens of ms; the gap between deltas is the
   * mode's either way.
   */
  deltaMs?: number;
  /**
   * Milliseconds between two deltas of a reply (default: the mode's, 10 realistic, 20 loadtest).
   * Shorter than `deltaMs` streams faster than playback, as the real model does at the start of a
   * response: Twilio's buffer then runs ahead of what the caller hears.
   */
  gapMs?: number;
  faults?: {
    /** Answer every upgrade with this HTTP status (e.g. 503, 401). */
    upgradeStatus?: number;
    /** Hold the TCP socket and never answer (connect-timeout tests). */
    acceptButNeverUpgrade?: boolean;
    /** Terminate each session's socket this long after it opens. */
    dropAfterMs?: number;
    /**
     * Refuse every session.update with this `error` (naming the client's event_id), as the real API
     * does for a bad voice, tool schema or instructions: no session.updated follows.
     */
    rejectSessionUpdate?: { code: string; message: string; param?: string };
    /**
     * The next `count` responses (across sessions, the greeting first) end with response.done status
     * `failed` and this status_details.error (default a server_error), with no audio.
     */
    failResponses?: { count: number; error?: { type: string; code: string | null; message: string } };
    /**
     * The first `sessions` sessions (default 1) fall silent once `afterResponses` responses are done
     * (0: right after session.updated),
     * leaving the socket open: `dead` stops reading it (no pongs, as a half-open TCP or a NAT drop),
     * `deaf` still answers pings but ignores every event and sends none (a wedged session).
     */
    stall?: { afterResponses: number; mode: 'dead' | 'deaf'; sessions?: number };
    /**
     * The session cap (60 minutes on the real API): this long after it opened, a session sends
     * `error` session_expired and closes with 1001 and the real API's reason.
     */
    maxSessionMs?: number;
  };
  /**
   * Azure behaviour: the transcription models (on Azure, deployment names) this endpoint has. A
   * session whose transcription model is not one of them gets
   * `conversation.item.input_audio_transcription.failed` for every caller turn instead of a
   * transcript, as Azure answers a model name that is not a deployment. Unset: any model works.
   */
  transcriptionModels?: readonly string[];
  /**
   * How `session.updated` spells a μ-law format the client asked for: `object` (GA,
   * `{type:'audio/pcmu'}`, the default), `token` (the legacy string `'g711_ulaw'` in the GA
   * `audio.*.format` field), or `token-object` (`{type:'g711_ulaw'}`).
   */
  mulawEcho?: 'object' | 'token' | 'token-object';
  hooks?: {
    /** Called with each appended audio chunk (raw μ-law bytes): the bench reads timestamps here. */
    onCallerAudio?(bytes: Uint8Array, session: SimSession): void;
    /** Called with each outgoing audio delta's raw bytes just before it is base64-encoded and sent. */
    beforeAudioDelta?(bytes: Uint8Array, session: SimSession): void;
  };
}

/** One model session (one WebSocket), as tests observe it. */
export interface SimSession {
  id: string;
  path: string;
  shape: 'ga' | 'beta';
  /** Every client event received, in order, WITHOUT audio payloads (append events are counted instead). */
  received: Array<{ type: string; [k: string]: unknown }>;
  appendedBytes: number;
  /** Number of `input_audio_buffer.append` events received. */
  appendCount: number;
  /** The configuration after session.update. */
  session: Record<string, unknown>;
  /** Every `error` event this session sent, in order: a clean call has none. */
  errors: Array<{ code: string; message: string; eventId: string | null }>;
  closed: boolean;
  /** The session cap (faults.maxSessionMs) ended this session. */
  expired?: boolean;
  /** Tokens reported in this session's response.done usage blocks, summed. */
  usage: SimUsageTotals;
}
