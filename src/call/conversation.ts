/**
 * The conversation as the model's control events tell it (everything but audio deltas, which are
 * the bridge's per-frame path): the caller's turns and barge-in, the responses (the relay's own
 * requests one at a time, a failed one asked for once more, the greeting said once), the
 * transcripts kept for the record and for a new session, tool calls handed to the dispatch, and the
 * session's own events handed to the model session.
 */
import type { Span } from '@opentelemetry/api';
import type { Clock } from '../clock.js';
import { classifyFailedResponse, INTERRUPT_RESPONSE, modelErrorLabel, responseCancel, truncateItem, type ModelEvent } from '../model/index.js';
import type { CallStore } from '../store/index.js';
import { maskNumbersInText } from '../store/call-store.js';
import { ATTR, childSpan, endSpan, SPAN, type RelayMetrics } from '../telemetry/index.js';
import type { Tenant } from '../tenants/index.js';
import type { CallLedger } from './call-ledger.js';
import { tenantOf, type CallView } from './call-state.js';
import type { ConversationHistory } from './conversation-history.js';
import type { ModelSession, Replayed } from './model-session.js';
import { ResponseSequencer } from './response-sequencer.js';
import type { ToolDispatch } from './tool-dispatch.js';
import type { TurnMetrics } from './turn-metrics.js';
import type { TwilioPlayout } from './twilio-playout.js';
import type { WindDown } from './wind-down.js';

/** The greeting's instructions start so (the tenant's greeting follows). */
const GREETING_PREFIX = 'Greet the caller with exactly: ';
/** A failed response (response.done status failed) is asked for again once; a second failure falls back. */
const MAX_RESPONSE_RETRIES = 1;

type ControlEvent = Exclude<ModelEvent, { type: 'audio_delta' }>;

/**
 * What the conversation uses of the call's other parts, and only that: a test (or a new part)
 * gives it these few members, not the parts.
 */
export interface ConversationDeps {
  clock: Clock;
  metrics: RelayMetrics;
  store: Pick<CallStore, 'appendTranscript'>;
  session: Pick<ModelSession, 'socket' | 'ask' | 'callerStopped' | 'configure' | 'error' | 'maybeRenew' | 'fail'>;
  playout: Pick<TwilioPlayout, 'unplayed' | 'closeItems' | 'interrupt' | 'isDiscarded'>;
  tools: Pick<ToolDispatch, 'dispatch' | 'owns' | 'responseDone'>;
  windDown: Pick<WindDown, 'created' | 'responseDone'>;
  ledger: Pick<CallLedger, 'response'>;
  history: Pick<ConversationHistory, 'all' | 'lastRole' | 'caller' | 'assistant' | 'truncate' | 'newSession'>;
  turnMetrics: Pick<TurnMetrics, 'turnEnded'>;
  /** The call's counters for its end-of-call line. */
  stats: { bargeIns: number };
  /** Aborted when the call ends (tools in flight give up). */
  signal: AbortSignal;
}

/** What the conversation needs of the call beyond its view. */
export interface ConversationHost {
  /** The call span (a turn's parent). */
  span(): Span | undefined;
  /** A store write whose failure is logged, never awaited. */
  background(p: Promise<unknown>, what: string): void;
}

export class Conversation {
  /** The caller's turn now: from server VAD's speech_stopped to the response that answers it. */
  turnSpan: Span | undefined;
  /** Caller turns the model could not transcribe. */
  transcriptionFailures = 0;
  /** One model response at a time: the relay's own response.create requests wait their turn. */
  private readonly responses: ResponseSequencer;
  /** Instructions of live responses the relay asked for (the greeting), for a retry after `failed`. */
  private readonly instructions = new Map<string, string | undefined>();
  private failedResponses = 0;
  /** The greeting was spoken (or cut by the caller): a new session never greets again (nor once the assistant spoke). */
  private greeted = false;
  /** speech_started seen, speech_stopped not yet: the one record of it (the sequencer and the stall rule ask). */
  private speaking = false;
  /** After speech_stopped, the answer server VAD owes us. */
  private answerOwed = false;

  constructor(
    private readonly deps: ConversationDeps,
    private readonly call: CallView,
    private readonly host: ConversationHost,
  ) {
    this.responses = new ResponseSequencer((text) => deps.session.ask(text), 'sb_response_', () => this.speaking);
  }

  /** Server VAD hears the caller now. */
  get callerSpeaking(): boolean {
    return this.speaking;
  }

  /** Nobody is speaking or owed an answer, no response active, asked for or queued: a pause. */
  get quiet(): boolean {
    return this.responses.idle && !this.speaking && !this.answerOwed;
  }

  /** Ask the model to respond (with these instructions), when no response is active; `lastWords`: the call's last words. */
  request(instructions?: string, lastWords = false): void {
    this.responses.request(instructions, lastWords);
  }

  /** A session is live and knows the conversation: greet a new call (or one never greeted), or answer the caller's last words. */
  live(replayed: Replayed, tenant: Tenant): void {
    const { history } = this.deps;
    if (replayed === 'nothing' || !(this.greeted || history.all.some((h) => h.role === 'assistant'))) {
      // A new call, or a session lost before its greeting was spoken: greet (once it was, never again).
      this.responses.request(GREETING_PREFIX + tenant.model.greeting);
    } else if (history.lastRole === 'caller') {
      this.responses.request(); // the caller's last words were never answered
    }
  }

  /** The model session is gone: nothing of it is active, owed or pending. */
  newSession(): void {
    this.speaking = false;
    this.answerOwed = false;
    this.responses.reset();
    this.deps.history.newSession();
    this.instructions.clear();
  }

  /** The call ended: its open turn with it. */
  end(): void {
    endSpan(this.turnSpan);
    this.turnSpan = undefined;
  }

  /** One model event (not audio). */
  event(ev: ControlEvent): void {
    const { deps } = this;
    switch (ev.type) {
      case 'session.created':
        return;
      case 'session.updated':
        return deps.session.configure(ev.audioFormatOk);
      case 'speech_started':
        this.speaking = true;
        return this.bargeIn();
      case 'speech_stopped':
        this.speaking = false;
        deps.session.callerStopped();
        this.answerOwed = true;
        endSpan(this.turnSpan);
        // A turn, everywhere (log line, API, `npm run call`, turn latency): the caller stopped speaking.
        this.turnSpan = childSpan(SPAN.turn, this.host.span(), {
          [ATTR.turnIndex]: deps.turnMetrics.turnEnded(ev.audioEndMs, deps.clock.mono()),
        });
        this.responses.onSpeechStopped();
        return;
      case 'response_created': {
        this.answerOwed = false;
        // Kept so a failed response can be asked for again with the same instructions (the greeting).
        const answered = this.responses.onCreated(ev.responseId);
        const instructions = answered?.instructions;
        this.instructions.set(ev.responseId, instructions);
        deps.windDown.created(ev.responseId, answered?.lastWords === true);
        return;
      }
      case 'audio_done':
        deps.playout.closeItems();
        return;
      case 'assistant_transcript':
        this.record({ role: 'assistant', text: ev.transcript, at: deps.clock.now(), itemId: ev.itemId, ...(deps.playout.isDiscarded(ev.responseId) ? { interrupted: true } : {}) });
        return;
      case 'caller_transcript':
        this.record({ role: 'caller', text: ev.transcript, at: deps.clock.now() });
        return;
      case 'caller_transcript_failed':
        return this.transcriptionFailed(ev);
      case 'function_call':
        return this.toolCall(ev);
      case 'response_done':
        return this.responseDone(ev);
      case 'error':
        return this.error(ev);
      case 'ignored': {
        const log = this.call.log;
        if (log.isLevelEnabled('debug')) log.debug({ eventType: ev.eventType }, 'model event ignored');
        return;
      }
      case 'invalid':
        this.call.log.warn({ code: 'model_protocol', detail: ev.detail }, 'unparseable model event');
        return;
    }
  }

  /** Barge-in (docs/wire-formats.md §7): clear Twilio, truncate to what was heard, stop the response's audio. */
  private bargeIn(): void {
    const { deps } = this;
    const active = this.responses.activeResponseId;
    if (!deps.playout.unplayed && !active) return;
    deps.stats.bargeIns++;
    deps.metrics.bargeIns.inc();
    this.turnSpan?.setAttribute(ATTR.bargeIn, true);
    const model = deps.session.socket;
    for (const t of deps.playout.interrupt(active)) {
      model?.send(truncateItem(t.itemId, t.contentIndex, t.audioEndMs));
      deps.history.truncate(t.itemId, t.audioEndMs, t.sentMs);
    }
    if (active) {
      // With interrupt_response the server has cancelled it already (a cancel would only earn
      // response_cancel_not_active); otherwise cancel what is still active.
      if (!INTERRUPT_RESPONSE) model?.send(responseCancel(active));
    }
  }

  private toolCall(ev: Extract<ControlEvent, { type: 'function_call' }>): void {
    const tenant = tenantOf(this.call.state);
    const callSid = this.call.callSid;
    if (!tenant || !callSid) return;
    this.deps.tools.dispatch(ev, { callSid, tenant, log: this.call.log, signal: this.deps.signal, parentSpan: this.turnSpan ?? this.host.span() });
  }

  private responseDone(ev: Extract<ControlEvent, { type: 'response_done' }>): void {
    const { deps } = this;
    if (ev.usage) deps.ledger.response(ev.usage);
    deps.playout.closeItems();
    this.responses.onDone(ev.responseId);
    if (!deps.tools.owns(ev.responseId)) {
      endSpan(this.turnSpan, ev.status === 'failed' ? `response ${ev.reason ?? 'failed'}` : undefined);
      this.turnSpan = undefined;
    }
    const instructions = this.instructions.get(ev.responseId);
    this.instructions.delete(ev.responseId);
    if (ev.status !== 'failed' && instructions?.startsWith(GREETING_PREFIX)) this.greeted = true;
    if (ev.status === 'failed') {
      if (this.responseFailed(ev.reason, instructions)) return;
    } else if (ev.status === 'completed') {
      this.failedResponses = 0;
    }
    // A response that asked for tools is followed up by them; another one may be the goodbye.
    if (!deps.tools.responseDone(ev.responseId)) deps.windDown.responseDone(ev.responseId);
    deps.session.maybeRenew();
  }

  /**
   * A response ended `failed` (status_details.error): ask once more, then fall back (the model
   * session's rule: an answered tool's effect is carried out instead). Returns true when the call
   * was ended. While ending (the goodbye failed) the wind-down simply goes on.
   */
  private responseFailed(reason: string | undefined, instructions: string | undefined): boolean {
    this.deps.metrics.modelErrors.labels('response', modelErrorLabel(reason ?? 'response_failed')).inc();
    const fatal = classifyFailedResponse(reason) === 'call';
    this.call.log.warn({ code: 'model_protocol', reason, retry: !fatal && this.failedResponses === 0 }, 'model response failed');
    const state = this.call.state.kind;
    if (state !== 'live' && state !== 'connecting') return false;
    if (fatal || this.failedResponses >= MAX_RESPONSE_RETRIES) {
      this.deps.session.fail(`model response failed (${reason ?? 'unknown'})`, 'model_failed');
      return true;
    }
    this.failedResponses++;
    this.responses.request(instructions);
    return false;
  }

  /** An `error` event: our response.create rejected (queued again), else the session's to judge. */
  private error(ev: Extract<ControlEvent, { type: 'error' }>): void {
    if (this.responses.onError(ev.code, ev.eventId)) {
      this.deps.metrics.modelErrors.labels('error', modelErrorLabel(ev.code)).inc();
      this.call.log.debug({ code: ev.code, eventId: ev.eventId }, 'response.create rejected; queued behind the active response');
      return;
    }
    this.deps.session.error(ev);
  }

  /**
   * A caller turn the model could not transcribe: the conversation goes on (the model heard the
   * audio), but the transcript, summary and reconnect replay miss it. On Azure every turn fails
   * this way when REALTIME_TRANSCRIPTION_MODEL is not a deployment name: say so once per call.
   */
  private transcriptionFailed(ev: Extract<ControlEvent, { type: 'caller_transcript_failed' }>): void {
    this.deps.metrics.transcriptionFailures.inc();
    if (this.transcriptionFailures++ > 0) return;
    this.call.log.warn(
      { code: 'model_protocol', modelCode: ev.code, detail: ev.message },
      'caller speech could not be transcribed (check REALTIME_TRANSCRIPTION_MODEL); further failures on this call are only counted',
    );
  }

  private record(entry: { role: 'caller' | 'assistant'; text: string; at: number; itemId?: string; interrupted?: boolean }): void {
    const { itemId, ...stored } = entry;
    const { history, store } = this.deps;
    if (entry.role === 'caller') history.caller(entry.text);
    else history.assistant(entry.text, itemId ?? '', entry.interrupted === true);
    const sid = this.call.callSid;
    // Stored masked (phone and card numbers): Redis never holds them, whoever reads it later.
    if (sid) this.host.background(store.appendTranscript(sid, { ...stored, text: maskNumbersInText(stored.text) }), 'store.appendTranscript');
  }
}
