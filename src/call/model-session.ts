/**
 * The call's model side, one session after another: connect, configure (`session.update`, then
 * `session.updated` with μ-law both ways, within the connect timeout), the conversation replayed
 * into a new session (after a drop, a renewal, or when a moved call is adopted), a new session
 * after a drop or at the cap within per-call budgets, the planned renewal at a pause, and the stall
 * rule. The call sends through `socket` (the configured one also rides in the live state) and
 * `ask`, hands over the session's own events (`configure` for session.updated, `error`), and hears
 * back through ModelSessionHost. Parsing model events stays with the bridge: it is the per-frame path.
 */
import type { Span } from '@opentelemetry/api';
import type { Clock } from '../clock.js';
import { CloseCode, errorMessage, SwitchboardError } from '../errors.js';
import {
  assistantText,
  classifyModelError,
  isSessionCapClose,
  KEEPALIVE_CLOSE,
  modelErrorLabel,
  sessionUpdate,
  userText,
  type ModelEvent,
  type RealtimeSocket,
} from '../model/index.js';
import { ATTR, childSpan, endSpan, SPAN, type RelayMetrics } from '../telemetry/index.js';
import type { Tenant } from '../tenants/index.js';
import type { ToolRunner } from '../tools/index.js';
import type { BridgeLimits, ModelConnector } from './bridge-deps.js';
import type { CallView } from './call-state.js';
import type { ConversationHistory } from './conversation-history.js';
import type { CallOutcome } from './lifecycle.js';
import { resumeItems, type ResumeContext } from './resume.js';
import { StallWatch } from './stall-watch.js';
import type { TurnMetrics } from './turn-metrics.js';

/** Model sessions re-opened per call after a drop or session expiry (docs/wire-formats.md §8). */
export const MAX_RECONNECTS = 1;
/**
 * Planned session renewals per call (and sessions ended by the cap): a separate budget from drops,
 * so a call that survived a drop still outlives the cap. 8 covers MAX_CALL_SECONDS' 4-hour ceiling.
 */
export const MAX_RENEWALS = 8;

/** The `session.update` every session of a call is configured with: the tenant's instructions, voice, tools and language. */
export function sessionConfig(connector: ModelConnector, tools: ToolRunner, tenant: Tenant): string {
  return sessionUpdate({
    shape: connector.shape,
    instructions: tenant.model.instructions,
    voice: tenant.model.voice,
    tools: tools.definitions(tenant),
    language: tenant.model.language,
    ...(connector.transcriptionModel !== undefined ? { transcriptionModel: connector.transcriptionModel } : {}),
  });
}

/** What a configured session was told of the call before it: nothing, the history so far, or a moved call's stored conversation. */
export type Replayed = 'nothing' | 'history' | 'moved';

/** What the model session needs of the call beyond its view. */
export interface ModelSessionHost {
  /** The call span (the connect span's parent). */
  span(): Span | undefined;
  /** The `session.update` every session of the call is configured with. */
  configure(): string;
  /** Every message of the current socket, in order (stale sockets' messages never come). */
  message(data: Buffer): void;
  /** A session is configured and told the conversation; the call may go live. */
  ready(socket: RealtimeSocket, replayed: Replayed): void;
  /** The session is gone and a new one is opening: forget everything of the old one. */
  lost(): void;
  /** The session can no longer say the call's last words (it closed, or failed): end the call as it was ending. */
  cutShort(reason: string): void;
  /** No pause, no renewal: nothing is being said, owed, run or played. */
  atPause(): boolean;
  /** Server VAD hears the caller now (speech_started, no speech_stopped yet). */
  callerSpeaking(): boolean;
  /**
   * The live session is lost (to be re-opened, or past saving): true when a tool had already
   * decided the call's end (end_call, transfer) and the call carried it out, so no session is needed.
   */
  decided(): boolean;
}

export interface ModelSessionDeps {
  connector: ModelConnector;
  clock: Clock;
  metrics: RelayMetrics;
  limits: Pick<BridgeLimits, 'modelConnectTimeoutMs' | 'modelSessionRenewMs' | 'modelStallMs'>;
  /** The conversation so far, replayed into a new session. */
  history: ConversationHistory;
  /** Aborted when the call ends (a connect in flight gives up). */
  signal: AbortSignal;
  /** Where the first session's connect time goes (model connect to configured session, ms). */
  timing: Pick<TurnMetrics, 'connectMs'>;
}

export class ModelSession {
  /** The socket of the current session (configured or not); undefined between sessions and after the end. */
  socket: RealtimeSocket | undefined;
  /** Sessions re-opened after a drop, and renewals (planned, or the cap reached). */
  reconnects = 0;
  renewals = 0;
  private configured = false;
  private onConfigured: (() => void) | undefined;
  private renewDue = false;
  private cancelRenewal: (() => void) | undefined;
  private readonly stall: StallWatch | undefined;
  /** [resume] A moved call adopted by this pod; `live` once its first session replayed the conversation. */
  private moved: { ctx: ResumeContext; live: boolean } | undefined;
  private readonly timers: (() => void)[] = [];

  constructor(
    private readonly deps: ModelSessionDeps,
    private readonly call: CallView,
    private readonly host: ModelSessionHost,
  ) {
    const stallMs = deps.limits.modelStallMs ?? 0;
    if (stallMs > 0) this.stall = new StallWatch(stallMs, deps.clock, () => this.onStalled(), () => host.callerSpeaking());
    this.timers.push(() => this.cancelRenewal?.());
  }

  /** [resume] The call was adopted after a move: its first session re-creates the stored conversation. */
  adopt(ctx: ResumeContext): void {
    this.moved = { ctx, live: false };
  }

  /** [resume] How the call came to this pod, when it was adopted after a move. */
  get adopted(): ResumeContext | undefined {
    return this.moved?.ctx;
  }

  /** [resume] Adopted but never relayed here (the model unreachable, a hang-up in the gap). */
  get resumeFailed(): ResumeContext | undefined {
    return this.moved && !this.moved.live ? this.moved.ctx : undefined;
  }

  /** One caller frame in eight, sampled for the stall rule (allocation-free). */
  sample(payload: string, now: number): void {
    this.stall?.sample(payload, now);
  }

  /** Send an event the model owes an answer to (`response.create`). */
  ask(text: string): void {
    this.socket?.send(text);
    this.stall?.expectEvent();
  }

  /** Server VAD: the caller stopped speaking; an answer is owed. */
  callerStopped(): void {
    this.stall?.expectEvent();
  }

  /** Open a session: the first, or (`again`) one after a drop or renewal. */
  async open(again = false): Promise<void> {
    const { clock, connector, metrics } = this.deps;
    const t0 = clock.mono();
    const provider = connector.provider;
    const span = childSpan(SPAN.connect, this.host.span(), { [ATTR.provider]: provider });
    let sock: RealtimeSocket;
    try {
      sock = await connector.connect(this.deps.signal, this.call.log);
    } catch (err) {
      endSpan(span, errorMessage(err));
      metrics.upstreamConnect.labels(provider, 'failed').observe((clock.mono() - t0) / 1000);
      if (this.call.state.kind === 'ended') return;
      const code = err instanceof SwitchboardError ? err.code : 'model_unreachable';
      this.call.log.warn({ code, err: errorMessage(err), resume: again }, 'model unreachable; caller gets the fallback');
      return this.fail('model unavailable', again ? 'model_failed' : 'model_unavailable');
    }
    if (this.call.state.kind === 'ended') {
      endSpan(span, 'call ended while connecting');
      sock.close(1000, 'call ended');
      return;
    }
    this.socket = sock;
    // Events of a socket we have moved on from (reconnect) are ignored.
    sock.onMessage((data) => {
      if (this.socket !== sock) return;
      this.stall?.modelEvent();
      this.host.message(data);
    });
    sock.onClose((code, reason) => {
      if (this.socket === sock) this.onClose(code, reason);
    });
    sock.send(this.host.configure());
    const cancel = clock.after(this.deps.limits.modelConnectTimeoutMs, () => {
      if (this.configured || this.call.state.kind === 'ended') return;
      endSpan(span, 'session.update not confirmed');
      metrics.upstreamConnect.labels(provider, 'failed').observe((clock.mono() - t0) / 1000);
      this.call.log.warn({ code: 'model_protocol' }, 'model never confirmed session.update');
      this.fail('model session not configured', again ? 'model_failed' : 'model_unavailable');
    });
    this.timers.push(cancel, () => span.end());
    this.onConfigured = () => {
      cancel();
      span.end();
      this.deps.timing.connectMs ??= Math.round(clock.mono() - t0);
      metrics.upstreamConnect.labels(provider, 'ok').observe((clock.mono() - t0) / 1000);
    };
  }

  /** `session.updated`: the first of a session configures it, replays the conversation and hands it to the call. */
  configure(audioFormatOk: boolean): void {
    if (this.configured) return;
    if (!audioFormatOk) {
      // A rejected or partial session.update leaves 24 kHz PCM: forwarding it would be static.
      this.call.log.error({ code: 'model_protocol' }, 'model did not accept μ-law audio');
      return this.fail('model audio format not μ-law', 'model_failed');
    }
    this.configured = true;
    this.onConfigured?.();
    const state = this.call.state.kind;
    const sock = this.socket;
    if ((state !== 'connecting' && state !== 'reconnecting') || !sock) return;
    this.armRenewal();
    this.host.ready(sock, this.replay(sock, state === 'reconnecting'));
  }

  /** What a new session must know before it hears the caller again. */
  private replay(sock: RealtimeSocket, reopened: boolean): Replayed {
    const shape = this.deps.connector.shape;
    const moved = this.moved;
    if (moved && !moved.live) {
      // [resume] The first session of a moved call: the stored conversation, tool calls included.
      moved.live = true;
      const items = resumeItems(moved.ctx.record, shape);
      for (const item of items) sock.send(item);
      this.call.log.info({ replayed: items.length }, 'moved call resumed with its conversation');
      return 'moved';
    }
    if (!reopened && !moved) return 'nothing';
    // A new session knows nothing: replay the conversation as text, then carry on.
    const history = this.deps.history.all;
    for (const h of history) sock.send(h.role === 'caller' ? userText(h.text) : assistantText(h.text, shape));
    this.call.log.info({ replayed: history.length }, 'model session re-opened with the conversation so far');
    return 'history';
  }

  /** An `error` event not answering the relay's own response.create: ignore it, re-open the session, or fail the call. */
  error(ev: Extract<ModelEvent, { type: 'error' }>): void {
    const cause = this.socket?.clientEventType?.(ev.eventId);
    const { class: kind, benign } = classifyModelError(ev.code, cause);
    this.deps.metrics.modelErrors.labels('error', cause === 'session.update' ? 'session_update_rejected' : modelErrorLabel(ev.code)).inc();
    const detail = { code: 'model_protocol', modelCode: ev.code, detail: ev.message, eventId: ev.eventId, cause };
    const log = this.call.log;
    if (kind === 'ignore') {
      if (benign) log.debug(detail, 'benign model race');
      else log.warn(detail, 'model error');
      return;
    }
    if (kind === 'session') {
      // The model's session cap (60 min) and the like: carry on in a new session if the call may.
      log.warn(detail, 'model session unusable');
      return this.reopen(`model session ended (${ev.code})`, ev.code === 'session_expired' ? 'renewal' : 'drop');
    }
    // Keys, quota, billing, a session.update every session would refuse: fall back now (docs/wire-formats.md §8).
    log.error(detail, 'model cannot serve this call');
    this.fail(`model error ${ev.code}`, this.call.state.kind === 'connecting' ? 'model_unavailable' : 'model_failed');
  }

  /**
   * Renew the session before the API's cap, at a pause (ModelSessionHost.atPause: no response active
   * or owed, the caller not speaking, no tool running, nothing left to play, so nothing of the old
   * session needs a truncate). Called whenever a pause may have begun: by the renewal timer
   * here, the conversation when a response is done (conversation.ts), and the bridge when
   * Twilio echoes a mark (the last audio may have played).
   */
  maybeRenew(): void {
    if (!this.renewDue || this.call.state.kind !== 'live' || !this.socket) return;
    if (!this.host.atPause()) return;
    this.renewDue = false;
    this.reopen('model session renewed before its time cap', 'renewal');
  }

  /** The call ended: timers off, the socket closed (a connect in flight gives up on the aborted signal). */
  end(): void {
    for (const c of this.timers) c();
    this.stall?.reset();
    this.socket?.close(1000, 'call ended');
    this.socket = undefined;
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

  /** The stall rule fired: the socket may still answer pings, but the session hears nothing. */
  private onStalled(): void {
    if (this.call.state.kind !== 'live' || !this.socket) return;
    this.deps.metrics.modelErrors.labels('socket', 'stalled').inc();
    this.call.log.warn({ code: 'model_closed', stallMs: this.stall?.stallMs }, 'model silent while the caller talks');
    this.reopen('model stalled');
  }

  private onClose(code: number, reason: string): void {
    this.socket = undefined;
    const state = this.call.state.kind;
    if (state === 'ended') return;
    if (reason === KEEPALIVE_CLOSE.reason) this.deps.metrics.modelErrors.labels('socket', 'keepalive_timeout').inc();
    this.call.log.warn({ code: 'model_closed', wsCode: code, reason }, 'model socket closed mid-call');
    if (state === 'ending') return this.host.cutShort('model closed while ending');
    // The cap's close (1001) spends the renewal budget, any other loss the drop budget.
    this.reopen('model connection lost', isSessionCapClose(code, reason) ? 'renewal' : 'drop');
  }

  /**
   * The model cannot serve the call any more (a fatal error or failed response, a session past
   * saving): the fallback (close 4010), unless a tool already decided how the call ends. Once a
   * tool has answered, its effect stands: carried out now (live), or, while the last words are
   * being said, the call ends as it was ending (end_call, transfer, the time limit).
   */
  fail(reason: string, outcome: CallOutcome): void {
    const state = this.call.state.kind;
    if (state === 'ending') return this.host.cutShort(`${reason} while ending`);
    if (state === 'live' && this.host.decided()) return;
    this.call.finish(outcome, CloseCode.modelUnavailable, reason);
  }

  /**
   * Open a new session with the conversation so far. Drops get MAX_RECONNECTS per call, renewals
   * (planned, or the cap reached) MAX_RENEWALS; past its budget the call ends with the fallback.
   */
  private reopen(why: string, kind: 'drop' | 'renewal' = 'drop'): void {
    const old = this.socket;
    this.socket = undefined;
    old?.close(1000, kind === 'renewal' ? 'session renewal' : 'reconnecting');
    if (this.call.state.kind === 'live' && this.host.decided()) return;
    const spent = kind === 'drop' ? this.reconnects >= MAX_RECONNECTS : this.renewals >= MAX_RENEWALS;
    if (this.call.state.kind !== 'live' || spent) return this.fail(why, 'model_failed');
    if (kind === 'drop') this.reconnects++;
    else this.renewals++;
    this.host.lost();
    this.cancelRenewal?.();
    this.renewDue = false;
    this.stall?.reset();
    this.configured = false;
    const log = this.call.log;
    if (kind === 'renewal') log.info({ renewals: this.renewals }, `${why}: re-opening the model session`);
    else log.warn({ code: 'model_closed', attempt: this.reconnects }, `${why}: re-opening the model session`);
    void this.open(true);
  }
}
