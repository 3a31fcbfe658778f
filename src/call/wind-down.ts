/**
 * The call's last words: a tool asked to end the call or hand it to a human (end_call, transfer),
 * or the call reached MAX_CALL_SECONDS and the assistant is asked for a short goodbye. The call
 * moves to `ending`; the line closes once the response saying the last words is done and its
 * audio has played, or after `windDownMs` whatever happens (a goodbye never holds the line open).
 * The last words are the response the wind-down asked for (the goodbye, or the tools' spoken
 * answer), known by the request it answers: a response server VAD started meanwhile (the caller
 * spoke while end_call ran) is not them, and the line does not close when it is done.
 */
import type { Clock } from '../clock.js';
import { CloseCode } from '../errors.js';
import type { CallPhase } from '../store/index.js';
import type { CallEffect } from '../tools/index.js';
import type { CallInput, CallView } from './call-state.js';
import type { CallOutcome } from './lifecycle.js';

/**
 * Which of the effects gathered before a follow-up the call acts on: a hand-off to a human wins
 * over ending the call, whatever their order (a caller in an emergency is never hung up on);
 * otherwise the first asked for.
 */
export function decidingEffect(effects: readonly CallEffect[]): CallEffect | undefined {
  return effects.find((e) => e.kind === 'transfer') ?? effects[0];
}

/** How the call ends for an effect: its outcome, close code, phase while ending, and the close's reason. */
function endFor(effect: CallEffect): { outcome: CallOutcome; closeCode: CloseCode; phase: CallPhase } {
  return effect.kind === 'end_call'
    ? { outcome: 'ended_by_assistant', closeCode: CloseCode.callEnded, phase: 'ending' }
    : { outcome: 'transferred', closeCode: CloseCode.handedOff, phase: 'handing-off' };
}

/** Why the line closed after the last words of an outcome. */
const closedAfter = (outcome: CallOutcome): string => (outcome === 'transferred' ? 'handed to a human' : 'assistant ended the call');

/** What the assistant is asked to say when the call reaches MAX_CALL_SECONDS. */
export const TIME_LIMIT_GOODBYE =
  'The call has reached its time limit. Say goodbye to the caller with exactly: "I am sorry, we have reached the time limit for this call. Thank you for calling, goodbye."';

/** What the wind-down needs of the call beyond its view. */
export interface WindDownHost {
  move(input: CallInput): void;
  /** Assistant audio sent to Twilio and not yet played. */
  unplayed(): boolean;
  setPhase(phase: CallPhase): void;
  /** Ask the model for the call's last words (with these instructions; none: the answer to the tools). */
  request(instructions: string): void;
}

export interface WindDownDeps {
  clock: Clock;
  /** How long an ending call may wait for its goodbye to play before the line is closed anyway. */
  windDownMs: number;
  maxCallMs: number;
  /** Where timers go, cancelled when the call ends. */
  timers: (() => void)[];
}

export class WindDown {
  /** The response saying the last words is done (its audio may still be playing). */
  private said = false;
  /** The response that says the last words (answering the wind-down's request), once created. */
  private lastWordsId: string | undefined;

  constructor(
    private readonly deps: WindDownDeps,
    private readonly call: CallView,
    private readonly host: WindDownHost,
  ) {}

  /**
   * What the tools asked for, once their spoken answer was asked for: one effect decides, that
   * answer is the last words. Decided while the call is already ending (the time-limit goodbye, an
   * end_call): a hand-off still wins, for the caller asked for a person, and the line closes for it
   * once the words under way are said and heard (within the same wind-down bound); an end_call is
   * the ending already under way.
   */
  effects(effects: readonly CallEffect[]): void {
    const effect = this.deciding(effects);
    if (!effect) return;
    const { outcome, closeCode, phase } = endFor(effect);
    const s = this.call.state;
    if (s.kind !== 'ending') return this.begin(outcome, closeCode, phase);
    if (outcome !== 'transferred' || s.outcome === 'transferred') return;
    this.call.log.info({ was: s.outcome }, 'transfer decided while the call was ending: handing it to a human');
    this.host.move({ type: 'wind-down', outcome, closeCode });
    this.host.setPhase(phase);
  }

  /**
   * The model session is lost (or can serve the call no more: a fatal error or failed response)
   * before the response that asked for these effects was done: the session that would say the last
   * words is gone, and a new one knows nothing of the tool. The
   * deciding effect is carried out now, without last words (Twilio's after-stream TwiML speaks for
   * the call). True when an effect ended the call; false when there was none (the call goes on).
   */
  stranded(effects: readonly CallEffect[]): boolean {
    const effect = this.deciding(effects);
    if (!effect) return false;
    const { outcome, closeCode } = endFor(effect);
    this.call.log.warn({ code: 'model_closed', acting: effect.kind }, 'model session lost or failed before the tool\'s answer was spoken: carrying out its effect now');
    this.call.finish(outcome, closeCode, closedAfter(outcome));
    return true;
  }

  /** MAX_CALL_SECONDS: the assistant says a goodbye and the call ends (4014), not the fallback. */
  timeUp(): void {
    const s = this.call.state;
    if (s.kind === 'ending') return; // already saying goodbye
    if (s.kind !== 'live') return this.call.finish('too_long', CloseCode.callTooLong, 'call exceeded MAX_CALL_SECONDS');
    this.call.log.info({ maxCallMs: this.deps.maxCallMs }, 'call reached MAX_CALL_SECONDS: saying goodbye');
    this.begin('too_long', CloseCode.callTooLong, 'ending', TIME_LIMIT_GOODBYE);
  }

  /** `response.created`; `lastWords`: it answers a request for the call's last words. */
  created(responseId: string, lastWords: boolean): void {
    if (lastWords) this.lastWordsId = responseId;
  }

  /** A response without tools is done: while ending, the last words are said once the response saying them is. */
  responseDone(responseId: string): void {
    const s = this.call.state;
    if (s.kind !== 'ending' || responseId !== this.lastWordsId) return;
    // The last words finished generating; close once they have played.
    this.said = true;
    this.played();
  }

  /** Audio may have finished playing (a mark came back): close once the last words are said and heard. */
  played(): void {
    const s = this.call.state;
    if (s.kind !== 'ending' || !this.said || this.host.unplayed()) return;
    this.call.finish(s.outcome, s.closeCode, closedAfter(s.outcome));
  }

  /** Something ended the last words early (the model went away): the call ends as it was ending. */
  cutShort(reason: string): void {
    const s = this.call.state;
    if (s.kind === 'ending') this.call.finish(s.outcome, s.closeCode, reason);
  }

  /** The effect that decides among `effects`, logged when several compete. */
  private deciding(effects: readonly CallEffect[]): CallEffect | undefined {
    const effect = decidingEffect(effects);
    if (effect && effects.length > 1) this.call.log.info({ effects: effects.map((e) => e.kind), acting: effect.kind }, 'several call effects at once: one decides');
    return effect;
  }

  private begin(outcome: CallOutcome, closeCode: CloseCode, phase: CallPhase, goodbye?: string): void {
    this.host.move({ type: 'wind-down', outcome, closeCode });
    this.said = false;
    this.host.setPhase(phase);
    if (goodbye !== undefined) this.host.request(goodbye);
    this.deps.timers.push(
      this.deps.clock.after(this.deps.windDownMs, () => this.cutShort('goodbye timed out')),
    );
  }
}
