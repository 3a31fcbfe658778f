/**
 * One simulated model session on one WebSocket: the socket and the session's state, the input audio
 * and its turns from the energy VAD (sim-vad.ts), responses paced per mode, and the injected faults
 * that act on a session (drop, stall, session cap). The client events it serves are
 * sim-client-events.ts's; the parts without state live beside it (sim-session-config.ts,
 * sim-response.ts).
 */
import { WebSocket, type RawData } from 'ws';
import { speechFrames } from './portable/audio.js';
import { SimClientEvents, type SimSessionState } from './sim-client-events.js';
import { UNINTELLIGIBLE, planReply, speechDurationMs, type SimMode } from './sim-model-script.js';
import type { SimModelOptions, SimSession } from './sim-options.js';
import { DELTA_BYTES, REPLY_HZ, audioItem, replyAudioB64, toolItem, type ActiveResponse } from './sim-response.js';
import { defaultSession, isObject, NAMES, PACING, toolNamesOf, transcriptionEvent, turnDetectionOf, type ClientEvent } from './sim-session-config.js';
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
  private readonly s: SimSessionState;
  private readonly events: SimClientEvents;
  private readonly pacing: (typeof PACING)[SimMode];
  private eventCounter = 0;
  private readonly eventPrefix: string;
  // Input audio and VAD, timed by the audio itself (bytes / 8 = ms), never by the wall clock.
  private readonly vad = new SimVad({
    started: (audioStartMs) => this.speechStarted(audioStartMs),
    stopped: (audioEndMs) => this.speechStopped(audioEndMs),
  });
  /** faults.stall: silent from now on (socket left open). */
  private stalled = false;
  private responsesDone = 0;
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
    this.s = {
      info: this.info,
      names: NAMES[shape],
      maxSilenceMs: this.pacing.maxSilenceMs,
      meter: new SimUsageMeter(this.info.usage),
      td: turnDetectionOf(this.info.session, shape, this.pacing.maxSilenceMs),
      lastItemId: null,
      turn: { kind: 'none' },
      callNames: new Map(),
      itemSentMs: new Map(),
      response: undefined,
      userItemId: undefined,
    };
    this.events = new SimClientEvents(this.s, model.opts, {
      send: (ev) => this.send(ev),
      error: (code, message, clientEventId, param) => this.error(code, message, clientEventId, param),
      newId: (prefix) => model.newId(prefix),
      bufferedBytes: () => this.vad.bufferedBytes,
      commit: (itemId) => this.commit(itemId),
      resetInput: () => this.resetInput(),
      startResponse: (instructions, tools) => this.startResponse(instructions, tools),
      cancelResponse: (reason) => this.cancelResponse(reason),
      sessionUpdated: () => {
        if (model.opts.faults?.stall?.afterResponses === 0) setImmediate(() => this.maybeStall());
      },
    });
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
    this.s.response = undefined;
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
    this.s.response = undefined;
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
    if (ev.type === 'input_audio_buffer.append') {
      if (typeof ev.audio !== 'string') return this.error('invalid_value', "Missing 'audio'.", ev.event_id, 'audio');
      return this.append(ev.audio);
    }
    this.info.received.push(ev as ClientEvent);
    this.model.notify();
    this.events.handle(ev as ClientEvent);
  }

  // --- input audio and VAD ------------------------------------------------------------------------

  private append(b64: string): void {
    const bytes = Buffer.from(b64, 'base64');
    this.info.appendedBytes += bytes.length;
    this.info.appendCount++;
    this.model.opts.hooks?.onCallerAudio?.(bytes, this.info);
    this.vad.push(bytes, this.s.td.on && !this.info.closed, this.s.td.silenceMs);
  }

  private speechStarted(audioStartMs: number): void {
    const itemId = (this.s.userItemId = this.model.newId('item'));
    this.send({ type: 'input_audio_buffer.speech_started', audio_start_ms: audioStartMs, item_id: itemId });
    if (this.s.response && this.s.td.interrupt) this.cancelResponse('turn_detected');
  }

  private speechStopped(audioEndMs: number): void {
    const itemId = this.s.userItemId ?? this.model.newId('item');
    this.send({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: audioEndMs, item_id: itemId });
    this.commit(itemId);
    if (this.s.td.createResponse && !this.s.response) this.startResponse(undefined, undefined);
  }

  private commit(itemId: string): void {
    const transcript = this.vad.transcript() ?? UNINTELLIGIBLE;
    this.s.meter.callerAudio(this.vad.bufferedBytes / 8);
    this.send({ type: 'input_audio_buffer.committed', previous_item_id: this.s.lastItemId, item_id: itemId });
    this.s.lastItemId = itemId;
    this.send(transcriptionEvent(this.info.session, this.info.shape, this.model.opts.transcriptionModels, itemId, transcript));
    this.s.turn = { kind: 'utterance', text: transcript };
    this.resetInput();
  }

  private resetInput(): void {
    this.vad.reset();
    this.s.userItemId = undefined;
  }

  // --- responses ----------------------------------------------------------------------------------

  private startResponse(instructions: string | undefined, toolsOverride: unknown): void {
    const reply = planReply({ instructions, turn: this.s.turn, tools: toolNamesOf(this.info.session, toolsOverride) });
    this.s.turn = { kind: 'none' };
    const id = this.model.newId('resp');
    const itemId = this.model.newId('item');
    const r: ActiveResponse = { id, itemId, reply, totalBytes: 0, offset: 0, markers: [], deltaHead: '', callId: '', burstBytes: 0 };
    this.s.response = r;
    this.send({
      type: 'response.created',
      response: { object: 'realtime.response', id, status: 'in_progress', status_details: null, output: [], usage: null },
    });
    const failure = this.model.takeResponseFailure();
    if (failure) {
      // What the real API sends when generation fails (server error, rate limit, quota): no output.
      return this.after(this.pacing.thinkMs, () => {
        if (this.s.response === r) this.done(r, 'failed', { type: 'failed', error: failure }, undefined);
      });
    }
    if (reply.kind === 'tool') {
      r.callId = this.model.newId('call');
      this.s.callNames.set(r.callId, reply.name);
      this.send({ type: 'response.output_item.added', response_id: id, output_index: 0, item: toolItem(r, 'in_progress') });
      return this.after(this.pacing.thinkMs, () => this.finishToolCall(r));
    }
    const text = reply.text;
    r.totalBytes = (speechDurationMs(text, this.model.mode) * 8);
    r.markers = speechFrames(text, { hz: REPLY_HZ, minFrames: 1 });
    r.deltaHead =
      `{"type":"${this.s.names.audioDelta}","response_id":${JSON.stringify(id)},"item_id":${JSON.stringify(itemId)},` +
      `"output_index":0,"content_index":0,"event_id":"`;
    this.s.itemSentMs.set(itemId, 0);
    this.send({ type: 'response.output_item.added', response_id: id, output_index: 0, item: audioItem(r, 'in_progress', this.s.names.audioPart) });
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
    if (this.s.response !== r || this.info.closed) return;
    const deltaMs = this.model.opts.deltaMs;
    const length = Math.min(deltaMs === undefined ? DELTA_BYTES : deltaMs * 8, r.totalBytes - r.offset);
    const b64 = replyAudioB64(r, length, this.model.opts.hooks, this.info);
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(r.deltaHead + this.nextEventId() + '","delta":"' + b64 + '"}');
    }
    if (r.offset === 0 && r.reply.kind === 'speak') {
      this.send({
        type: this.s.names.transcriptDelta,
        response_id: r.id,
        item_id: r.itemId,
        output_index: 0,
        content_index: 0,
        delta: r.reply.text,
      });
    }
    r.offset += length;
    this.s.itemSentMs.set(r.itemId, r.offset / 8);
    if (r.offset >= r.totalBytes) return this.finishSpeech(r);
    const bursts = this.model.opts.bursts;
    let gapMs = this.model.opts.gapMs ?? this.pacing.gapMs;
    if (bursts && (r.burstBytes += length) >= bursts.audioMs * 8) {
      r.burstBytes = 0;
      gapMs = bursts.pauseMs;
    }
    this.after(gapMs, () => this.pump(r));
  }

  private finishSpeech(r: ActiveResponse): void {
    const ids = { response_id: r.id, item_id: r.itemId, output_index: 0, content_index: 0 };
    const transcript = r.reply.kind === 'speak' ? r.reply.text : '';
    this.send({ type: this.s.names.audioDone, ...ids });
    this.send({ type: this.s.names.transcriptDone, ...ids, transcript });
    const item = audioItem(r, 'completed', this.s.names.audioPart);
    this.send({ type: 'response.output_item.done', response_id: r.id, output_index: 0, item });
    this.done(r, 'completed', null, item);
  }

  private finishToolCall(r: ActiveResponse): void {
    if (this.s.response !== r || r.reply.kind !== 'tool') return;
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
    const r = this.s.response;
    if (!r) return;
    this.clearRespTimer();
    const item = r.reply.kind === 'tool' ? toolItem(r, 'incomplete') : audioItem(r, 'incomplete', this.s.names.audioPart);
    this.done(r, 'cancelled', { type: 'cancelled', reason }, item);
  }

  private done(
    r: ActiveResponse,
    status: 'completed' | 'cancelled' | 'failed',
    details: Record<string, unknown> | null,
    item: Record<string, unknown> | undefined,
  ): void {
    this.s.response = undefined;
    this.s.lastItemId = r.itemId;
    const stallAfter = this.model.opts.faults?.stall?.afterResponses;
    if (stallAfter !== undefined && ++this.responsesDone >= stallAfter) setImmediate(() => this.maybeStall());
    const usage = this.s.meter.responseDone(r.itemId, {
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
