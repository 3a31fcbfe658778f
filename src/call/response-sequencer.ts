/**
 * One model response at a time. The realtime API rejects a `response.create` while a response is
 * active (`conversation_already_has_active_response`), and server VAD starts responses on its own,
 * so the relay's own requests (greeting, tool follow-up, DTMF prompt) are queued here and sent when
 * no response is active. The conversation (conversation.ts) reports the model's response lifecycle
 * and errors.
 */
import { responseCreate } from '../model/index.js';

interface Request {
  /** Per-response instructions (the greeting); a plain request answers the conversation so far. */
  instructions: string | undefined;
  retried: boolean;
  /** The call's last words (the wind-down's goodbye, or the answer to the tool that ended the call): the wind-down waits for this response. */
  lastWords: boolean;
}

/** Requests kept at most; beyond it the oldest plain ones are dropped (one answer covers them). */
const MAX_QUEUED = 8;

export class ResponseSequencer {
  private active: string | undefined;
  /** The response.create sent last, until the server answers it (response.created or an error). */
  private inFlight: (Request & { eventId: string }) | undefined;
  /** The last create sent, kept so a late rejection naming it can put it back in the queue. */
  private lastSent: (Request & { eventId: string }) | undefined;
  private readonly queue: Request[] = [];
  private seq = 0;
  /** A queued last-words request was dropped for server VAD's answer: the next response the server starts says them. */
  private vadSaysLastWords = false;

  constructor(
    private readonly send: (text: string) => void,
    private readonly idPrefix: string,
    /** Server VAD hears the caller now (the conversation knows): requests wait, the caller's turn comes first. */
    private readonly callerSpeaking: () => boolean,
  ) {}

  /** The model's response in progress, if any. */
  get activeResponseId(): string | undefined {
    return this.active;
  }

  /** No response active, none asked for and unanswered, none queued: a pause in the conversation. */
  get idle(): boolean {
    return this.active === undefined && this.inFlight === undefined && this.queue.length === 0;
  }

  /**
   * Ask the model to respond: at once when no response is active, else when the active one is
   * done. `lastWords`: this response says the call's last words (onCreated tells which one it is).
   */
  request(instructions?: string, lastWords = false): void {
    const covering = instructions === undefined ? this.queue.find((q) => q.instructions === undefined) : undefined;
    if (covering) {
      covering.lastWords ||= lastWords; // one answer covers both
      return;
    }
    if (this.queue.length >= MAX_QUEUED) this.queue.shift();
    this.queue.push({ instructions, retried: false, lastWords });
    this.pump();
  }

  /** `response.created`: ours (returns the request it answers) or one server VAD started. */
  onCreated(responseId: string): { instructions: string | undefined; lastWords: boolean } | undefined {
    const answered = this.inFlight ?? (this.vadSaysLastWords ? { instructions: undefined, lastWords: true } : undefined);
    this.vadSaysLastWords = false;
    this.active = responseId;
    this.inFlight = undefined;
    return answered;
  }

  /** `response.done` (completed, cancelled, failed, incomplete). */
  onDone(responseId: string): void {
    if (this.active === responseId) this.active = undefined;
    this.pump();
  }

  /**
   * An `error` event. True when it answered our pending `response.create`: a rejection because a
   * response was active (server VAD won the race) puts the request back to go after that response,
   * once; other rejections drop it.
   */
  onError(code: string, eventId: string | undefined): boolean {
    const sent = this.inFlight ?? this.lastSent;
    if (!sent) return false;
    // An error naming no event: a rejection of a create still unanswered can only be ours (the
    // create would otherwise stay in flight and hold every later request).
    const ours = eventId === undefined ? this.inFlight === sent && code === 'conversation_already_has_active_response' : eventId === sent.eventId;
    if (!ours) return false;
    if (this.inFlight === sent) this.inFlight = undefined;
    this.lastSent = undefined;
    if (code === 'conversation_already_has_active_response' && !sent.retried) {
      this.queue.unshift({ instructions: sent.instructions, retried: true, lastWords: sent.lastWords });
    }
    this.pump();
    return true;
  }

  /**
   * Server VAD heard the caller stop and answers the turn itself (`create_response`): plain
   * requests are covered by that answer, which sees everything sent before it.
   */
  onSpeechStopped(): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i]!;
      if (q.instructions !== undefined) continue;
      if (q.lastWords) this.vadSaysLastWords = true;
      this.queue.splice(i, 1);
    }
    this.pump();
  }

  /**
   * A new model session: nothing of the old one is active or pending, and queued requests answered
   * items (tool outputs, key presses) the new session never got.
   */
  reset(): void {
    this.queue.length = 0;
    this.active = undefined;
    this.inFlight = undefined;
    this.lastSent = undefined;
    this.vadSaysLastWords = false;
  }

  private pump(): void {
    if (this.active !== undefined || this.inFlight !== undefined || this.callerSpeaking()) return;
    const next = this.queue.shift();
    if (!next) return;
    const eventId = `${this.idPrefix}${++this.seq}`;
    const sent = { ...next, eventId };
    this.inFlight = sent;
    this.lastSent = sent;
    this.send(responseCreate({ instructions: next.instructions, eventId }));
  }
}
