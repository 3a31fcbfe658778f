/**
 * The simulated realtime model: a real `ws` WebSocket server speaking the OpenAI Realtime GA protocol
 * (and Azure's preview beta shape) with energy VAD, barge-in, tool calls and μ-law replies whose
 * first frames carry the reply text. What to say lives in sim-model-script.ts; the relay is elsewhere.
 */
import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import type { Logger } from '../telemetry/index.js';
import {
  FRAME_BYTES,
  SPEECH_ENERGY_THRESHOLD,
  SpeechTextCollector,
  frameEnergy,
  speechFrames,
  tone,
} from '../../loadtest/lib/audio.js';
import { REALTIME_VOICES, toolParametersProblem } from '../model/session-rules.js';
import { UNINTELLIGIBLE, planReply, speechDurationMs, type SimMode, type SimReply, type SimTurn } from './sim-model-script.js';
import { SimUsageMeter, emptySimUsage, type SimUsageTotals } from './sim-usage.js';

export type { SimMode } from './sim-model-script.js';

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

export interface SimModel {
  /** ws://127.0.0.1:PORT/v1/realtime (wss:// with `tls`) */
  readonly url: string;
  readonly port: number;
  /** Upgrades that arrived over TLS (proves a client spoke wss, not ws). */
  readonly tlsUpgrades: number;
  /** Sessions in arrival order; beyond 1000, the oldest closed ones are forgotten (long load runs). */
  readonly sessions: readonly SimSession[];
  /** Resolves when a session satisfying `pred` exists (bounded by timeoutMs, rejects after). */
  waitForSession(pred?: (s: SimSession) => boolean, timeoutMs?: number): Promise<SimSession>;
  /** Resolves when session `s` has received an event matching pred. */
  waitForEvent(
    s: SimSession,
    pred: (e: SimSession['received'][number]) => boolean,
    timeoutMs?: number,
  ): Promise<SimSession['received'][number]>;
  /** Open sessions and pending timers: lets tests prove close() leaves nothing behind. */
  stats(): { openSessions: number; timers: number; sockets: number };
  /** Kill session `id`'s TCP connection with no close frame (a network drop). */
  dropSession(id: string): void;
  close(): Promise<void>;
}

type ClientEvent = { type: string; [k: string]: unknown };

const RETAINED_SESSIONS = 1000;
/** The real API's words when a session reaches its cap (error message and close reason). */
const SESSION_CAP_MESSAGE = 'Your session hit the maximum duration of 60 minutes.';
const DEFAULT_WAIT_MS = 5000;
/** Outgoing deltas are 100 ms of μ-law in both modes: 5 frames. */
const DELTA_BYTES = 800;
const REPLY_HZ = 440;
const MAX_REPLY_BYTES = 6000 * 8;

/**
 * Pacing. Realistic: 300 ms "thinking", then bursts 10 ms apart (faster than real time, as OpenAI
 * does), so the relay's buffering and barge-in truncation get exercised. Loadtest: the first delta at
 * once, then one per 20 ms: a 1 s reply takes 200 ms and costs one timer at a time per session.
 */
const PACING: Record<SimMode, { thinkMs: number; gapMs: number; maxSilenceMs: number }> = {
  realistic: { thinkMs: 300, gapMs: 10, maxSilenceMs: Infinity },
  loadtest: { thinkMs: 0, gapMs: 20, maxSilenceMs: 200 },
};

const NAMES = {
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

// The reply tone is the same for every response (a continuous 440 Hz sine from sample 0, exactly what
// speechFrames produces), so it is built once and chunks without a text marker are encoded once.
let replyTone: Uint8Array | undefined;
function replyToneBytes(): Uint8Array {
  return (replyTone ??= tone(MAX_REPLY_BYTES, REPLY_HZ, 0));
}
const toneChunkB64 = new Map<number, string>();
function cachedToneB64(offset: number, length: number): string {
  const key = offset * 65536 + length;
  let s = toneChunkB64.get(key);
  if (s === undefined) {
    const t = replyToneBytes();
    s = Buffer.from(t.buffer, t.byteOffset + offset, length).toString('base64');
    toneChunkB64.set(key, s);
  }
  return s;
}

/** Start a simulated realtime model on 127.0.0.1 (port 0 unless given). */
export async function startSimModel(o: SimModelOptions = {}): Promise<SimModel> {
  const model = new SimModelServer(o);
  await model.listen();
  return model;
}

class SimModelServer implements SimModel {
  readonly mode: SimMode;
  readonly opts: SimModelOptions;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly sockets = new Set<Socket>();
  readonly conns = new Set<SimConnection>();
  private readonly list: SimSession[] = [];
  private readonly waiters = new Set<{ check(): boolean; fail(err: Error): void }>();
  private readonly idPrefix = randomBytes(4).toString('hex');
  private idCounter = 0;
  private closing = false;
  port = 0;
  tlsUpgrades = 0;

  constructor(o: SimModelOptions) {
    this.opts = o;
    this.mode = o.mode ?? 'realistic';
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
    const notUpgrade = (_req: IncomingMessage, res: ServerResponse): void => {
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
      res.end('WebSocket upgrade required\n');
    };
    this.server = o.tls ? createTlsServer({ key: o.tls.key, cert: o.tls.cert }, notUpgrade) : createServer(notUpgrade);
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
  }

  get url(): string {
    return `${this.opts.tls ? 'wss' : 'ws'}://127.0.0.1:${this.port}/v1/realtime`;
  }

  get sessions(): readonly SimSession[] {
    return this.list;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private failuresLeft: number | undefined;
  private stalledSessions = 0;

  /** Whether a session that has finished its `afterResponses` responses must fall silent now. */
  takeStall(): 'dead' | 'deaf' | undefined {
    const f = this.opts.faults?.stall;
    if (!f || this.stalledSessions >= (f.sessions ?? 1)) return undefined;
    this.stalledSessions++;
    return f.mode;
  }

  /** The error of the next response that must fail (faults.failResponses), or undefined. */
  takeResponseFailure(): Record<string, unknown> | undefined {
    const f = this.opts.faults?.failResponses;
    if (!f) return undefined;
    this.failuresLeft ??= f.count;
    if (this.failuresLeft <= 0) return undefined;
    this.failuresLeft--;
    return f.error ?? { type: 'server_error', code: null, message: 'The server had an error while processing your request. Sorry about that!' };
  }

  newId(prefix: string): string {
    return `${prefix}_${this.idPrefix}${(this.idCounter++).toString(36)}`;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    if ((req.socket as { encrypted?: boolean }).encrypted === true) this.tlsUpgrades++;
    const faults = this.opts.faults;
    if (this.closing) return void socket.destroy();
    if (faults?.acceptButNeverUpgrade) return;
    if (faults?.upgradeStatus !== undefined) return reject(socket, faults.upgradeStatus, 'fault_injected', 'Injected fault');
    const url = new URL(req.url ?? '/', 'http://sim');
    const path = url.pathname.replace(/\/+$/, '');
    let shape: 'ga' | 'beta';
    if (path === '/v1/realtime' || path === '/openai/v1/realtime') shape = 'ga';
    else if (path === '/openai/realtime') shape = 'beta';
    else return reject(socket, 404, 'not_found', `No realtime endpoint at ${url.pathname}`);
    if (this.opts.apiKey !== undefined) {
      const auth = req.headers.authorization;
      const bearer = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
      const apiKeyHeader = req.headers['api-key'];
      const key = bearer ?? (typeof apiKeyHeader === 'string' ? apiKeyHeader : undefined) ?? url.searchParams.get('api-key');
      if (key !== this.opts.apiKey) {
        return reject(socket, 401, 'invalid_api_key', 'Incorrect API key provided.');
      }
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const model = url.searchParams.get('model') ?? url.searchParams.get('deployment') ?? 'gpt-realtime';
      const conn = new SimConnection(this, ws, url.pathname + url.search, shape, model);
      this.conns.add(conn);
      this.list.push(conn.info);
      this.prune();
      this.opts.log?.debug({ session: conn.info.id, path: conn.info.path, shape }, 'sim model session opened');
      this.notify();
    });
  }

  private prune(): void {
    if (this.list.length <= RETAINED_SESSIONS) return;
    for (let i = 0; i < this.list.length && this.list.length > RETAINED_SESSIONS; ) {
      if (this.list[i]?.closed) this.list.splice(i, 1);
      else i++;
    }
  }

  connectionClosed(conn: SimConnection): void {
    this.conns.delete(conn);
    this.notify();
  }

  notify(): void {
    if (this.waiters.size === 0) return;
    for (const w of this.waiters) if (w.check()) this.waiters.delete(w);
  }

  private waitFor<T>(find: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const found = find();
    if (found !== undefined) return Promise.resolve(found);
    if (this.closing) return Promise.reject(new Error(`sim model closed while waiting for ${what}`));
    return new Promise<T>((resolve, rejectP) => {
      const waiter = {
        check: (): boolean => {
          const v = find();
          if (v === undefined) return false;
          clearTimeout(timer);
          resolve(v);
          return true;
        },
        fail: (err: Error): void => {
          clearTimeout(timer);
          rejectP(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        rejectP(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  waitForSession(pred: (s: SimSession) => boolean = () => true, timeoutMs = DEFAULT_WAIT_MS): Promise<SimSession> {
    return this.waitFor(() => this.list.find(pred), timeoutMs, 'a sim model session');
  }

  waitForEvent(
    s: SimSession,
    pred: (e: SimSession['received'][number]) => boolean,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<SimSession['received'][number]> {
    return this.waitFor(() => s.received.find(pred), timeoutMs, `an event on sim session ${s.id}`);
  }

  dropSession(id: string): void {
    for (const c of this.conns) if (c.info.id === id) c.terminate();
  }

  stats(): { openSessions: number; timers: number; sockets: number } {
    let timers = 0;
    for (const c of this.conns) timers += c.timerCount();
    return { openSessions: this.conns.size, timers, sockets: this.sockets.size };
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const c of [...this.conns]) c.terminate();
    for (const s of this.sockets) s.destroy();
    const err = new Error('sim model closed');
    for (const w of this.waiters) w.fail(err);
    this.waiters.clear();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function reject(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { type: 'invalid_request_error', code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

interface TurnDetection {
  on: boolean;
  silenceMs: number;
  createResponse: boolean;
  interrupt: boolean;
}

interface ActiveResponse {
  id: string;
  itemId: string;
  reply: SimReply;
  /** Speak replies: total audio bytes, bytes sent, the marker frames overlaid on the shared tone. */
  totalBytes: number;
  offset: number;
  markers: Uint8Array[];
  deltaHead: string;
  callId: string;
  /** Bytes sent since the last pause (burst mode). */
  burstBytes: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
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
function sessionProblem(patch: Record<string, unknown>, shape: 'ga' | 'beta'): { code: string; message: string; param: string } | undefined {
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

function mergeSession(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
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

function defaultSession(shape: 'ga' | 'beta', id: string, model: string): Record<string, unknown> {
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

const APPEND_TYPE = '"type":"input_audio_buffer.append"';
const AUDIO_KEY = '"audio":"';

class SimConnection {
  readonly info: SimSession;
  private readonly names: (typeof NAMES)['ga' | 'beta'];
  private readonly pacing: (typeof PACING)[SimMode];
  private td: TurnDetection = { on: true, silenceMs: 500, createResponse: true, interrupt: true };
  private eventCounter = 0;
  private readonly eventPrefix: string;

  // Input audio and VAD, timed by the audio itself (bytes / 8 = ms), never by the wall clock.
  private partial: Uint8Array | undefined;
  private vadBytes = 0;
  private bufferedBytes = 0;
  private speechRun = 0;
  private runStartMs = 0;
  private speaking = false;
  private silenceMs = 0;
  private lastSpeechEndMs = 0;
  private userItemId: string | undefined;
  private readonly collector = new SpeechTextCollector();
  /** faults.stall: silent from now on (socket left open). */
  private stalled = false;
  private responsesDone = 0;
  private readonly meter: SimUsageMeter;

  // Conversation.
  private lastItemId: string | null = null;
  private turn: SimTurn = { kind: 'none' };
  private readonly callNames = new Map<string, string>();
  /** Audio ms sent per assistant item: what conversation.item.truncate checks against. */
  private readonly itemSentMs = new Map<string, number>();
  private response: ActiveResponse | undefined;
  private respTimer: NodeJS.Timeout | undefined;
  private dropTimer: NodeJS.Timeout | undefined;
  private capTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly model: SimModelServer,
    private readonly ws: WebSocket,
    path: string,
    shape: 'ga' | 'beta',
    modelName: string,
  ) {
    const id = model.newId('sess');
    this.eventPrefix = `event_${id.slice(5)}_`;
    this.names = NAMES[shape];
    this.pacing = PACING[model.mode];
    this.info = {
      id,
      path,
      shape,
      received: [],
      appendedBytes: 0,
      appendCount: 0,
      session: defaultSession(shape, id, modelName),
      errors: [],
      closed: false,
      usage: emptySimUsage(),
    };
    this.meter = new SimUsageMeter(this.info.usage);
    this.applyTurnDetection();
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', (err) => model.opts.log?.debug({ session: id, err: err.message }, 'sim model socket error'));
    const drop = model.opts.faults?.dropAfterMs;
    if (drop !== undefined) {
      this.dropTimer = setTimeout(() => {
        this.dropTimer = undefined;
        this.ws.terminate();
      }, drop);
      this.dropTimer.unref();
    }
    const cap = model.opts.faults?.maxSessionMs;
    if (cap !== undefined) {
      this.capTimer = setTimeout(() => {
        this.capTimer = undefined;
        this.info.expired = true;
        this.error('session_expired', SESSION_CAP_MESSAGE, undefined);
        if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1001, SESSION_CAP_MESSAGE);
      }, cap);
      this.capTimer.unref();
    }
    this.send({ type: 'session.created', session: this.info.session });
  }

  private maybeStall(): void {
    if (this.stalled || this.info.closed) return;
    const mode = this.model.takeStall();
    if (!mode) return;
    this.stalled = true;
    this.clearRespTimer();
    this.response = undefined;
    // ws answers pings from its receiver: only a socket nobody reads stops the pongs.
    if (mode === 'dead') (this.ws as unknown as { _socket?: { pause(): void } })._socket?.pause();
  }

  timerCount(): number {
    return (this.respTimer ? 1 : 0) + (this.dropTimer ? 1 : 0) + (this.capTimer ? 1 : 0);
  }

  terminate(): void {
    this.ws.terminate();
    this.onClose();
  }

  private onClose(): void {
    if (this.info.closed) return;
    this.info.closed = true;
    this.clearRespTimer();
    if (this.dropTimer) clearTimeout(this.dropTimer);
    this.dropTimer = undefined;
    if (this.capTimer) clearTimeout(this.capTimer);
    this.capTimer = undefined;
    this.response = undefined;
    this.model.connectionClosed(this);
  }

  private nextEventId(): string {
    return this.eventPrefix + (this.eventCounter++).toString(36);
  }

  private send(ev: Record<string, unknown>): void {
    if (this.ws.readyState !== WebSocket.OPEN || this.stalled) return;
    const { type, ...rest } = ev;
    this.ws.send(JSON.stringify({ type, event_id: this.nextEventId(), ...rest }));
  }

  private error(code: string, message: string, clientEventId: unknown, param: string | null = null): void {
    const eventId = typeof clientEventId === 'string' ? clientEventId : null;
    this.info.errors.push({ code, message, eventId });
    this.send({
      type: 'error',
      error: {
        type: 'invalid_request_error',
        code,
        message,
        param,
        event_id: eventId,
      },
    });
  }

  // --- inbound ---------------------------------------------------------------------------------

  private onMessage(data: RawData, _isBinary: boolean): void {
    if (this.stalled) return;
    const text = Buffer.isBuffer(data)
      ? data.toString('utf8')
      : Array.isArray(data)
        ? Buffer.concat(data).toString('utf8')
        : Buffer.from(data).toString('utf8');
    // Hot path: appends are ~50/s per call. Base64 needs no JSON escaping, so slice it out by index.
    if (text.includes(APPEND_TYPE)) {
      const i = text.indexOf(AUDIO_KEY);
      const j = i < 0 ? -1 : text.indexOf('"', i + AUDIO_KEY.length);
      if (j > 0) return this.append(text.slice(i + AUDIO_KEY.length, j));
    }
    let ev: unknown;
    try {
      ev = JSON.parse(text);
    } catch {
      return this.error('invalid_json', 'The server could not parse the event as JSON.', undefined);
    }
    if (!isObject(ev) || typeof ev.type !== 'string') {
      return this.error('invalid_value', "Missing or invalid 'type' field.", isObject(ev) ? ev.event_id : undefined, 'type');
    }
    this.handle(ev as ClientEvent);
  }

  private handle(ev: ClientEvent): void {
    if (ev.type === 'input_audio_buffer.append') {
      if (typeof ev.audio !== 'string') return this.error('invalid_value', "Missing 'audio'.", ev.event_id, 'audio');
      return this.append(ev.audio);
    }
    this.info.received.push(ev);
    this.model.notify();
    switch (ev.type) {
      case 'session.update':
        return this.sessionUpdate(ev);
      case 'input_audio_buffer.commit':
        if (this.bufferedBytes === 0) {
          return this.error(
            'input_audio_buffer_commit_empty',
            'Error committing input audio buffer: buffer too small.',
            ev.event_id,
          );
        }
        return this.commit(this.userItemId ?? this.model.newId('item'));
      case 'input_audio_buffer.clear':
        this.resetInput();
        return this.send({ type: 'input_audio_buffer.cleared' });
      case 'conversation.item.create':
        return this.itemCreate(ev);
      case 'conversation.item.truncate':
        return this.truncate(ev);
      case 'response.create':
        return this.responseCreate(ev);
      case 'response.cancel':
        if (!this.response) {
          return this.error('response_cancel_not_active', 'Cancellation failed: no active response found.', ev.event_id);
        }
        return this.cancelResponse('client_cancelled');
      default:
        return this.error('unknown_event', `Invalid event type '${ev.type}'.`, ev.event_id, 'type');
    }
  }

  private sessionUpdate(ev: ClientEvent): void {
    const patch = ev.session;
    if (!isObject(patch)) return this.error('invalid_value', "Missing 'session'.", ev.event_id, 'session');
    if (this.info.shape === 'ga') {
      if (patch.type === undefined) {
        return this.error('missing_required_parameter', "Missing required parameter: 'session.type'.", ev.event_id, 'session.type');
      }
      if (patch.type !== 'realtime') {
        return this.error('invalid_value', "Only session.type 'realtime' is supported here.", ev.event_id, 'session.type');
      }
    } else if ('type' in patch) {
      return this.error('unknown_parameter', "Unknown parameter: 'session.type'.", ev.event_id, 'session.type');
    }
    const rejected = this.model.opts.faults?.rejectSessionUpdate;
    if (rejected) return this.error(rejected.code, rejected.message, ev.event_id, rejected.param ?? null);
    const problem = sessionProblem(patch, this.info.shape);
    if (problem) return this.error(problem.code, problem.message, ev.event_id, problem.param);
    this.info.session = mergeSession(this.info.session, patch);
    const instructions = this.info.session.instructions;
    this.meter.session(typeof instructions === 'string' ? instructions : '', this.info.session.tools);
    this.applyTurnDetection();
    this.send({ type: 'session.updated', session: this.echoedSession() });
    if (this.model.opts.faults?.stall?.afterResponses === 0) setImmediate(() => this.maybeStall());
  }

  /** The session as `session.updated` shows it: μ-law spelled as `mulawEcho` says. */
  private echoedSession(): Record<string, unknown> {
    const form = this.model.opts.mulawEcho ?? 'object';
    const s = this.info.session;
    if (form === 'object' || this.info.shape !== 'ga' || !isObject(s.audio)) return s;
    const respell = (dir: unknown): unknown => {
      if (!isObject(dir) || !isObject(dir.format) || dir.format.type !== 'audio/pcmu') return dir;
      return { ...dir, format: form === 'token' ? 'g711_ulaw' : { ...dir.format, type: 'g711_ulaw' } };
    };
    return { ...s, audio: { ...s.audio, input: respell(s.audio.input), output: respell(s.audio.output) } };
  }

  /** The transcription model the session names (GA `audio.input.transcription`, beta `input_audio_transcription`). */
  private transcriptionModel(): string | undefined {
    const s = this.info.session;
    const t = this.info.shape === 'ga' ? (isObject(s.audio) && isObject(s.audio.input) ? s.audio.input.transcription : undefined) : s.input_audio_transcription;
    return isObject(t) && typeof t.model === 'string' ? t.model : undefined;
  }

  private applyTurnDetection(): void {
    const s = this.info.session;
    const raw = this.info.shape === 'ga' ? (isObject(s.audio) && isObject(s.audio.input) ? s.audio.input.turn_detection : undefined) : s.turn_detection;
    if (raw === null || !isObject(raw)) {
      this.td = { on: raw !== null, silenceMs: 500, createResponse: true, interrupt: true };
    } else {
      const silence = typeof raw.silence_duration_ms === 'number' ? raw.silence_duration_ms : 500;
      this.td = {
        on: true,
        silenceMs: Math.min(silence, this.pacing.maxSilenceMs),
        createResponse: raw.create_response !== false,
        interrupt: raw.interrupt_response !== false,
      };
    }
  }

  private toolNames(override: unknown): Set<string> {
    const tools = Array.isArray(override) ? override : this.info.session.tools;
    const names = new Set<string>();
    if (Array.isArray(tools)) for (const t of tools) if (isObject(t) && typeof t.name === 'string') names.add(t.name);
    return names;
  }

  // --- input audio and VAD ------------------------------------------------------------------------

  private append(b64: string): void {
    const bytes = Buffer.from(b64, 'base64');
    this.info.appendedBytes += bytes.length;
    this.info.appendCount++;
    this.model.opts.hooks?.onCallerAudio?.(bytes, this.info);
    let buf: Uint8Array = bytes;
    if (this.partial) {
      buf = Buffer.concat([this.partial, bytes]);
      this.partial = undefined;
    }
    let off = 0;
    for (; off + FRAME_BYTES <= buf.length; off += FRAME_BYTES) this.frame(buf.subarray(off, off + FRAME_BYTES));
    if (off < buf.length) this.partial = buf.slice(off);
  }

  private frame(f: Uint8Array): void {
    const isSpeech = frameEnergy(f) >= SPEECH_ENERGY_THRESHOLD;
    const startMs = this.vadBytes / 8;
    this.vadBytes += f.length;
    this.bufferedBytes += f.length;
    if (isSpeech) this.collector.push(f);
    if (!this.td.on || this.info.closed) return;
    if (isSpeech) {
      this.silenceMs = 0;
      this.lastSpeechEndMs = this.vadBytes / 8;
      if (!this.speaking) {
        if (this.speechRun === 0) this.runStartMs = startMs;
        if (++this.speechRun >= 2) this.speechStarted();
      }
    } else if (this.speaking) {
      this.silenceMs += f.length / 8;
      if (this.silenceMs >= this.td.silenceMs) this.speechStopped();
    } else {
      this.speechRun = 0;
    }
  }

  private speechStarted(): void {
    this.speaking = true;
    const itemId = (this.userItemId = this.model.newId('item'));
    this.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: this.runStartMs, item_id: itemId });
    if (this.response && this.td.interrupt) this.cancelResponse('turn_detected');
  }

  private speechStopped(): void {
    const itemId = this.userItemId ?? this.model.newId('item');
    this.send({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: this.lastSpeechEndMs, item_id: itemId });
    this.commit(itemId);
    if (this.td.createResponse && !this.response) this.startResponse(undefined, undefined);
  }

  private commit(itemId: string): void {
    const transcript = this.collector.text() ?? UNINTELLIGIBLE;
    this.meter.callerAudio(this.bufferedBytes / 8);
    this.send({ type: 'input_audio_buffer.committed', previous_item_id: this.lastItemId, item_id: itemId });
    this.lastItemId = itemId;
    const models = this.model.opts.transcriptionModels;
    const model = this.transcriptionModel();
    if (models !== undefined && (model === undefined || !models.includes(model))) {
      // Azure's answer to a transcription model that is not a deployment (the model still hears the turn).
      this.send({
        type: 'conversation.item.input_audio_transcription.failed',
        item_id: itemId,
        content_index: 0,
        error: {
          type: 'invalid_request_error',
          code: 'DeploymentNotFound',
          message: `The API deployment ${JSON.stringify(model ?? '')} for this resource does not exist.`,
          param: null,
        },
      });
    } else {
      this.send({
        type: 'conversation.item.input_audio_transcription.completed',
        item_id: itemId,
        content_index: 0,
        transcript,
      });
    }
    this.turn = { kind: 'utterance', text: transcript };
    this.resetInput();
  }

  private resetInput(): void {
    this.collector.reset();
    this.bufferedBytes = 0;
    this.speaking = false;
    this.speechRun = 0;
    this.silenceMs = 0;
    this.userItemId = undefined;
  }

  // --- conversation items -------------------------------------------------------------------------

  private itemCreate(ev: ClientEvent): void {
    const item = ev.item;
    if (!isObject(item) || typeof item.type !== 'string') {
      return this.error('invalid_value', "Missing or invalid 'item'.", ev.event_id, 'item');
    }
    if (item.type === 'function_call_output') {
      if (typeof item.call_id !== 'string' || typeof item.output !== 'string') {
        return this.error('invalid_value', 'function_call_output needs string call_id and output.', ev.event_id, 'item');
      }
      const name = this.callNames.get(item.call_id);
      if (name === undefined) {
        return this.error('invalid_value', `No function call found with call_id '${item.call_id}'.`, ev.event_id, 'item.call_id');
      }
      this.turn = { kind: 'tool_output', name, output: item.output };
      this.meter.textItem(item.output);
    } else if (item.type === 'message' && item.role === 'user' && Array.isArray(item.content)) {
      const text = item.content
        .map((c: unknown) => (isObject(c) && typeof c.text === 'string' ? c.text : isObject(c) && typeof c.transcript === 'string' ? c.transcript : ''))
        .filter((t: string) => t !== '')
        .join(' ');
      if (text !== '') this.turn = { kind: 'utterance', text };
      this.meter.textItem(text);
    }
    const id = typeof item.id === 'string' ? item.id : this.model.newId('item');
    const full = { ...item, id, object: 'realtime.item', status: 'completed' };
    this.send({ type: this.names.itemAdded, previous_item_id: this.lastItemId, item: full });
    if (this.info.shape === 'ga') this.send({ type: 'conversation.item.done', previous_item_id: this.lastItemId, item: full });
    this.lastItemId = id;
  }

  private truncate(ev: ClientEvent): void {
    const { item_id: itemId, content_index: contentIndex, audio_end_ms: endMs } = ev;
    if (typeof itemId !== 'string') return this.error('invalid_value', "Missing 'item_id'.", ev.event_id, 'item_id');
    if (typeof endMs !== 'number' || !Number.isInteger(endMs) || endMs < 0) {
      return this.error('invalid_value', "'audio_end_ms' must be a non-negative integer.", ev.event_id, 'audio_end_ms');
    }
    if (contentIndex !== undefined && contentIndex !== 0) {
      return this.error('invalid_value', 'Only content_index 0 holds audio.', ev.event_id, 'content_index');
    }
    const sentMs = this.itemSentMs.get(itemId);
    if (sentMs === undefined) {
      return this.error('invalid_value', `Item with item_id '${itemId}' not found or has no audio.`, ev.event_id, 'item_id');
    }
    if (endMs > sentMs) {
      return this.error('invalid_value', `Audio content of ${sentMs}ms is already shorter than ${endMs}ms`, ev.event_id, 'audio_end_ms');
    }
    this.itemSentMs.set(itemId, endMs);
    this.meter.truncated(itemId, endMs);
    this.send({ type: 'conversation.item.truncated', item_id: itemId, content_index: 0, audio_end_ms: endMs });
  }

  // --- responses ----------------------------------------------------------------------------------

  private responseCreate(ev: ClientEvent): void {
    if (this.response) {
      return this.error(
        'conversation_already_has_active_response',
        `Conversation already has an active response in progress: ${this.response.id}. Wait until the response is finished before creating a new one.`,
        ev.event_id,
      );
    }
    const r = isObject(ev.response) ? ev.response : {};
    this.startResponse(typeof r.instructions === 'string' ? r.instructions : undefined, r.tools);
  }

  private startResponse(instructions: string | undefined, toolsOverride: unknown): void {
    const reply = planReply({ instructions, turn: this.turn, tools: this.toolNames(toolsOverride) });
    this.turn = { kind: 'none' };
    const id = this.model.newId('resp');
    const itemId = this.model.newId('item');
    const r: ActiveResponse = { id, itemId, reply, totalBytes: 0, offset: 0, markers: [], deltaHead: '', callId: '', burstBytes: 0 };
    this.response = r;
    this.send({
      type: 'response.created',
      response: { object: 'realtime.response', id, status: 'in_progress', status_details: null, output: [], usage: null },
    });
    const failure = this.model.takeResponseFailure();
    if (failure) {
      // What the real API sends when generation fails (server error, rate limit, quota): no output.
      return this.after(this.pacing.thinkMs, () => {
        if (this.response === r) this.done(r, 'failed', { type: 'failed', error: failure }, undefined);
      });
    }
    if (reply.kind === 'tool') {
      r.callId = this.model.newId('call');
      this.callNames.set(r.callId, reply.name);
      this.send({ type: 'response.output_item.added', response_id: id, output_index: 0, item: this.toolItem(r, 'in_progress') });
      return this.after(this.pacing.thinkMs, () => this.finishToolCall(r));
    }
    const text = reply.text;
    r.totalBytes = (speechDurationMs(text, this.model.mode) * 8);
    r.markers = speechFrames(text, { hz: REPLY_HZ, minFrames: 1 });
    r.deltaHead =
      `{"type":"${this.names.audioDelta}","response_id":${JSON.stringify(id)},"item_id":${JSON.stringify(itemId)},` +
      `"output_index":0,"content_index":0,"event_id":"`;
    this.itemSentMs.set(itemId, 0);
    this.send({ type: 'response.output_item.added', response_id: id, output_index: 0, item: this.audioItem(r, 'in_progress') });
    this.after(this.pacing.thinkMs, () => this.pump(r));
  }

  /** Runs `fn` after `ms`, or at once for 0 (loadtest answers without a timer). */
  private after(ms: number, fn: () => void): void {
    if (ms <= 0) return fn();
    this.respTimer = setTimeout(() => {
      this.respTimer = undefined;
      fn();
    }, ms);
    this.respTimer.unref();
  }

  private clearRespTimer(): void {
    if (this.respTimer) clearTimeout(this.respTimer);
    this.respTimer = undefined;
  }

  private pump(r: ActiveResponse): void {
    if (this.response !== r || this.info.closed) return;
    const length = Math.min(DELTA_BYTES, r.totalBytes - r.offset);
    const hooks = this.model.opts.hooks;
    const firstFrame = r.offset / FRAME_BYTES;
    let b64: string;
    if (hooks?.beforeAudioDelta === undefined && firstFrame >= r.markers.length) {
      b64 = cachedToneB64(r.offset, length);
    } else {
      // A copy: the hook may stamp the bytes (the bench does), and markers overlay the shared tone.
      const chunk = replyToneBytes().slice(r.offset, r.offset + length);
      for (let f = firstFrame; f < r.markers.length && (f - firstFrame) * FRAME_BYTES < length; f++) {
        const m = r.markers[f];
        if (m) chunk.set(m, (f - firstFrame) * FRAME_BYTES);
      }
      hooks?.beforeAudioDelta?.(chunk, this.info);
      b64 = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length).toString('base64');
    }
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(r.deltaHead + this.nextEventId() + '","delta":"' + b64 + '"}');
    }
    if (r.offset === 0 && r.reply.kind === 'speak') {
      this.send({
        type: this.names.transcriptDelta,
        response_id: r.id,
        item_id: r.itemId,
        output_index: 0,
        content_index: 0,
        delta: r.reply.text,
      });
    }
    r.offset += length;
    this.itemSentMs.set(r.itemId, r.offset / 8);
    if (r.offset >= r.totalBytes) return this.finishSpeech(r);
    const bursts = this.model.opts.bursts;
    let gapMs = this.pacing.gapMs;
    if (bursts && (r.burstBytes += length) >= bursts.audioMs * 8) {
      r.burstBytes = 0;
      gapMs = bursts.pauseMs;
    }
    this.after(gapMs, () => this.pump(r));
  }

  private audioItem(r: ActiveResponse, status: 'in_progress' | 'completed' | 'incomplete'): Record<string, unknown> {
    const transcript = r.reply.kind === 'speak' ? r.reply.text : '';
    return {
      id: r.itemId,
      object: 'realtime.item',
      type: 'message',
      role: 'assistant',
      status,
      content: status === 'in_progress' ? [] : [{ type: this.names.audioPart, transcript }],
    };
  }

  private toolItem(r: ActiveResponse, status: 'in_progress' | 'completed' | 'incomplete'): Record<string, unknown> {
    const reply = r.reply;
    const name = reply.kind === 'tool' ? reply.name : '';
    return {
      id: r.itemId,
      object: 'realtime.item',
      type: 'function_call',
      status,
      call_id: r.callId,
      name,
      arguments: status === 'in_progress' || reply.kind !== 'tool' ? '' : reply.arguments,
    };
  }

  private finishSpeech(r: ActiveResponse): void {
    const ids = { response_id: r.id, item_id: r.itemId, output_index: 0, content_index: 0 };
    const transcript = r.reply.kind === 'speak' ? r.reply.text : '';
    this.send({ type: this.names.audioDone, ...ids });
    this.send({ type: this.names.transcriptDone, ...ids, transcript });
    const item = this.audioItem(r, 'completed');
    this.send({ type: 'response.output_item.done', response_id: r.id, output_index: 0, item });
    this.done(r, 'completed', null, item);
  }

  private finishToolCall(r: ActiveResponse): void {
    if (this.response !== r || r.reply.kind !== 'tool') return;
    this.send({
      type: 'response.function_call_arguments.done',
      response_id: r.id,
      item_id: r.itemId,
      output_index: 0,
      call_id: r.callId,
      name: r.reply.name,
      arguments: r.reply.arguments,
    });
    const item = this.toolItem(r, 'completed');
    this.send({ type: 'response.output_item.done', response_id: r.id, output_index: 0, item });
    this.done(r, 'completed', null, item);
  }

  private cancelResponse(reason: 'turn_detected' | 'client_cancelled'): void {
    const r = this.response;
    if (!r) return;
    this.clearRespTimer();
    const item = r.reply.kind === 'tool' ? this.toolItem(r, 'incomplete') : this.audioItem(r, 'incomplete');
    this.done(r, 'cancelled', { type: 'cancelled', reason }, item);
  }

  private done(
    r: ActiveResponse,
    status: 'completed' | 'cancelled' | 'failed',
    details: Record<string, unknown> | null,
    item: Record<string, unknown> | undefined,
  ): void {
    this.response = undefined;
    this.lastItemId = r.itemId;
    const stallAfter = this.model.opts.faults?.stall?.afterResponses;
    if (stallAfter !== undefined && ++this.responsesDone >= stallAfter) setImmediate(() => this.maybeStall());
    const usage = this.meter.responseDone(r.itemId, {
      generatedMs: r.offset / 8,
      text: r.reply.kind === 'speak' ? r.reply.text : r.reply.name + r.reply.arguments,
      isTool: r.reply.kind === 'tool',
    });
    this.send({
      type: 'response.done',
      response: {
        object: 'realtime.response',
        id: r.id,
        status,
        status_details: details,
        output: item ? [item] : [],
        usage,
      },
    });
  }
}
