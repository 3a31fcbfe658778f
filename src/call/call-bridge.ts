/**
 * One call: the Twilio media socket on one side, the model session (model-session.ts) on the other.
 * Owns the per-frame hot path, barge-in, backpressure and tool dispatch; sockets are injected
 * (server/ owns uWS). Over 400 lines, knowingly and for now: playout, tool dispatch, turn timing,
 * the model session, the migration hooks, the call's books (call-ledger.ts) and its last words
 * (wind-down.ts) are out, but the model's control events still live here; they are the next cut.
 */
import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { AppendBatcher } from './append-batcher.js';
import { CloseCode, errorMessage } from '../errors.js';
import {
  APPEND_PREFIX,
  classifyFailedResponse,
  modelErrorLabel,
  INTERRUPT_RESPONSE,
  parseModelEvent,
  responseCancel,
  sessionUpdate,
  truncateItem,
  userText,
  type ModelEvent,
  type RealtimeSocket,
} from '../model/index.js';
import { maskNumbersInText } from '../store/call-store.js';
import { ATTR, childSpan, endSpan, linkSpan, SPAN, traceBindings, traceparentOf, type DropReason } from '../telemetry/index.js';
import type { Tenant } from '../tenants/index.js';
import { parseTwilioMessage, type TwilioInbound } from '../twilio/index.js';
import { AudioRing } from './audio-ring.js';
import type { Authorisation, BridgeDeps, StartInfo } from './bridge-deps.js';
import { buffersCallerAudio, relaysCallerAudio, transition, type CallInput, type CallState } from './call-state.js';
import { ConversationHistory } from './conversation-history.js';
import { seedHistory } from './resume.js';
import type { CallOutcome } from './lifecycle.js';
import { ModelSession, type Replayed } from './model-session.js';
import { ResponseSequencer } from './response-sequencer.js';
import { CallLedger } from './call-ledger.js';
import { callParties, CallMove } from './call-move.js';
import type { MigratableCall } from './migration.js';
import { TwilioPlayout, type TwilioSocket } from './twilio-playout.js';
import { ToolDispatch } from './tool-dispatch.js';
import { TurnMetrics } from './turn-metrics.js';
import { WindDown } from './wind-down.js';

export type { TwilioSocket } from './twilio-playout.js';
export type { AdmissionRefusal, Authorisation, BridgeDeps, BridgeLimits, ModelConnector, StartInfo } from './bridge-deps.js';

/** Invalid messages tolerated per call before the stream is closed (Twilio never sends any). */
const MAX_INVALID_MESSAGES = 20;

/** The greeting's instructions start so (the tenant's greeting follows). */
const GREETING_PREFIX = 'Greet the caller with exactly: ';
/** A failed response (response.done status failed) is asked for again once; a second failure falls back. */
const MAX_RESPONSE_RETRIES = 1;
/** Conversation turns kept to replay into a new session after a reconnect. */
const HISTORY_TURNS = 40;

/** Outcomes that mark the call span as an error. */
const FAILED_OUTCOMES: ReadonlySet<CallOutcome> = new Set(['model_unavailable', 'model_failed', 'protocol_error', 'rejected_token']);

export class CallBridge {
  state: CallState = { kind: 'awaiting-start' };
  /** Aborted when the call ends: a model connect or a tool in flight gives up. */
  private readonly callAbort = new AbortController();
  private readonly session: ModelSession;
  /** Drain by migration: the migrator moves the call; this leg then ends without ending it. */
  private readonly migration: CallMove;
  /** What the pod counts, stores and tells about the call. */
  private readonly ledger: CallLedger;
  /** The call's last words (end_call, transfer, the time limit) and when the line closes after them. */
  private readonly windDown: WindDown;
  private readonly ring: AudioRing;
  private readonly playout: TwilioPlayout;
  /** One model response at a time: the relay's own response.create requests wait their turn. */
  private readonly responses = new ResponseSequencer((text) => this.session.ask(text), 'sb_response_');
  /** Instructions of live responses the relay asked for (the greeting), for a retry after `failed`. */
  private readonly responseInstructions = new Map<string, string | undefined>();
  private failedResponses = 0;
  private readonly tools: ToolDispatch;
  private invalidMessages = 0;
  private unknownEvents = 0;
  private readonly cancelTimers: (() => void)[] = [];
  private log: Logger;
  private readonly turnMetrics = new TurnMetrics();
  private transcriptionFailures = 0;
  private appendSeq = 0;
  private readonly appends: AppendBatcher;
  private modelCongested = false;
  private readonly history = new ConversationHistory(HISTORY_TURNS);
  /** speech_started seen, speech_stopped not yet; then the answer server VAD owes us. */
  private callerSpeaking = false;
  private answerOwed = false;
  /** The greeting was spoken (or cut by the caller): a new session never greets again (nor once the assistant spoke). */
  private greeted = false;
  private callSpan: Span | undefined;
  private turnSpan: Span | undefined;
  private c2m: { observe(v: number): void } | undefined;
  private m2c: { observe(v: number): void } | undefined;
  /** Frames relayed/dropped, for the end-of-call log line. */
  readonly stats = { framesIn: 0, framesOut: 0, dropped: 0, bargeIns: 0, marksEchoed: 0 };

  constructor(
    private readonly twilio: TwilioSocket,
    private readonly deps: BridgeDeps,
    private readonly upgradeSignature: string | undefined,
    private readonly onEnded: (bridge: CallBridge) => void,
  ) {
    this.ring = new AudioRing(deps.limits.callerAudioRingFrames);
    this.appends = new AppendBatcher(deps.limits.modelAppendFrames ?? 1);
    this.playout = new TwilioPlayout(twilio, deps.limits.twilioMaxBackpressureBytes);
    this.tools = new ToolDispatch({
      tools: deps.tools,
      metrics: deps.metrics,
      store: deps.store,
      clock: deps.clock,
      background: (p, what) => this.background(p, what),
      session: () => this.session.socket,
      followUp: () => this.onToolsAnswered(),
    });
    this.session = new ModelSession(
      { connector: deps.model, clock: deps.clock, metrics: deps.metrics, limits: deps.limits, history: this.history, signal: this.callAbort.signal, timing: this.turnMetrics },
      {
        state: () => this.state.kind,
        log: () => this.log,
        span: () => this.callSpan,
        configure: () => this.sessionConfig(),
        message: (data) => this.onModelMessage(data),
        ready: (model, replayed) => this.goLive(model, replayed),
        lost: () => this.sessionLost(),
        closedWhileEnding: () => {
          if (this.state.kind === 'ending') this.finish(this.state.outcome, this.state.closeCode, 'model closed while ending');
        },
        atPause: () => this.responses.idle && !this.callerSpeaking && !this.answerOwed && !this.tools.running && !this.playout.unplayed,
        failed: (reason, outcome) => this.fail(CloseCode.modelUnavailable, reason, outcome),
      },
    );
    this.ledger = new CallLedger({ ...deps, log: () => this.log });
    this.migration = new CallMove(
      { store: deps.store, metrics: deps.metrics, clock: deps.clock, pod: deps.pod, background: (p, what) => this.background(p, what), notify: (fn) => this.ledger.notify(fn) },
      {
        callSid: () => this.callSid,
        tenant: () => this.ledger.tenant,
        state: () => this.state.kind,
        facts: () => ({
          toolsOpen: this.tools.running,
          effectPending: this.tools.effectPending,
          restHandOff: this.tools.restHandedOff,
          // The caller mid-sentence, or owed an answer: what they said is in this session only.
          responding: !this.responses.idle || this.callerSpeaking || this.answerOwed,
          unplayed: this.playout.unplayed,
        }),
        finish: (outcome, code, reason) => this.finish(outcome, code, reason),
        log: () => this.log,
      },
    );
    this.windDown = new WindDown(
      { clock: deps.clock, windDownMs: deps.limits.windDownMs, maxCallMs: deps.limits.maxCallMs, timers: this.cancelTimers },
      {
        state: () => this.state,
        move: (input) => this.move(input),
        finish: (outcome, code, reason) => this.finish(outcome, code, reason),
        unplayed: () => this.playout.unplayed,
        setPhase: (phase) => this.background(this.deps.store.setPhase(this.callSid!, phase), 'store.setPhase'),
        request: (instructions) => this.responses.request(instructions),
        log: () => this.log,
      },
    );
    this.log = deps.log;
    const startMs = deps.limits.startTimeoutMs ?? 0;
    if (startMs > 0) {
      this.cancelTimers.push(
        deps.clock.after(startMs, () => {
          if (this.ledger.admitted || this.state.kind === 'ended') return;
          this.log.warn({ code: 'twilio_protocol', timeoutMs: startMs }, 'no authorised start in time: media socket closed');
          this.fail(CloseCode.startTimeout, 'no authorised start in time', 'protocol_error');
        }),
      );
    }
    if (deps.limits.frameMetrics) {
      this.c2m = deps.metrics.frameRelay.labels('caller_to_model');
      this.m2c = deps.metrics.frameRelay.labels('model_to_caller');
    }
  }

  /** True once the start was authorised and the pod admitted the call (it counts as a live call). */
  get admitted(): boolean {
    return this.ledger.admitted;
  }

  /** The call's tenant, once admitted. */
  get tenant(): Tenant | undefined {
    return this.ledger.tenant;
  }

  get callSid(): string | undefined {
    return 'callSid' in this.state ? this.state.callSid : undefined;
  }

  // ---------------------------------------------------------------------------------------------
  // Twilio -> relay

  /** A media-socket message. `data` is a view over uWS memory, valid only during this call. */
  onTwilioMessage(data: Buffer, isBinary: boolean): void {
    const t0 = this.deps.clock.mono();
    if (isBinary) return this.invalid('binary', 'binary frame');
    const r = parseTwilioMessage(data, this.deps.limits.twilioMaxMessageBytes);
    if (!r.ok) return r.reason === 'unknown_event' ? this.unknownEvent(r.detail) : this.invalid(r.reason, r.detail);
    const m = r.msg;
    if (m.event === 'media') {
      this.onCallerAudio(m.payload, m.timestampMs, t0);
      return;
    }
    this.onTwilioControl(m);
  }

  private onCallerAudio(payload: string, ts: number, t0: number): void {
    this.stats.framesIn++;
    this.playout.streamTs = ts;
    const s = this.state;
    if (relaysCallerAudio(s)) {
      const model = s.model;
      // ws's bufferedAmount walks the socket's stream state (3.5 % of relay CPU when read per frame
      // at 200 calls); every 8th frame bounds the overshoot past the cap to 8 frames (~2 KiB).
      if ((this.appendSeq++ & 7) === 0) {
        this.modelCongested = model.bufferedAmount > this.deps.limits.modelMaxBufferedBytes;
        this.session.sample(payload, t0);
      }
      if (this.modelCongested) return this.drop('caller_to_model', 'model_backpressure');
      this.appends.push(payload, model);
      const now = this.deps.clock.mono();
      this.turnMetrics.appended(payload, now);
      this.c2m?.observe((now - t0) / 1000);
    } else if (buffersCallerAudio(s)) {
      if (this.ring.push(payload)) this.drop('caller_to_model', 'model_not_ready');
    } else if (s.kind === 'awaiting-start') {
      this.fail(CloseCode.notStarted, 'media before start', 'protocol_error');
    }
    // ended: late frames after close are ignored
  }

  private onTwilioControl(m: Exclude<TwilioInbound, { event: 'media' }>): void {
    switch (m.event) {
      case 'connected':
        return;
      case 'start':
        return this.onStart(m);
      case 'mark':
        if (this.playout.echoed(m.name)) this.stats.marksEchoed++;
        this.windDown.played();
        this.session.maybeRenew();
        return;
      case 'dtmf':
        if (this.state.kind === 'live') {
          const model = this.state.model;
          this.appends.flush(model); // the key follows what the caller said before it
          model.send(userText(`The caller pressed the key ${m.digit} on their keypad.`));
          this.responses.request();
        }
        return;
      case 'stop':
        if (this.state.kind === 'awaiting-start') return this.fail(CloseCode.notStarted, 'stop before start', 'protocol_error');
        if (this.migration.leave('stream stopped by the call update')) return;
        if (this.session.socket) this.appends.flush(this.session.socket);
        this.finish(this.endedByTwilioOutcome(), CloseCode.normal, 'stream stopped');
        return;
    }
  }

  private onStart(m: Extract<TwilioInbound, { event: 'start' }>): void {
    if (this.state.kind !== 'awaiting-start') {
      return this.fail(CloseCode.streamMismatch, 'second start on one stream', 'protocol_error');
    }
    this.move({ type: 'start', streamSid: m.streamSid, callSid: m.callSid });
    this.ledger.started();
    this.playout.started(m.streamSid);
    this.callSpan = childSpan(SPAN.call, undefined, { [ATTR.callSid]: m.callSid, [ATTR.provider]: this.deps.model.provider });
    this.log = this.deps.log.child({ callSid: m.callSid, streamSid: m.streamSid, ...traceBindings(this.callSpan) });
    this.cancelTimers.push(
      this.deps.clock.after(this.deps.limits.maxCallMs, () => this.windDown.timeUp()),
    );
    const start: StartInfo = {
      streamSid: m.streamSid,
      callSid: m.callSid,
      accountSid: m.accountSid,
      customParameters: m.customParameters,
    };
    const traceparent = traceparentOf(this.callSpan);
    if (traceparent !== undefined) start.traceparent = traceparent;
    this.deps.authorise(start, this.upgradeSignature).then(
      (a) => this.onAuthorised(a, start),
      (err: unknown) => {
        this.log.warn({ code: 'store_unavailable', err: errorMessage(err) }, 'stream authorisation failed');
        this.fail(CloseCode.internalError, 'authorisation unavailable', 'protocol_error');
      },
    );
  }

  private onAuthorised(a: Authorisation, start: StartInfo): void {
    if (this.state.kind !== 'verifying') return; // hung up meanwhile
    if (!a.ok) {
      const code = a.code === CloseCode.signatureInvalid ? 'signature_invalid' : a.code === CloseCode.callHeldElsewhere ? 'conflict' : 'stream_token_invalid';
      this.log.warn({ code, reason: a.reason }, 'media stream refused');
      return this.fail(a.code, a.reason, a.outcome);
    }
    const refusal = this.deps.admit?.();
    if (refusal) {
      this.log.warn({ code: refusal.outcome === 'drained' ? 'draining' : 'rate_limited', tenant: a.tenant.id, reason: refusal.reason }, 'media stream refused');
      return this.fail(refusal.code, refusal.reason, refusal.outcome);
    }
    this.log = this.log.child({ tenant: a.tenant.id });
    this.callSpan?.setAttribute(ATTR.tenant, a.tenant.id);
    this.move({ type: 'authorised', tenantId: a.tenant.id });
    this.ledger.admit(start.callSid, a.tenant, () => this.tools.calls);
    if (a.resume) {
      // [resume] A moved call, adopted by this pod (resume.ts): its record exists; rebuild from it.
      this.session.adopt(a.resume);
      const rec = a.resume.record;
      this.migration.adopted(rec);
      seedHistory(this.history, a.resume.record);
      const m = a.resume.migration;
      this.callSpan?.setAttributes({ [ATTR.migrationReason]: m.reason, [ATTR.migrationFrom]: m.from });
      linkSpan(this.callSpan, rec.traceparent);
      this.log = this.log.child({ resumed: m.reason, from: m.from });
      this.log.info({ gapSinceStopMs: this.deps.clock.now() - m.at, lines: a.resume.record.transcript.length, tools: a.resume.record.tools.length }, 'moved call adopted: resuming');
      return void this.session.open();
    }
    this.migration.parties = callParties(start.customParameters, a.tenant);
    this.ledger.record(start, a.tenant, this.migration.parties);
    void this.session.open();
  }

  /** Twilio's socket drained: marks uWS dropped after their audio went out are sent again. */
  onTwilioDrain(): void {
    this.playout.drained();
  }

  /** uWS refused a frame below us and dropped the socket (invalid UTF-8, far too large). */
  onTwilioRefused(reason: 'invalid_utf8' | 'too_large', detail: string): void {
    this.playout.open = false;
    if (this.state.kind === 'ended') return;
    this.deps.metrics.twilioMessagesInvalid.labels(reason).inc();
    this.log.warn({ code: 'twilio_message_invalid', reason, detail }, 'invalid media-socket message');
    this.finish('protocol_error', 1006, detail);
  }

  /** The media socket is gone (stop, hang-up, network). */
  onTwilioClose(code: number): void {
    this.playout.open = false;
    if (this.state.kind === 'ended') return;
    if (this.migration.leave('media socket closed while moving')) return;
    this.finish(this.state.kind === 'awaiting-start' ? 'protocol_error' : this.endedByTwilioOutcome(), code, 'media socket closed');
  }

  /**
   * Twilio ended the stream: the caller hung up — unless we were already ending the call, or a tool
   * handed it to a human through the REST API (Twilio then stops the stream before our wind-down).
   */
  private endedByTwilioOutcome(): CallOutcome {
    if (this.state.kind === 'ending') return this.state.outcome;
    if (this.tools.transferring) return 'transferred';
    return 'caller_hung_up';
  }

  // ---------------------------------------------------------------------------------------------
  // model

  /** The session.update every model session of this call is configured with (the tenant's voice, tools, language). */
  private sessionConfig(): string {
    const tenant = this.tenant!;
    return sessionUpdate({
      shape: this.deps.model.shape,
      instructions: tenant.model.instructions,
      voice: tenant.model.voice,
      tools: this.deps.tools.definitions(tenant),
      language: tenant.model.language,
      ...(this.deps.model.transcriptionModel !== undefined ? { transcriptionModel: this.deps.model.transcriptionModel } : {}),
    });
  }

  private onModelMessage(data: Buffer): void {
    const t0 = this.deps.clock.mono();
    const ev = parseModelEvent(data);
    if (ev.type === 'audio_delta') return this.onModelAudio(ev, t0);
    this.onModelControl(ev);
  }

  private onModelAudio(ev: Extract<ModelEvent, { type: 'audio_delta' }>, t0: number): void {
    if (this.playout.isDiscarded(ev.responseId)) return this.drop('model_to_caller', 'stale_response');
    if (!relaysCallerAudio(this.state)) return this.drop('model_to_caller', 'call_ending');
    const dropped = this.playout.play(ev.delta, ev.itemId, ev.contentIndex);
    if (dropped !== undefined) return this.drop('model_to_caller', dropped);
    this.stats.framesOut++;
    const now = this.deps.clock.mono();
    this.m2c?.observe((now - t0) / 1000);
    const seconds = this.turnMetrics.audioRelayed(now);
    if (seconds !== undefined) {
      this.deps.metrics.turnLatency.observe(seconds);
      this.turnSpan?.setAttribute(ATTR.turnLatencyMs, Math.round(seconds * 1000));
    }
  }

  private onModelControl(ev: Exclude<ModelEvent, { type: 'audio_delta' }>): void {
    switch (ev.type) {
      case 'session.created':
        return;
      case 'session.updated':
        return this.session.configure(ev.audioFormatOk);
      case 'speech_started':
        this.session.callerTurn(true);
        this.callerSpeaking = true;
        return this.onCallerSpeech();
      case 'speech_stopped':
        this.session.callerTurn(false);
        this.callerSpeaking = false;
        this.answerOwed = true;
        endSpan(this.turnSpan);
        // A turn, everywhere (log line, API, `npm run call`, turn latency): the caller stopped speaking.
        this.turnSpan = childSpan(SPAN.turn, this.callSpan, {
          [ATTR.turnIndex]: this.turnMetrics.turnEnded(ev.audioEndMs, this.deps.clock.mono()),
        });
        this.responses.onSpeechStopped();
        return;
      case 'response_created': {
        this.answerOwed = false;
        // Kept so a failed response can be asked for again with the same instructions (the greeting).
        const instructions = this.responses.onCreated(ev.responseId)?.instructions;
        this.responseInstructions.set(ev.responseId, instructions);
        this.windDown.created(ev.responseId, instructions);
        return;
      }
      case 'audio_done':
        this.playout.closeItems();
        return;
      case 'assistant_transcript':
        this.record({ role: 'assistant', text: ev.transcript, at: this.deps.clock.now(), itemId: ev.itemId, ...(this.playout.isDiscarded(ev.responseId) ? { interrupted: true } : {}) });
        return;
      case 'caller_transcript':
        this.record({ role: 'caller', text: ev.transcript, at: this.deps.clock.now() });
        return;
      case 'caller_transcript_failed':
        return this.onTranscriptionFailed(ev);
      case 'function_call':
        return this.onFunctionCall(ev);
      case 'response_done':
        return this.onResponseDone(ev);
      case 'error':
        return this.onModelError(ev);
      case 'ignored':
        if (this.log.isLevelEnabled('debug')) this.log.debug({ eventType: ev.eventType }, 'model event ignored');
        return;
      case 'invalid':
        this.log.warn({ code: 'model_protocol', detail: ev.detail }, 'unparseable model event');
        return;
    }
  }

  /** A model session is configured and knows the conversation: the call is live (again). */
  private goLive(model: RealtimeSocket, replayed: Replayed): void {
    this.move({ type: 'model-ready', model });
    if (replayed === 'moved') this.migration.resumed(this.session.adopted!, this.callSid!);
    else if (replayed === 'nothing') this.background(this.deps.store.setPhase(this.callSid!, 'live'), 'store.setPhase');
    // Audio that arrived while we connected goes first, in order.
    this.turnMetrics.restartStream();
    const now = this.deps.clock.mono();
    this.ring.drain((payload) => {
      model.send(APPEND_PREFIX + payload + '"}');
      this.turnMetrics.appended(payload, now);
    });
    if (replayed === 'nothing' || !(this.greeted || this.history.all.some((h) => h.role === 'assistant'))) {
      // A new call, or a session lost before its greeting was spoken: greet (once it was, never again).
      const greeting = this.tenant!.model.greeting;
      this.responses.request(GREETING_PREFIX + greeting);
    } else if (this.history.lastRole === 'caller') {
      this.responses.request(); // the caller's last words were never answered
    }
  }

  /** The model session is gone and a new one opening: nothing of the old one may be named in the new one. */
  private sessionLost(): void {
    this.move({ type: 'model-lost' });
    this.callerSpeaking = false;
    this.answerOwed = false;
    // Per-session state dies with the socket; audio already sent to Twilio keeps playing.
    this.modelCongested = false;
    this.appendSeq = 0;
    this.appends.clear(); // held for the lost session, which never heard the frames before them either
    // Its items, responses, truncations.
    this.responses.reset();
    this.playout.newSession();
    this.history.newSession();
    this.tools.newSession();
    this.responseInstructions.clear();
    this.turnMetrics.forgetTurn();
  }

  /** Barge-in (docs/wire-formats.md §7): clear Twilio, truncate to what was heard, stop the response's audio. */
  private onCallerSpeech(): void {
    this.responses.onSpeechStarted();
    const active = this.responses.activeResponseId;
    if (!this.playout.unplayed && !active) return;
    this.stats.bargeIns++;
    this.deps.metrics.bargeIns.inc();
    this.turnSpan?.setAttribute(ATTR.bargeIn, true);
    const model = this.session.socket;
    for (const t of this.playout.interrupt(active)) {
      model?.send(truncateItem(t.itemId, t.contentIndex, t.audioEndMs));
      this.history.truncate(t.itemId, t.audioEndMs, t.sentMs);
    }
    if (active) {
      // With interrupt_response the server has cancelled it already (a cancel would only earn
      // response_cancel_not_active); otherwise cancel what is still active.
      if (!INTERRUPT_RESPONSE) model?.send(responseCancel(active));
    }
  }

  private onFunctionCall(ev: Extract<ModelEvent, { type: 'function_call' }>): void {
    const tenant = this.tenant;
    const callSid = this.callSid;
    if (!tenant || !callSid) return;
    this.tools.dispatch(ev, { callSid, tenant, log: this.log, signal: this.callAbort.signal, parentSpan: this.turnSpan ?? this.callSpan });
  }

  /** A response's tools all answered: ask for the spoken answer, then act on what the tools asked for. */
  private onToolsAnswered(): void {
    this.responses.request();
    if (this.state.kind !== 'live') return; // effects wait for the call to be live again
    this.windDown.effects(this.tools.takeEffects());
  }

  private onResponseDone(ev: Extract<ModelEvent, { type: 'response_done' }>): void {
    if (ev.usage) this.ledger.response(ev.usage);
    this.playout.closeItems();
    this.responses.onDone(ev.responseId);
    if (!this.tools.owns(ev.responseId)) {
      endSpan(this.turnSpan, ev.status === 'failed' ? `response ${ev.reason ?? 'failed'}` : undefined);
      this.turnSpan = undefined;
    }
    const instructions = this.responseInstructions.get(ev.responseId);
    this.responseInstructions.delete(ev.responseId);
    if (ev.status !== 'failed' && instructions?.startsWith(GREETING_PREFIX)) this.greeted = true;
    if (ev.status === 'failed') {
      if (this.onResponseFailed(ev.reason, instructions)) return;
    } else if (ev.status === 'completed') {
      this.failedResponses = 0;
    }
    // A response that asked for tools is followed up by them; another one may be the goodbye.
    if (!this.tools.responseDone(ev.responseId)) this.windDown.responseDone(ev.responseId);
    this.session.maybeRenew();
  }

  /**
   * A caller turn the model could not transcribe: the conversation goes on (the model heard the
   * audio), but the transcript, summary and reconnect replay miss it. On Azure every turn fails
   * this way when REALTIME_TRANSCRIPTION_MODEL is not a deployment name: say so once per call.
   */
  private onTranscriptionFailed(ev: Extract<ModelEvent, { type: 'caller_transcript_failed' }>): void {
    this.deps.metrics.transcriptionFailures.inc();
    if (this.transcriptionFailures++ > 0) return;
    this.log.warn(
      { code: 'model_protocol', modelCode: ev.code, detail: ev.message },
      'caller speech could not be transcribed (check REALTIME_TRANSCRIPTION_MODEL); further failures on this call are only counted',
    );
  }

  /**
   * A response ended `failed` (status_details.error): ask once more, then fall back. Returns true when
   * the call was ended. While ending (the goodbye failed) the wind-down simply goes on.
   */
  private onResponseFailed(reason: string | undefined, instructions: string | undefined): boolean {
    this.deps.metrics.modelErrors.labels('response', modelErrorLabel(reason ?? 'response_failed')).inc();
    const fatal = classifyFailedResponse(reason) === 'call';
    this.log.warn({ code: 'model_protocol', reason, retry: !fatal && this.failedResponses === 0 }, 'model response failed');
    if (this.state.kind !== 'live' && this.state.kind !== 'connecting') return false;
    if (fatal || this.failedResponses >= MAX_RESPONSE_RETRIES) {
      this.fail(CloseCode.modelUnavailable, `model response failed (${reason ?? 'unknown'})`, 'model_failed');
      return true;
    }
    this.failedResponses++;
    this.responses.request(instructions);
    return false;
  }

  private onModelError(ev: Extract<ModelEvent, { type: 'error' }>): void {
    if (this.responses.onError(ev.code, ev.eventId)) {
      this.deps.metrics.modelErrors.labels('error', modelErrorLabel(ev.code)).inc();
      this.log.debug({ code: ev.code, eventId: ev.eventId }, 'response.create rejected; queued behind the active response');
      return;
    }
    this.session.error(ev);
  }

  // ---------------------------------------------------------------------------------------------
  // helpers

  private record(entry: { role: 'caller' | 'assistant'; text: string; at: number; itemId?: string; interrupted?: boolean }): void {
    const { itemId, ...stored } = entry;
    if (entry.role === 'caller') this.history.caller(entry.text);
    else this.history.assistant(entry.text, itemId ?? '', entry.interrupted === true);
    const sid = this.callSid;
    // Stored masked (phone and card numbers): Redis never holds them, whoever reads it later.
    if (sid) this.background(this.deps.store.appendTranscript(sid, { ...stored, text: maskNumbersInText(stored.text) }), 'store.appendTranscript');
  }

  private drop(direction: 'caller_to_model' | 'model_to_caller', reason: DropReason): void {
    this.stats.dropped++;
    this.deps.metrics.framesDropped.labels(direction, reason).inc();
  }

  /**
   * A well-formed message whose event name we do not know: Twilio may add events (it added `dtmf`
   * and `mark` after `media`), so it is counted and ignored, before or after `start`, never fatal.
   */
  private unknownEvent(detail: string): void {
    if (this.state.kind === 'ended') return;
    this.deps.metrics.twilioEventsUnknown.inc();
    if (this.unknownEvents++ === 0) this.log.info({ detail }, 'media-socket event of an unknown kind ignored');
  }

  private invalid(reason: string, detail: string): void {
    if (this.state.kind === 'ended') return; // uWS may deliver a few messages after end()
    this.deps.metrics.twilioMessagesInvalid.labels(reason).inc();
    this.invalidMessages++;
    if (this.invalidMessages === 1) this.log.warn({ code: 'twilio_message_invalid', reason, detail }, 'invalid media-socket message');
    if (reason === 'too_large') return this.fail(CloseCode.messageTooBig, 'message too large', 'protocol_error');
    if (this.invalidMessages >= MAX_INVALID_MESSAGES || this.state.kind === 'awaiting-start') {
      this.fail(CloseCode.invalidMessage, 'invalid messages', 'protocol_error');
    }
  }

  /** This call as the migrator sees it; undefined before it is authorised or after it ended. */
  migratable(): MigratableCall | undefined {
    return this.migration.migratable();
  }

  private move(input: CallInput): void {
    const next = transition(this.state, input);
    if (next) this.state = next;
  }

  private background(p: Promise<unknown>, what: string): void {
    this.ledger.background(p, what);
  }

  /** End the call because something went wrong (or ran out): close Twilio with `code`. */
  fail(code: CloseCode, reason: string, outcome: CallOutcome): void {
    this.finish(outcome, code, reason);
  }

  /** The single exit: idempotent; closes both sockets, settles the call's books, logs its summary. */
  finish(outcome: CallOutcome, code: number, reason: string): void {
    if (this.state.kind === 'ended') return;
    const started = this.state.kind !== 'awaiting-start';
    const callSid = this.callSid;
    this.move({ type: 'end', outcome });
    for (const c of this.cancelTimers) c();
    this.session.end();
    this.callAbort.abort();
    this.ring.clear();
    const moved = this.migration.moved;
    const { usage, stored } = this.ledger.end({ callSid, outcome, started, moved, unresumed: this.session.resumeFailed });
    // The call goes on on another pod: no outcome, its record stays live; this pod lets go of it.
    if (moved && callSid && this.tenant) this.migration.release(callSid, this.tenant);
    endSpan(this.turnSpan);
    this.turnSpan = undefined;
    if (this.callSpan) {
      this.callSpan.setAttribute(ATTR.outcome, moved ? 'moved' : outcome);
      endSpan(this.callSpan, FAILED_OUTCOMES.has(outcome) ? reason : undefined);
      this.callSpan = undefined;
    }
    this.log.info(
      {
        outcome,
        closeCode: code,
        reason,
        durationMs: this.ledger.startedAt ? this.deps.clock.now() - this.ledger.startedAt : 0,
        ...this.turnMetrics.summary(),
        toolCalls: this.tools.calls,
        reconnects: this.session.reconnects,
        renewals: this.session.renewals,
        transcriptionFailures: this.transcriptionFailures,
        ...this.stats,
        ...(usage ? { usage } : {}),
      },
      moved ? 'call moved to another pod' : 'call ended',
    );
    this.ledger.closeWhenStored(this.playout.open ? stored : undefined, () => {
      this.playout.end(code, reason);
      this.onEnded(this);
    });
  }
}
