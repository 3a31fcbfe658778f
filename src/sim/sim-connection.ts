/**
 * One simulated model session on one WebSocket: client events validated as the real API does, turns
 * from the energy VAD (sim-vad.ts), conversation items and truncation, responses paced per mode, and
 * the injected faults that act on a session (drop, stall, session cap).
 *
 * Over 400 lines on purpose: it is one socket's state machine, and events, items and responses
 * read and write the same conversation state (the last item, the pending turn, the active
 * response); the parts without that state live beside it (sim-session-config.ts, sim-response.ts,
 * sim-vad.ts).
 */
import { WebSocket, type RawData } from 'ws';
import { speechFrames } from '../../loadtest/lib/audio.js';
import { UNINTELLIGIBLE, planReply, speechDurationMs, type SimMode, type SimTurn } from './sim-model-script.js';
import type { SimModelOptions, SimSession } from './sim-options.js';
import { DELTA_BYTES, REPLY_HZ, audioItem, replyAudioB64, toolItem, type ActiveResponse } from './sim-response.js';
import { defaultSession, isObject, mergeSession, NAMES, PACING, sessionProblem, type ClientEvent, type TurnDetection } from './sim-session-config.js';
import { SimUsageMeter, emptySimUsage } from './sim-usage.js';
import { SimVad } from './sim-vad.js';

/** What a session needs from the server that accepted it (sim-model.ts). */
export interface SimConnectionHost {
  readonly mode: SimMode;
  readonly opts: SimModelOptions;
  newId(prefix: string): string;
  /** Something observable changed: wake the tests' waiters. */
  notify(): void;
  takeStall(): 'dead' | 'deaf' | undefined;
  takeResponseFailure(): Record<string, unknown> | undefined;
  connectionClosed(conn: SimConnection): void;
}

/** The real API's words when a session reaches its cap (error message and close reason). */
const SESSION_CAP_MESSAGE = 'Your session hit the maximum duration of 60 minutes.';

const APPEND_TYPE = '"type":"input_audio_buffer.append"';
const AUDIO_KEY = '"audio":"';

export class SimConnection {
  readonly info: SimSession;
  private readonly names: (typeof NAMES)['ga' | 'beta'];
  private readonly pacing: (typeof PACING)[SimMode];
  private td: TurnDetection = { on: true, silenceMs: 500, createResponse: true, interrupt: true };
  private eventCounter = 0;
  private readonly eventPrefix: string;

  // Input audio and VAD, timed by the audio itself (bytes / 8 = ms), never by the wall clock.
  private readonly vad = new SimVad({
    started: (audioStartMs) => this.speechStarted(audioStartMs),
    stopped: (audioEndMs) => this.speechStopped(audioEndMs),
  });
  private userItemId: string | undefined;
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
    private readonly model: SimConnectionHost,
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
        if (this.vad.bufferedBytes === 0) {
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
    this.vad.push(bytes, this.td.on && !this.info.closed, this.td.silenceMs);
  }

  private speechStarted(audioStartMs: number): void {
    const itemId = (this.userItemId = this.model.newId('item'));
    this.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: audioStartMs, item_id: itemId });
    if (this.response && this.td.interrupt) this.cancelResponse('turn_detected');
  }

  private speechStopped(audioEndMs: number): void {
    const itemId = this.userItemId ?? this.model.newId('item');
    this.send({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: audioEndMs, item_id: itemId });
    this.commit(itemId);
    if (this.td.createResponse && !this.response) this.startResponse(undefined, undefined);
  }

  private commit(itemId: string): void {
    const transcript = this.vad.transcript() ?? UNINTELLIGIBLE;
    this.meter.callerAudio(this.vad.bufferedBytes / 8);
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
    this.vad.reset();
    this.userItemId = undefined;
  }

  // --- conversation items -------------------------------------------------------------------------

  private itemCreate(ev: ClientEvent): void {
    const item = ev.item;
    if (!isObject(item) || typeof item.type !== 'string') {
      return this.error('invalid_value', "Missing or invalid 'item'.", ev.event_id, 'item');
    }
    if (item.type === 'function_call') {
      // A client-created call (a moved call's earlier tool use): its output may follow, as on the real API.
      if (typeof item.call_id !== 'string' || typeof item.name !== 'string' || typeof item.arguments !== 'string') {
        return this.error('invalid_value', 'function_call needs string call_id, name and arguments.', ev.event_id, 'item');
      }
      this.callNames.set(item.call_id, item.name);
    } else if (item.type === 'function_call_output') {
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
      this.send({ type: 'response.output_item.added', response_id: id, output_index: 0, item: toolItem(r, 'in_progress') });
      return this.after(this.pacing.thinkMs, () => this.finishToolCall(r));
    }
    const text = reply.text;
    r.totalBytes = (speechDurationMs(text, this.model.mode) * 8);
    r.markers = speechFrames(text, { hz: REPLY_HZ, minFrames: 1 });
    r.deltaHead =
      `{"type":"${this.names.audioDelta}","response_id":${JSON.stringify(id)},"item_id":${JSON.stringify(itemId)},` +
      `"output_index":0,"content_index":0,"event_id":"`;
    this.itemSentMs.set(itemId, 0);
    this.send({ type: 'response.output_item.added', response_id: id, output_index: 0, item: audioItem(r, 'in_progress', this.names.audioPart) });
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
    const deltaMs = this.model.opts.deltaMs;
    const length = Math.min(deltaMs === undefined ? DELTA_BYTES : deltaMs * 8, r.totalBytes - r.offset);
    const b64 = replyAudioB64(r, length, this.model.opts.hooks, this.info);
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



  private finishSpeech(r: ActiveResponse): void {
    const ids = { response_id: r.id, item_id: r.itemId, output_index: 0, content_index: 0 };
    const transcript = r.reply.kind === 'speak' ? r.reply.text : '';
    this.send({ type: this.names.audioDone, ...ids });
    this.send({ type: this.names.transcriptDone, ...ids, transcript });
    const item = audioItem(r, 'completed', this.names.audioPart);
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
    const item = toolItem(r, 'completed');
    this.send({ type: 'response.output_item.done', response_id: r.id, output_index: 0, item });
    this.done(r, 'completed', null, item);
  }

  private cancelResponse(reason: 'turn_detected' | 'client_cancelled'): void {
    const r = this.response;
    if (!r) return;
    this.clearRespTimer();
    const item = r.reply.kind === 'tool' ? toolItem(r, 'incomplete') : audioItem(r, 'incomplete', this.names.audioPart);
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
