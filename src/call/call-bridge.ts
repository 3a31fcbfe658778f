/**
 * One call: the Twilio media socket on one side, the realtime model socket on the other. Owns the
 * per-frame hot path, barge-in, backpressure and tool dispatch; sockets are injected (server/ owns uWS).
 * Over 400 lines, knowingly and for now: playout, tool dispatch and turn timing are out
 * (twilio-playout.ts, tool-dispatch.ts, turn-metrics.ts), but the model session (connect, configure,
 * reconnect, renew, resume) and the per-state data still live here; they are the next cut.
 */
import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { AppendBatcher } from './append-batcher.js';
import { CloseCode, errorMessage, SwitchboardError } from '../errors.js';
import {
  APPEND_PREFIX,
  assistantText,
  classifyFailedResponse,
  classifyModelError,
  isSessionCapClose,
  KEEPALIVE_CLOSE,
  modelErrorLabel,
  INTERRUPT_RESPONSE,
  parseModelEvent,
  responseCancel,
  sessionUpdate,
  truncateItem,
  userText,
  type ModelEvent,
  type RealtimeSocket,
  type SessionShape,
} from '../model/index.js';
import type { CallStore } from '../store/index.js';
import { maskNumbersInText } from '../store/call-store.js';
import { ATTR, childSpan, endSpan, linkSpan, SPAN, traceBindings, traceparentOf, type DropReason, type RelayMetrics } from '../telemetry/index.js';
import type { Tenant } from '../tenants/index.js';
import type { CallUsageMeter, UsageMeterFactory } from '../usage/index.js';
import type { ToolRunner } from '../tools/index.js';
import { parseTwilioMessage, type TwilioInbound } from '../twilio/index.js';
import { AudioRing } from './audio-ring.js';
import { buffersCallerAudio, relaysCallerAudio, transition, type CallInput, type CallState } from './call-state.js';
import { ConversationHistory } from './conversation-history.js';
import { resumeItems, seedHistory, type ResumeContext } from './resume.js';
import type { CallLifecycleListener, CallOutcome } from './lifecycle.js';
import { ResponseSequencer } from './response-sequencer.js';
import { StallWatch } from './stall-watch.js';
import { migrationReadiness, type MigratableCall, type MigrationReadiness } from './migration.js';
import { TwilioPlayout, type TwilioSocket } from './twilio-playout.js';
import { decidingEffect, ToolDispatch } from './tool-dispatch.js';
import { TurnMetrics } from './turn-metrics.js';

export type { TwilioSocket } from './twilio-playout.js';

export interface StartInfo {
  streamSid: string;
  callSid: string;
  accountSid: string;
  customParameters: Readonly<Record<string, string>>;
  /** This leg's call span (W3C traceparent): stored with the call so a later leg links to it. */
  traceparent?: string;
}

/**
 * `from` (masked by the voice webhook) and `to` from the stream's parameters, for the call record.
 * Kept only in the shapes the webhook writes: a masked number, and one of the tenant's own numbers.
 */
function callParties(p: Readonly<Record<string, string>>, tenant: Tenant): { fromMasked?: string; to?: string } {
  const from = p['from'];
  const to = p['to'];
  return {
    ...(from !== undefined && /^\+?\*+\d{0,4}$/.test(from) ? { fromMasked: from } : {}),
    ...(to !== undefined && tenant.phoneNumbers.includes(to) ? { to } : {}),
  };
}

export type Authorisation =
  /** `resume`: a moved call this pod adopted (resume.ts): re-create its conversation, do not greet. */
  | { ok: true; tenant: Tenant; resume?: ResumeContext }
  | { ok: false; code: CloseCode; reason: string; outcome: CallOutcome };

export interface ModelConnector {
  readonly provider: 'openai' | 'azure' | 'sim';
  readonly shape: SessionShape;
  /** The caller-transcript model (on Azure a deployment name); null: none; absent: the protocol default. */
  readonly transcriptionModel?: string | null;
  connect(signal: AbortSignal, log: Logger): Promise<RealtimeSocket>;
}

export interface BridgeLimits {
  twilioMaxBackpressureBytes: number;
  /** Model audio per mark toward Twilio, or one per delta when a delta is longer (0/absent: a mark per delta). */
  twilioMarkIntervalMs?: number;
  modelMaxBufferedBytes: number;
  twilioMaxMessageBytes: number;
  callerAudioRingFrames: number;
  maxCallMs: number;
  modelConnectTimeoutMs: number;
  frameMetrics: boolean;
  /** How long an ending call may wait for its goodbye to play before the line is closed anyway. */
  windDownMs: number;
  /** Re-open the model session at the first pause after this long, before the API's 60-minute cap (0/absent = off). */
  modelSessionRenewMs?: number;
  /** From the socket's open to an authorised `start`; past it the socket closes with 4007. 0/absent = none. */
  startTimeoutMs?: number;
  /** The stall rule (stall-watch.ts): caller talking this long, model silent since: re-open (0/absent = off). */
  modelStallMs?: number;
  /** Caller frames per `input_audio_buffer.append` (append-batcher.ts; 1/absent = one per frame). */
  modelAppendFrames?: number;
}

/** Why the pod turns an authorised call away (over capacity, draining). */
export interface AdmissionRefusal {
  code: CloseCode;
  reason: string;
  outcome: CallOutcome;
}

export interface BridgeDeps {
  listeners?: readonly CallLifecycleListener[];
  clock: Clock;
  store: CallStore;
  tools: ToolRunner;
  metrics: RelayMetrics;
  log: Logger;
  model: ModelConnector;
  authorise(start: StartInfo, upgradeSignature: string | undefined): Promise<Authorisation>;
  /**
   * Called once a start is authorised, before the call counts: only authorised calls take pod
   * capacity. A refusal closes the socket with its code; absent = always admitted.
   */
  admit?(): AdmissionRefusal | undefined;
  limits: BridgeLimits;
  pod: string;
  /** Usage metering (tokens, seconds, cost) per authorised call. */
  usage?: UsageMeterFactory;
}

/** Invalid messages tolerated per call before the stream is closed (Twilio never sends any). */
const MAX_INVALID_MESSAGES = 20;

/** Model sessions re-opened per call after a drop or session expiry (docs/wire-formats.md §8). */
const MAX_RECONNECTS = 1;
/**
 * Planned session renewals per call (and sessions ended by the cap): a separate budget from drops,
 * so a call that survived a drop still outlives the cap. 8 covers MAX_CALL_SECONDS' 4-hour ceiling.
 */
const MAX_RENEWALS = 8;
/** The greeting's instructions start so (the tenant's greeting follows). */
const GREETING_PREFIX = 'Greet the caller with exactly: ';
/** What the assistant is asked to say when the call reaches MAX_CALL_SECONDS. */
const TIME_LIMIT_GOODBYE =
  'The call has reached its time limit. Say goodbye to the caller with exactly: "I am sorry, we have reached the time limit for this call. Thank you for calling, goodbye."';
/** A failed response (response.done status failed) is asked for again once; a second failure falls back. */
const MAX_RESPONSE_RETRIES = 1;
/** Conversation turns kept to replay into a new session after a reconnect. */
const HISTORY_TURNS = 40;

/** Longest the media socket stays open after the call ended, waiting for the outcome to be stored. */
const OUTCOME_STORE_WAIT_MS = 2000;

/** Outcomes that mark the call span as an error. */
const FAILED_OUTCOMES: ReadonlySet<CallOutcome> = new Set(['model_unavailable', 'model_failed', 'protocol_error', 'rejected_token']);

export class CallBridge {
  state: CallState = { kind: 'awaiting-start' };
  tenant: Tenant | undefined;
  private model: RealtimeSocket | undefined;
  private readonly connectAbort = new AbortController();
  private readonly ring: AudioRing;
  private readonly playout: TwilioPlayout;
  /** One model response at a time: the relay's own response.create requests wait their turn. */
  private readonly responses = new ResponseSequencer((text) => {
    this.model?.send(text);
    this.stall?.expectEvent();
  }, 'sb_response_');
  /** Instructions of live responses the relay asked for (the greeting), for a retry after `failed`. */
  private readonly responseInstructions = new Map<string, string | undefined>();
  private failedResponses = 0;
  private readonly tools: ToolDispatch;
  private invalidMessages = 0;
  private unknownEvents = 0;
  private counted = false;
  private authorised = false;
  private startedAt = 0;
  private sessionConfigured = false;
  private readonly cancelTimers: (() => void)[] = [];
  private log: Logger;
  private readonly turnMetrics = new TurnMetrics();
  private usage: CallUsageMeter | undefined;
  private reconnects = 0;
  private transcriptionFailures = 0;
  private appendSeq = 0;
  private readonly appends: AppendBatcher;
  private modelCongested = false;
  private readonly history = new ConversationHistory(HISTORY_TURNS);
  private readonly stall: StallWatch | undefined;
  private renewals = 0;
  private renewDue = false;
  private cancelRenewal: (() => void) | undefined;
  /** speech_started seen, speech_stopped not yet; then the answer server VAD owes us. */
  private callerSpeaking = false;
  private answerOwed = false;
  /** The greeting was spoken (or cut by the caller): a new session never greets again (nor once the assistant spoke). */
  private greeted = false;
  /** [resume] A moved call adopted by this pod; `live` once its first session replayed the conversation. */
  private resume: { ctx: ResumeContext; live: boolean } | undefined;
  /** The response that says the time-limit goodbye, once created. */
  private goodbyeResponseId: string | undefined;
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
    this.playout = new TwilioPlayout(twilio, deps.limits.twilioMaxBackpressureBytes, deps.limits.twilioMarkIntervalMs);
    this.tools = new ToolDispatch({
      tools: deps.tools,
      metrics: deps.metrics,
      store: deps.store,
      clock: deps.clock,
      background: (p, what) => this.background(p, what),
      session: () => this.model,
      followUp: () => this.onToolsAnswered(),
    });
    this.log = deps.log;
    this.cancelTimers.push(() => this.cancelRenewal?.());
    const startMs = deps.limits.startTimeoutMs ?? 0;
    if (startMs > 0) {
      this.cancelTimers.push(
        deps.clock.after(startMs, () => {
          if (this.authorised || this.state.kind === 'ended') return;
          this.log.warn({ code: 'twilio_protocol', timeoutMs: startMs }, 'no authorised start in time: media socket closed');
          this.fail(CloseCode.startTimeout, 'no authorised start in time', 'protocol_error');
        }),
      );
    }
    const stallMs = deps.limits.modelStallMs ?? 0;
    if (stallMs > 0) this.stall = new StallWatch(stallMs, deps.clock, () => this.onModelStalled());
    if (deps.limits.frameMetrics) {
      this.c2m = deps.metrics.frameRelay.labels('caller_to_model');
      this.m2c = deps.metrics.frameRelay.labels('model_to_caller');
    }
  }

  /** True once the start was authorised and the pod admitted the call (it counts as a live call). */
  get admitted(): boolean {
    return this.authorised;
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
      const model = this.model!;
      // ws's bufferedAmount walks the socket's stream state (3.5 % of relay CPU when read per frame
      // at 200 calls); every 8th frame bounds the overshoot past the cap to 8 frames (~2 KiB).
      if ((this.appendSeq++ & 7) === 0) {
        this.modelCongested = model.bufferedAmount > this.deps.limits.modelMaxBufferedBytes;
        this.stall?.sample(payload, t0);
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
        this.maybeFinishWindDown();
        this.maybeRenew();
        return;
      case 'dtmf':
        if (this.state.kind === 'live' && this.model) {
          this.appends.flush(this.model); // the key follows what the caller said before it
          this.model.send(userText(`The caller pressed the key ${m.digit} on their keypad.`));
          this.responses.request();
        }
        return;
      case 'stop':
        if (this.state.kind === 'awaiting-start') return this.fail(CloseCode.notStarted, 'stop before start', 'protocol_error');
        if (this.migrating) return this.moveOut('stream stopped by the call update');
        if (this.model) this.appends.flush(this.model);
        this.finish(this.endedByTwilioOutcome(), CloseCode.normal, 'stream stopped');
        return;
    }
  }

  private onStart(m: Extract<TwilioInbound, { event: 'start' }>): void {
    if (this.state.kind !== 'awaiting-start') {
      return this.fail(CloseCode.streamMismatch, 'second start on one stream', 'protocol_error');
    }
    this.move({ type: 'start', streamSid: m.streamSid, callSid: m.callSid });
    this.startedAt = this.deps.clock.now();
    this.playout.started(m.streamSid);
    this.callSpan = childSpan(SPAN.call, undefined, { [ATTR.callSid]: m.callSid, [ATTR.provider]: this.deps.model.provider });
    this.log = this.deps.log.child({ callSid: m.callSid, streamSid: m.streamSid, ...traceBindings(this.callSpan) });
    this.cancelTimers.push(
      this.deps.clock.after(this.deps.limits.maxCallMs, () => this.onCallTooLong()),
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
    this.tenant = a.tenant;
    this.log = this.log.child({ tenant: a.tenant.id });
    this.callSpan?.setAttribute(ATTR.tenant, a.tenant.id);
    this.move({ type: 'authorised', tenantId: a.tenant.id });
    this.authorised = true;
    this.counted = true;
    this.deps.metrics.noteTenant(a.tenant.id);
    this.deps.metrics.activeCalls.inc();
    this.notify((l) => l.callStarted?.({ callSid: start.callSid, tenant: a.tenant }));
    this.usage = this.deps.usage?.open({ callSid: start.callSid, tenant: a.tenant, startedAt: this.startedAt, toolCalls: () => this.tools.calls });
    if (a.resume) {
      // [resume] A moved call, adopted by this pod (resume.ts): its record exists; rebuild from it.
      this.resume = { ctx: a.resume, live: false };
      const rec = a.resume.record;
      this.parties = { ...(rec.to !== undefined ? { to: rec.to } : {}), ...(rec.fromMasked !== undefined ? { fromMasked: rec.fromMasked } : {}) };
      seedHistory(this.history, a.resume.record);
      const m = a.resume.migration;
      this.callSpan?.setAttributes({ [ATTR.migrationReason]: m.reason, [ATTR.migrationFrom]: m.from });
      linkSpan(this.callSpan, rec.traceparent);
      this.log = this.log.child({ resumed: m.reason, from: m.from });
      this.log.info({ gapSinceStopMs: this.deps.clock.now() - m.at, lines: a.resume.record.transcript.length, tools: a.resume.record.tools.length }, 'moved call adopted: resuming');
      return void this.connectModel();
    }
    this.parties = callParties(start.customParameters, a.tenant);
    this.background(
      this.deps.store.startCall({
        callSid: start.callSid,
        tenantId: a.tenant.id,
        streamSid: start.streamSid,
        ...this.parties,
        pod: this.deps.pod,
        startedAt: this.startedAt,
        ...(start.traceparent !== undefined ? { traceparent: start.traceparent } : {}),
        retentionSeconds: a.tenant.retentionDays * 86_400,
      }),
      'store.startCall',
    );
    void this.connectModel();
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
    if (this.migrating) return this.moveOut('media socket closed while moving');
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

  private async connectModel(resume = false): Promise<void> {
    const t0 = this.deps.clock.mono();
    const provider = this.deps.model.provider;
    const span = childSpan(SPAN.connect, this.callSpan, { [ATTR.provider]: provider });
    let sock: RealtimeSocket;
    try {
      sock = await this.deps.model.connect(this.connectAbort.signal, this.log);
    } catch (err) {
      endSpan(span, errorMessage(err));
      this.deps.metrics.upstreamConnect.labels(provider, 'failed').observe((this.deps.clock.mono() - t0) / 1000);
      if (this.state.kind === 'ended') return;
      const code = err instanceof SwitchboardError ? err.code : 'model_unreachable';
      this.log.warn({ code, err: errorMessage(err), resume }, 'model unreachable; caller gets the fallback');
      return this.fail(CloseCode.modelUnavailable, 'model unavailable', resume ? 'model_failed' : 'model_unavailable');
    }
    if (this.state.kind === 'ended') {
      endSpan(span, 'call ended while connecting');
      sock.close(1000, 'call ended');
      return;
    }
    this.model = sock;
    // Events of a socket we have moved on from (reconnect) are ignored.
    sock.onMessage((data) => {
      if (this.model === sock) this.onModelMessage(data);
    });
    sock.onClose((code, reason) => {
      if (this.model === sock) this.onModelClose(code, reason);
    });
    const tenant = this.tenant!;
    sock.send(
      sessionUpdate({
        shape: this.deps.model.shape,
        instructions: tenant.model.instructions,
        voice: tenant.model.voice,
        tools: this.deps.tools.definitions(tenant),
        language: tenant.model.language,
        ...(this.deps.model.transcriptionModel !== undefined ? { transcriptionModel: this.deps.model.transcriptionModel } : {}),
      }),
    );
    const cancel = this.deps.clock.after(this.deps.limits.modelConnectTimeoutMs, () => {
      if (this.sessionConfigured || this.state.kind === 'ended') return;
      endSpan(span, 'session.update not confirmed');
      this.deps.metrics.upstreamConnect.labels(provider, 'failed').observe((this.deps.clock.mono() - t0) / 1000);
      this.log.warn({ code: 'model_protocol' }, 'model never confirmed session.update');
      this.fail(CloseCode.modelUnavailable, 'model session not configured', resume ? 'model_failed' : 'model_unavailable');
    });
    this.cancelTimers.push(cancel);
    this.cancelTimers.push(() => span.end());
    this.onSessionConfigured = () => {
      cancel();
      span.end();
      this.turnMetrics.connectMs ??= Math.round(this.deps.clock.mono() - t0);
      this.deps.metrics.upstreamConnect.labels(provider, 'ok').observe((this.deps.clock.mono() - t0) / 1000);
    };
  }

  private onSessionConfigured: (() => void) | undefined;

  private onModelMessage(data: Buffer): void {
    const t0 = this.deps.clock.mono();
    this.stall?.modelEvent();
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
        if (this.sessionConfigured) return;
        if (!ev.audioFormatOk) {
          // A rejected or partial session.update leaves 24 kHz PCM: forwarding it would be static.
          this.log.error({ code: 'model_protocol' }, 'model did not accept μ-law audio');
          return this.fail(CloseCode.modelUnavailable, 'model audio format not μ-law', 'model_failed');
        }
        this.sessionConfigured = true;
        this.onSessionConfigured?.();
        return this.goLive();
      case 'speech_started':
        this.stall?.turn(true);
        this.callerSpeaking = true;
        return this.onCallerSpeech();
      case 'speech_stopped':
        this.stall?.turn(false);
        this.stall?.expectEvent();
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
        if (instructions === TIME_LIMIT_GOODBYE) this.goodbyeResponseId = ev.responseId;
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

  private goLive(): void {
    const resume = this.state.kind === 'reconnecting' || this.resume !== undefined;
    if ((this.state.kind !== 'connecting' && this.state.kind !== 'reconnecting') || !this.model) return;
    this.move({ type: 'model-ready' });
    const model = this.model;
    this.armRenewal();
    const moved = this.resume;
    if (moved && !moved.live) {
      // [resume] The first session of a moved call: the stored conversation, tool calls included.
      moved.live = true;
      const items = resumeItems(moved.ctx.record, this.deps.model.shape);
      for (const item of items) model.send(item);
      this.noteResumed(moved.ctx);
      this.log.info({ replayed: items.length }, 'moved call resumed with its conversation');
    } else if (resume) {
      // A new session knows nothing: replay the conversation as text, then carry on.
      const history = this.history.all;
      for (const h of history) model.send(h.role === 'caller' ? userText(h.text) : assistantText(h.text, this.deps.model.shape));
      this.log.info({ replayed: history.length }, 'model session re-opened with the conversation so far');
    } else {
      this.background(this.deps.store.setPhase(this.callSid!, 'live'), 'store.setPhase');
    }
    // Audio that arrived while we connected goes first, in order.
    this.turnMetrics.restartStream();
    const now = this.deps.clock.mono();
    this.ring.drain((payload) => {
      model.send(APPEND_PREFIX + payload + '"}');
      this.turnMetrics.appended(payload, now);
    });
    if (!resume || !(this.greeted || this.history.all.some((h) => h.role === 'assistant'))) {
      // A new call, or a session lost before its greeting was spoken: greet (once it was, never again).
      const greeting = this.tenant!.model.greeting;
      this.responses.request(GREETING_PREFIX + greeting);
    } else if (this.history.lastRole === 'caller') {
      this.responses.request(); // the caller's last words were never answered
    }
  }

  /** [resume] The new leg relays: the move's gap, counted and stored; the call is live here. */
  private noteResumed(ctx: ResumeContext): void {
    const m = ctx.migration;
    const gapMs = Math.max(0, this.deps.clock.now() - m.at);
    this.deps.metrics.callMigrations.labels(m.reason, 'resumed').inc();
    this.deps.metrics.migrationGap.labels(m.reason).observe(gapMs / 1000);
    this.background(this.deps.store.setPhase(this.callSid!, 'live'), 'store.setPhase');
    this.background(this.deps.store.noteMigrationGap(this.callSid!, gapMs), 'store.noteMigrationGap');
    this.log.info({ gapMs, reason: m.reason, from: m.from }, 'call moved: relaying on this pod');
  }

  /** Barge-in (docs/wire-formats.md §7): clear Twilio, truncate to what was heard, stop the response's audio. */
  private onCallerSpeech(): void {
    this.responses.onSpeechStarted();
    const active = this.responses.activeResponseId;
    if (!this.playout.unplayed && !active) return;
    this.stats.bargeIns++;
    this.deps.metrics.bargeIns.inc();
    this.turnSpan?.setAttribute(ATTR.bargeIn, true);
    const model = this.model;
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
    this.tools.dispatch(ev, { callSid, tenant, log: this.log, signal: this.connectAbort.signal, parentSpan: this.turnSpan ?? this.callSpan });
  }

  /** A response's tools all answered: ask for the spoken answer, then act on what the tools asked for. */
  private onToolsAnswered(): void {
    this.responses.request();
    if (this.state.kind !== 'live') return; // effects wait for the call to be live again
    const effects = this.tools.takeEffects();
    const effect = decidingEffect(effects);
    if (!effect) return;
    if (effects.length > 1) this.log.info({ effects: effects.map((e) => e.kind), acting: effect.kind }, 'several call effects at once: one decides');
    const outcome: CallOutcome = effect.kind === 'end_call' ? 'ended_by_assistant' : 'transferred';
    const closeCode = effect.kind === 'end_call' ? CloseCode.callEnded : CloseCode.handedOff;
    this.move({ type: 'wind-down', outcome, closeCode });
    this.background(this.deps.store.setPhase(this.callSid!, effect.kind === 'end_call' ? 'ending' : 'handing-off'), 'store.setPhase');
    this.cancelTimers.push(
      this.deps.clock.after(this.deps.limits.windDownMs, () => {
        if (this.state.kind === 'ending') this.finish(this.state.outcome, this.state.closeCode, 'goodbye timed out');
      }),
    );
    this.windDownResponseSeen = false;
  }

  private windDownResponseSeen = false;

  private onResponseDone(ev: Extract<ModelEvent, { type: 'response_done' }>): void {
    if (ev.usage) this.usage?.response(ev.usage);
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
    const s = this.state;
    if (!this.tools.responseDone(ev.responseId) && s.kind === 'ending' && (s.outcome !== 'too_long' || ev.responseId === this.goodbyeResponseId)) {
      // The goodbye response finished generating; close once it has played.
      this.windDownResponseSeen = true;
      this.maybeFinishWindDown();
    }
    this.maybeRenew();
  }

  /** MAX_CALL_SECONDS: the assistant says a goodbye and the call ends (4014), not the fallback. */
  private onCallTooLong(): void {
    if (this.state.kind === 'ending') return; // already saying goodbye
    if (this.state.kind !== 'live' || !this.model) return this.fail(CloseCode.callTooLong, 'call exceeded MAX_CALL_SECONDS', 'too_long');
    this.log.info({ maxCallMs: this.deps.limits.maxCallMs }, 'call reached MAX_CALL_SECONDS: saying goodbye');
    this.move({ type: 'wind-down', outcome: 'too_long', closeCode: CloseCode.callTooLong });
    this.windDownResponseSeen = false;
    this.background(this.deps.store.setPhase(this.callSid!, 'ending'), 'store.setPhase');
    this.responses.request(TIME_LIMIT_GOODBYE);
    this.cancelTimers.push(
      this.deps.clock.after(this.deps.limits.windDownMs, () => {
        if (this.state.kind === 'ending') this.finish(this.state.outcome, this.state.closeCode, 'goodbye timed out');
      }),
    );
  }

  /** The session's renewal time: from now, the first pause re-opens it (maybeRenew). */
  private armRenewal(): void {
    this.cancelRenewal?.();
    this.renewDue = false;
    const ms = this.deps.limits.modelSessionRenewMs ?? 0;
    if (ms <= 0) return;
    this.cancelRenewal = this.deps.clock.after(ms, () => {
      this.cancelRenewal = undefined;
      this.renewDue = true;
      this.maybeRenew();
    });
  }

  /**
   * Renew the model session before the API's cap, at a pause: no response active or owed, the caller
   * not speaking, no tool running, nothing left to play (so nothing of the old session needs a truncate).
   */
  private maybeRenew(): void {
    if (!this.renewDue || this.state.kind !== 'live' || !this.model) return;
    if (!this.responses.idle || this.callerSpeaking || this.answerOwed || this.tools.running || this.playout.unplayed) return;
    this.renewDue = false;
    this.reconnectOrFail('model session renewed before its time cap', 'renewal');
  }

  private maybeFinishWindDown(): void {
    const s = this.state;
    if (s.kind !== 'ending' || !this.windDownResponseSeen || this.playout.unplayed) return;
    this.finish(s.outcome, s.closeCode, s.outcome === 'transferred' ? 'handed to a human' : 'assistant ended the call');
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
    const cause = this.model?.clientEventType?.(ev.eventId);
    const { class: kind, benign } = classifyModelError(ev.code, cause);
    this.deps.metrics.modelErrors.labels('error', cause === 'session.update' ? 'session_update_rejected' : modelErrorLabel(ev.code)).inc();
    const detail = { code: 'model_protocol', modelCode: ev.code, detail: ev.message, eventId: ev.eventId, cause };
    if (kind === 'ignore') {
      if (benign) this.log.debug(detail, 'benign model race');
      else this.log.warn(detail, 'model error');
      return;
    }
    if (kind === 'session') {
      // The model's session cap (60 min) and the like: carry on in a new session if the call may.
      this.log.warn(detail, 'model session unusable');
      return this.reconnectOrFail(`model session ended (${ev.code})`, ev.code === 'session_expired' ? 'renewal' : 'drop');
    }
    // Keys, quota, billing, a session.update every session would refuse: fall back now (docs/wire-formats.md §8).
    this.log.error(detail, 'model cannot serve this call');
    const outcome: CallOutcome = this.state.kind === 'connecting' ? 'model_unavailable' : 'model_failed';
    this.fail(CloseCode.modelUnavailable, `model error ${ev.code}`, outcome);
  }

  /** The stall rule fired: the socket may still answer pings, but the session hears nothing. */
  private onModelStalled(): void {
    if (this.state.kind !== 'live' || !this.model) return;
    this.deps.metrics.modelErrors.labels('socket', 'stalled').inc();
    this.log.warn({ code: 'model_closed', stallMs: this.stall?.stallMs }, 'model silent while the caller talks');
    this.reconnectOrFail('model stalled');
  }

  private onModelClose(code: number, reason: string): void {
    this.model = undefined;
    if (this.state.kind === 'ended') return;
    if (reason === KEEPALIVE_CLOSE.reason) this.deps.metrics.modelErrors.labels('socket', 'keepalive_timeout').inc();
    this.log.warn({ code: 'model_closed', wsCode: code, reason }, 'model socket closed mid-call');
    if (this.state.kind === 'ending') return this.finish(this.state.outcome, this.state.closeCode, 'model closed while ending');
    // The cap's close (1001) spends the renewal budget, any other loss the drop budget.
    this.reconnectOrFail('model connection lost', isSessionCapClose(code, reason) ? 'renewal' : 'drop');
  }

  /**
   * Open a new model session with the conversation so far. Drops get MAX_RECONNECTS per call, renewals
   * (planned, or the cap reached) MAX_RENEWALS; past its budget the call ends with the fallback.
   */
  private reconnectOrFail(why: string, kind: 'drop' | 'renewal' = 'drop'): void {
    const old = this.model;
    this.model = undefined;
    old?.close(1000, kind === 'renewal' ? 'session renewal' : 'reconnecting');
    const spent = kind === 'drop' ? this.reconnects >= MAX_RECONNECTS : this.renewals >= MAX_RENEWALS;
    if (this.state.kind !== 'live' || spent) {
      return this.fail(CloseCode.modelUnavailable, why, 'model_failed');
    }
    if (kind === 'drop') this.reconnects++;
    else this.renewals++;
    this.move({ type: 'model-lost' });
    this.cancelRenewal?.();
    this.renewDue = false;
    this.callerSpeaking = false;
    this.answerOwed = false;
    this.stall?.reset();
    // Per-session state dies with the socket; audio already sent to Twilio keeps playing.
    this.sessionConfigured = false;
    this.modelCongested = false;
    this.appendSeq = 0;
    this.appends.clear(); // held for the lost session, which never heard the frames before them either
    // Nothing of the old session may be named in the new one: its items, responses, truncations.
    this.responses.reset();
    this.playout.newSession();
    this.history.newSession();
    this.tools.newSession();
    this.responseInstructions.clear();
    this.turnMetrics.forgetTurn();
    if (kind === 'renewal') this.log.info({ renewals: this.renewals }, `${why}: re-opening the model session`);
    else this.log.warn({ code: 'model_closed', attempt: this.reconnects }, `${why}: re-opening the model session`);
    void this.connectModel(true);
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

  // ---------------------------------------------------------------------------------------------
  // drain by migration (issue 16): the migrator moves the call; this side ends without ending it

  /** The stream's `to` / masked `from`, for the resume TwiML. */
  private parties: { fromMasked?: string; to?: string } = {};
  /** The migrator asked Twilio to move the call: the next stop is the move, not a hang-up. */
  private migrating = false;
  /** This side ended because the call moved (no outcome, record left live). */
  private movedOut = false;

  /** This call as the migrator sees it; undefined before it is authorised or after it ended. */
  migratable(): MigratableCall | undefined {
    const callSid = this.callSid;
    const tenant = this.tenant;
    if (!this.authorised || !callSid || !tenant || this.state.kind === 'ended') return undefined;
    return {
      callSid,
      tenant,
      parties: this.parties,
      migrationReadiness: () => this.migrationReadiness(),
      beginMigration: () => {
        this.migrating = true;
      },
      cancelMigration: () => this.cancelMigration(),
    };
  }

  private migrationReadiness(): MigrationReadiness {
    return migrationReadiness({
      state: this.state.kind,
      toolsOpen: this.tools.running,
      effectPending: this.tools.effectPending,
      restHandOff: this.tools.restHandedOff,
      // The caller mid-sentence, or owed an answer: what they said is in this session only.
      responding: !this.responses.idle || this.callerSpeaking || this.answerOwed,
      unplayed: this.playout.unplayed,
    });
  }

  /** Twilio stopped the stream of a call being moved: end this side, not the call. */
  private moveOut(reason: string): void {
    this.movedOut = true;
    // The outcome of the ended state is never counted or stored for a moved call.
    this.finish('drained', CloseCode.normal, reason);
  }

  /**
   * The migrator's update did not go through. Still streaming: the call stays here, phase back to
   * live. Stream already stopped: that stop was the caller hanging up, so the call ends as such.
   */
  private cancelMigration(): void {
    if (!this.migrating) return;
    this.migrating = false;
    const callSid = this.callSid;
    const tenant = this.tenant;
    if (!callSid || !tenant) return;
    if (!this.movedOut) {
      if (this.state.kind === 'live') this.background(this.deps.store.setPhase(callSid, 'live'), 'store.setPhase');
      return;
    }
    this.movedOut = false;
    this.deps.metrics.callsTotal.labels('caller_hung_up', tenant.id).inc();
    this.background(this.deps.store.endCall(callSid, 'caller_hung_up', tenant.retentionDays * 86_400), 'store.endCall');
    this.notify((l) => l.callEnded?.({ callSid, tenant, outcome: 'caller_hung_up' }));
  }

  private notify(fn: (l: CallLifecycleListener) => void): void {
    for (const l of this.deps.listeners ?? []) {
      try {
        fn(l);
      } catch (err) {
        this.log.warn({ code: 'internal', err: errorMessage(err) }, 'call lifecycle listener failed');
      }
    }
  }

  private move(input: CallInput): void {
    const next = transition(this.state, input);
    if (next) this.state = next;
  }

  private background(p: Promise<unknown>, what: string): void {
    p.catch((err: unknown) => this.log.warn({ code: 'store_unavailable', op: what, err: errorMessage(err) }, 'store write failed'));
  }

  /** End the call because something went wrong (or ran out): close Twilio with `code`. */
  fail(code: CloseCode, reason: string, outcome: CallOutcome): void {
    this.finish(outcome, code, reason);
  }

  /** The single exit: idempotent; closes both sockets, settles metrics and the store record. */
  finish(outcome: CallOutcome, code: number, reason: string): void {
    if (this.state.kind === 'ended') return;
    const wasStarted = this.state.kind !== 'awaiting-start';
    const callSid = this.callSid;
    this.move({ type: 'end', outcome });
    const usage = this.usage?.end();
    for (const c of this.cancelTimers) c();
    this.stall?.reset();
    this.connectAbort.abort();
    this.ring.clear();
    this.model?.close(1000, 'call ended');
    this.model = undefined;
    if (this.counted) {
      this.deps.metrics.activeCalls.dec();
      this.counted = false;
    }
    const moved = this.movedOut;
    if (wasStarted && !moved) {
      this.deps.metrics.callsTotal.labels(outcome, this.tenant?.id ?? 'unknown').inc();
    }
    let outcomeStored: Promise<void> | undefined;
    if (moved && callSid && this.tenant) {
      // The call goes on on another pod: no outcome, its record stays live; this pod lets go of it.
      const tenant = this.tenant;
      // The old leg's stop: the move's gap starts here (unless the adopter was quicker).
      this.background(this.deps.store.releaseCall(callSid, this.deps.pod, this.deps.clock.now()), 'store.releaseCall');
      this.notify((l) => l.callMoved?.({ callSid, tenant }));
    } else if (callSid && this.tenant) {
      const tenant = this.tenant;
      // Only while this pod holds the call: a call it released (moving) is its adopter's to end.
      outcomeStored = this.deps.store.endCall(callSid, outcome, tenant.retentionDays * 86_400, this.deps.pod);
      // [resume] Adopted but never relayed here (model unreachable, hung up in the gap).
      if (this.resume && !this.resume.live) this.deps.metrics.callMigrations.labels(this.resume.ctx.migration.reason, 'resume_failed').inc();
      this.background(outcomeStored, 'store.endCall');
      if (this.authorised) this.notify((l) => l.callEnded?.({ callSid, tenant, outcome }));
    }
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
        durationMs: this.startedAt ? this.deps.clock.now() - this.startedAt : 0,
        ...this.turnMetrics.summary(),
        toolCalls: this.tools.calls,
        reconnects: this.reconnects,
        renewals: this.renewals,
        transcriptionFailures: this.transcriptionFailures,
        ...this.stats,
        ...(usage ? { usage } : {}),
      },
      moved ? 'call moved to another pod' : 'call ended',
    );
    this.closeTwilio(code, reason, outcomeStored);
  }

  /**
   * Close the media socket once the outcome is stored. Twilio runs the TwiML after `</Connect>`
   * (the after-stream redirect) the moment the socket closes, possibly on another pod, which reads
   * the outcome from the store: written after the close, a goodbye could be answered with "our
   * assistant is unavailable". The wait is bounded: a store that does not answer does not hold
   * the line open (the after-stream route also waits a little for an outcome still being written).
   */
  private closeTwilio(code: number, reason: string, outcomeStored: Promise<void> | undefined): void {
    if (!this.playout.open || !outcomeStored) {
      this.playout.end(code, reason);
      this.onEnded(this);
      return;
    }
    let closed = false;
    const close = (): void => {
      if (closed) return;
      closed = true;
      cancel();
      this.playout.end(code, reason);
      this.onEnded(this);
    };
    const cancel = this.deps.clock.after(OUTCOME_STORE_WAIT_MS, close);
    outcomeStored.then(close, close);
  }
}
