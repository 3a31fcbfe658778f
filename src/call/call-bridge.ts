/**
 * One call, as its story: the Twilio media socket on one side, the model session on the other, and
 * the state the call is in. The per-frame path stays here, short and allocation-free (caller media to
 * an append, a model delta to media + mark, a mark echo); each other job has its module: the model
 * session (model-session.ts), the model's control events (conversation.ts), tool calls
 * (tool-dispatch.ts), the Twilio playout and barge-in bookkeeping (twilio-playout.ts), the last
 * words (wind-down.ts), a move between pods (call-move.ts), what is counted, stored and told
 * (call-ledger.ts). A little over 400 lines: the two sockets' handlers and the wiring of those parts
 * read best together, and splitting the per-frame path from them would add a call per frame.
 */
import type { Logger } from 'pino';
import { AppendBatcher } from './append-batcher.js';
import { ABNORMAL_CLOSE, CloseCode, errorMessage } from '../errors.js';
import { parseModelEvent, userText, type ModelEvent, type RealtimeSocket } from '../model/index.js';
import { ATTR, traceBindings, traceparentOf, type DropReason } from '../telemetry/index.js';
import type { Tenant } from '../tenants/index.js';
import { parseTwilioMessage, type TwilioInbound } from '../twilio/index.js';
import { AudioRing } from './audio-ring.js';
import type { Authorisation, BridgeDeps, StartInfo } from './bridge-deps.js';
import { buffersCallerAudio, relaysCallerAudio, tenantOf, transition, type CallInput, type CallState, type CallView } from './call-state.js';
import { ConversationHistory } from './conversation-history.js';
import { InboundGuard } from './inbound-guard.js';
import { seedHistory } from './resume.js';
import type { CallOutcome } from './lifecycle.js';
import { ModelSession, sessionConfig, type Replayed } from './model-session.js';
import { Conversation } from './conversation.js';
import { CallLedger } from './call-ledger.js';
import { callParties, CallMove } from './call-move.js';
import type { MigratableCall } from './migration.js';
import { TwilioPlayout, type TwilioSocket } from './twilio-playout.js';
import { ToolDispatch } from './tool-dispatch.js';
import { TurnMetrics } from './turn-metrics.js';
import { WindDown } from './wind-down.js';

export type { TwilioSocket } from './twilio-playout.js';
export type { AdmissionRefusal, Authorisation, BridgeDeps, BridgeLimits, ModelConnector, StartInfo } from './bridge-deps.js';

/** Conversation turns kept to replay into a new session after a reconnect. */
const HISTORY_TURNS = 40;

export class CallBridge implements CallView {
  state: CallState = { kind: 'awaiting-start' };
  /** The call's logger: it gains the call's ids as they are known. */
  log: Logger;
  /** Aborted when the call ends: a model connect or a tool in flight gives up. */
  private readonly callAbort = new AbortController();
  private readonly session: ModelSession;
  /** Drain by migration: the migrator moves the call; this leg then ends without ending it. */
  private readonly migration: CallMove;
  /** What the pod counts, stores and tells about the call. */
  private readonly ledger: CallLedger;
  /** The call's last words (end_call, transfer, the time limit) and when the line closes after them. */
  private readonly windDown: WindDown;
  /** The model's control events: turns, barge-in, responses, transcripts, tool calls. */
  private readonly conversation: Conversation;
  private readonly ring: AudioRing;
  private readonly playout: TwilioPlayout;
  private readonly tools: ToolDispatch;
  /** Messages Twilio would never send, and events of kinds we do not know. */
  private readonly inbound: InboundGuard;
  private readonly cancelTimers: (() => void)[] = [];
  private readonly turnMetrics = new TurnMetrics();
  private appendSeq = 0;
  private readonly appends: AppendBatcher;
  private modelCongested = false;
  private readonly history = new ConversationHistory(HISTORY_TURNS);
  private m2c: { observe(v: number): void } | undefined;
  /** Frames relayed/dropped, for the end-of-call log line. */
  readonly stats = { framesIn: 0, framesOut: 0, dropped: 0, bargeIns: 0, marksEchoed: 0 };

  constructor(
    private readonly twilio: TwilioSocket,
    private readonly deps: BridgeDeps,
    private readonly upgradeSignature: string | undefined,
    private readonly onEnded: (bridge: CallBridge) => void,
  ) {
    this.log = deps.log;
    // Parts with no part to call come first; the others reach parts built after them only through
    // closures, which none calls while the call is being built.
    this.ledger = new CallLedger({ ...deps, log: () => this.log });
    this.ring = new AudioRing(deps.limits.callerAudioRingFrames);
    this.inbound = new InboundGuard(deps.metrics);
    // caller_to_model is observed by the batcher when a frame's append is sent (the hold included).
    if (deps.limits.frameMetrics) this.m2c = deps.metrics.frameRelay.labels('model_to_caller');
    const c2m = deps.limits.frameMetrics ? { clock: deps.clock, histogram: deps.metrics.frameRelay.labels('caller_to_model') } : undefined;
    this.appends = new AppendBatcher(deps.limits.modelAppendFrames ?? 1, c2m);
    this.playout = new TwilioPlayout(twilio, deps.limits.twilioMaxBackpressureBytes, deps.limits.twilioMarkIntervalMs, deps.limits.twilioCoalesceMs, (reason, deltas) => {
      for (let i = 0; i < deltas; i++) this.drop('model_to_caller', reason);
    });
    const background = (p: Promise<unknown>, what: string): void => this.ledger.background(p, what);
    this.tools = new ToolDispatch({ ...deps, background, session: () => this.session.socket, followUp: () => this.onToolsAnswered(), stranded: () => this.onStrandedEffect() });
    this.session = new ModelSession(
      { connector: deps.model, clock: deps.clock, metrics: deps.metrics, limits: deps.limits, history: this.history, signal: this.callAbort.signal, timing: this.turnMetrics },
      this,
      {
        span: () => this.ledger.span,
        configure: () => sessionConfig(deps.model, deps.tools, this.tenant!),
        message: (data) => this.onModelMessage(data),
        ready: (model, replayed) => this.goLive(model, replayed),
        lost: () => this.sessionLost(),
        cutShort: (reason) => this.windDown.cutShort(reason),
        atPause: () => this.conversation.quiet && !this.tools.running && !this.playout.unplayed,
        callerSpeaking: () => this.conversation.callerSpeaking,
        decided: () => this.windDown.stranded(this.tools.takeEffects()),
      },
    );
    this.migration = new CallMove(
      { ...deps, background, notify: (fn) => this.ledger.notify(fn), settle: (sid, tenant, outcome) => void this.ledger.settle(sid, tenant, outcome) },
      this,
      {
        tenant: () => this.tenant,
        facts: () => ({
          toolsOpen: this.tools.running,
          effectPending: this.tools.effectPending,
          restHandOff: this.tools.restHandedOff,
          // The caller mid-sentence, or owed an answer: what they said is in this session only.
          responding: !this.conversation.quiet,
          unplayed: this.playout.unplayed,
        }),
      },
    );
    this.windDown = new WindDown(
      { clock: deps.clock, windDownMs: deps.limits.windDownMs, maxCallMs: deps.limits.maxCallMs, timers: this.cancelTimers },
      this,
      {
        move: (input) => this.move(input),
        unplayed: () => this.playout.unplayed,
        setPhase: (phase) => background(deps.store.setPhase(this.callSid!, phase), 'store.setPhase'),
        request: (instructions) => this.conversation.request(instructions, true),
      },
    );
    this.conversation = new Conversation(
      {
        clock: deps.clock, metrics: deps.metrics, store: deps.store, session: this.session, playout: this.playout, tools: this.tools,
        windDown: this.windDown, ledger: this.ledger, history: this.history, turnMetrics: this.turnMetrics, stats: this.stats, signal: this.callAbort.signal,
      },
      this,
      { span: () => this.ledger.span, background },
    );
    const startMs = deps.limits.startTimeoutMs ?? 0;
    if (startMs > 0) {
      this.cancelTimers.push(
        deps.clock.after(startMs, () => {
          if (this.ledger.admitted || this.state.kind === 'ended') return;
          this.log.warn({ code: 'twilio_protocol', timeoutMs: startMs }, 'no authorised start in time: media socket closed');
          this.finish('protocol_error', CloseCode.startTimeout, 'no authorised start in time');
        }),
      );
    }
  }

  /** True once the start was authorised and the pod admitted the call (it counts as a live call). */
  get admitted(): boolean {
    return this.ledger.admitted;
  }

  /** The call's tenant, once authorised (the state says it). */
  get tenant(): Tenant | undefined {
    return tenantOf(this.state);
  }

  /** The call's sid, from its `start` on (the state says it). */
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
    this.playout.tick(ts);
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
      this.appends.push(payload, model, t0);
      this.turnMetrics.appended(payload, this.deps.clock.mono());
    } else if (buffersCallerAudio(s)) {
      if (this.ring.push(payload)) this.drop('caller_to_model', 'model_not_ready');
    } else if (s.kind === 'awaiting-start') {
      this.finish('protocol_error', CloseCode.notStarted, 'media before start');
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
          this.conversation.request();
        }
        return;
      case 'stop':
        if (this.state.kind === 'awaiting-start') return this.finish('protocol_error', CloseCode.notStarted, 'stop before start');
        if (this.migration.leave('stream stopped by the call update')) return;
        if (this.session.socket) this.appends.flush(this.session.socket);
        this.finish(this.endedByTwilioOutcome(), CloseCode.normal, 'stream stopped');
        return;
    }
  }

  private onStart(m: Extract<TwilioInbound, { event: 'start' }>): void {
    if (this.state.kind !== 'awaiting-start') {
      return this.finish('protocol_error', CloseCode.streamMismatch, 'second start on one stream');
    }
    this.move({ type: 'start', streamSid: m.streamSid, callSid: m.callSid });
    this.ledger.started(m.callSid, this.deps.model.provider);
    this.playout.started(m.streamSid);
    this.log = this.deps.log.child({ callSid: m.callSid, streamSid: m.streamSid, ...traceBindings(this.ledger.span) });
    this.cancelTimers.push(this.deps.clock.after(this.deps.limits.maxCallMs, () => this.windDown.timeUp()));
    const { streamSid, callSid, accountSid, customParameters } = m;
    const traceparent = traceparentOf(this.ledger.span);
    const start: StartInfo = { streamSid, callSid, accountSid, customParameters, ...(traceparent !== undefined ? { traceparent } : {}) };
    this.deps.authorise(start, this.upgradeSignature).then(
      (a) => this.onAuthorised(a, start),
      (err: unknown) => {
        this.log.warn({ code: 'store_unavailable', err: errorMessage(err) }, 'stream authorisation failed');
        this.finish('protocol_error', CloseCode.internalError, 'authorisation unavailable');
      },
    );
  }

  private onAuthorised(a: Authorisation, start: StartInfo): void {
    if (this.state.kind !== 'verifying') return; // hung up meanwhile
    if (!a.ok) {
      const code = a.code === CloseCode.signatureInvalid ? 'signature_invalid' : a.code === CloseCode.callHeldElsewhere ? 'conflict' : 'stream_token_invalid';
      this.log.warn({ code, reason: a.reason }, 'media stream refused');
      return this.finish(a.outcome, a.code, a.reason);
    }
    const refusal = this.deps.admit?.();
    if (refusal) {
      this.log.warn({ code: refusal.outcome === 'drained' ? 'draining' : 'rate_limited', tenant: a.tenant.id, reason: refusal.reason }, 'media stream refused');
      return this.finish(refusal.outcome, refusal.code, refusal.reason);
    }
    this.log = this.log.child({ tenant: a.tenant.id });
    this.move({ type: 'authorised', tenant: a.tenant });
    this.ledger.admit(start.callSid, a.tenant, () => this.tools.calls);
    if (a.resume) {
      // [resume] A moved call, adopted by this pod (resume.ts): its record exists; rebuild from it.
      this.session.adopt(a.resume);
      seedHistory(this.history, a.resume.record);
      this.log = this.migration.adopted(a.resume, this.ledger.span, this.log);
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
    this.finish('protocol_error', ABNORMAL_CLOSE, detail);
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

  private onModelMessage(data: Buffer): void {
    const t0 = this.deps.clock.mono();
    const ev = parseModelEvent(data);
    if (ev.type === 'audio_delta') return this.onModelAudio(ev, t0);
    this.conversation.event(ev);
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
      this.conversation.turnSpan?.setAttribute(ATTR.turnLatencyMs, Math.round(seconds * 1000));
    }
  }

  /** A model session is configured and knows the conversation: the call is live (again). */
  private goLive(model: RealtimeSocket, replayed: Replayed): void {
    this.move({ type: 'model-ready', model });
    if (replayed === 'moved') this.migration.resumed(this.session.adopted!, this.callSid!);
    else if (replayed === 'nothing') this.ledger.background(this.deps.store.setPhase(this.callSid!, 'live'), 'store.setPhase');
    // Audio that arrived while we connected goes first, in order: one append per held frame.
    this.turnMetrics.restartStream();
    const now = this.deps.clock.mono();
    this.ring.drain((payload) => {
      this.appends.send(payload, model);
      this.turnMetrics.appended(payload, now);
    });
    this.conversation.live(replayed, this.tenant!);
  }

  /** The model session is gone and a new one opening: nothing of the old one may be named in the new one. */
  private sessionLost(): void {
    this.move({ type: 'model-lost' });
    // Per-session state dies with the socket; audio already sent to Twilio keeps playing.
    this.modelCongested = false;
    this.appendSeq = 0;
    this.appends.clear(); // held for the lost session, which never heard the frames before them either
    // Its items, responses, truncations.
    this.conversation.newSession();
    this.playout.newSession();
    this.tools.newSession();
    this.turnMetrics.forgetTurn();
  }

  /**
   * A response's tools all answered: act on what the tools asked for, then ask for the spoken
   * answer, which says the call's last words when the call is (now) ending.
   */
  private onToolsAnswered(): void {
    if (this.state.kind === 'live' || this.state.kind === 'ending') this.windDown.effects(this.tools.takeEffects());
    this.conversation.request(undefined, this.state.kind === 'ending');
  }

  /**
   * A tool of a lost session answered with an effect: it stands. Live on a new session (which knows
   * nothing of the tool) or still opening one, the call carries it out at once, as for an effect
   * collected when the session was lost; saying its last words, a transfer re-targets the ending.
   */
  private onStrandedEffect(): void {
    const k = this.state.kind;
    if (k === 'live' || k === 'reconnecting') this.windDown.stranded(this.tools.takeEffects());
    else if (k === 'ending') this.windDown.effects(this.tools.takeEffects());
  }

  private drop(direction: 'caller_to_model' | 'model_to_caller', reason: DropReason): void {
    this.stats.dropped++;
    this.deps.metrics.framesDropped.labels(direction, reason).inc();
  }

  private unknownEvent(detail: string): void {
    if (this.state.kind !== 'ended') this.inbound.unknown(detail, this.log);
  }

  private invalid(reason: string, detail: string): void {
    if (this.state.kind === 'ended') return; // uWS may deliver a few messages after end()
    const close = this.inbound.invalid(reason, detail, this.log, this.state.kind === 'awaiting-start');
    if (close) this.finish('protocol_error', close.code, close.reason);
  }

  /** This call as the migrator sees it; undefined before it is authorised or after it ended. */
  migratable(): MigratableCall | undefined {
    return this.migration.migratable();
  }

  private move(input: CallInput): void {
    const next = transition(this.state, input);
    if (next) this.state = next;
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
    this.conversation.end();
    const { usage, stored } = this.ledger.end({ callSid, tenant: this.tenant, outcome, reason, started, moved, unresumed: this.session.resumeFailed });
    // The call goes on on another pod: no outcome, its record stays live; this pod lets go of it.
    if (moved && callSid && this.tenant) this.migration.release(callSid, this.tenant);
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
        transcriptionFailures: this.conversation.transcriptionFailures,
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
