/**
 * What a model failure means for the call, in one table: every `error` event code, every failed
 * `response.done` and every way the model socket can end is classed here, and the call (model-session.ts,
 * conversation.ts) acts on the class alone. docs/model-errors.md is this table in words (what the caller hears for each).
 */

/**
 * - `call`: the model cannot serve this call (keys, quota, a configuration every session would
 *   reject): fall back now (close 4010; apology, human if the tenant has one).
 * - `session`: this session is unusable, a new one may work: re-open it with the conversation
 *   (within the call's budget), else fall back.
 * - `ignore`: log and carry on (races the relay tolerates, rejected truncates, unknown codes).
 */
export type ModelErrorClass = 'call' | 'session' | 'ignore';

interface Row {
  readonly class: ModelErrorClass;
  /** Expected on healthy calls: logged at debug, not warn. */
  readonly benign?: boolean;
}

/**
 * Error codes seen from OpenAI Realtime GA and Azure (docs/wire-formats.md §5, §8). Codes not listed are
 * `ignore` unless they answer a session.update (see classifyModelError).
 */
const TABLE: Readonly<Record<string, Row>> = {
  // Credentials, billing, access: a retry or a new session fails the same way.
  invalid_api_key: { class: 'call' },
  insufficient_quota: { class: 'call' },
  account_deactivated: { class: 'call' },
  billing_hard_limit_reached: { class: 'call' },
  model_not_found: { class: 'call' },
  // The 60-minute session cap (followed by close 1001): a new session carries on.
  session_expired: { class: 'session' },
  // One response at a time; a cancel that arrived after the server ended the response itself.
  conversation_already_has_active_response: { class: 'ignore', benign: true },
  response_cancel_not_active: { class: 'ignore', benign: true },
  // A truncate or item event the server refused: the conversation goes on without it.
  invalid_value: { class: 'ignore' },
  item_truncate_invalid_item_id: { class: 'ignore' },
  // Per-response failures are reported again in response.done (status failed): handled there.
  server_error: { class: 'ignore' },
  rate_limit_exceeded: { class: 'ignore' },
};

/** Codes the metric may carry as a label; anything else is counted as `other` (bounded). */
export const MODEL_ERROR_LABELS = [
  ...Object.keys(TABLE),
  'session_update_rejected',
  'response_failed',
  'keepalive_timeout',
  'stalled',
  'other',
] as const;

export function modelErrorLabel(code: string): string {
  return (MODEL_ERROR_LABELS as readonly string[]).includes(code) ? code : 'other';
}

/**
 * The class of an `error` event. `clientEventType` is the type of the client event the error's
 * `event_id` names, when the relay sent one: a rejected session.update leaves the session without
 * μ-law, instructions or tools, and every new session would get the same answer.
 */
export function classifyModelError(code: string, clientEventType?: string): { class: ModelErrorClass; benign: boolean } {
  const row = TABLE[code];
  if (row?.class === 'call' || clientEventType === 'session.update') return { class: 'call', benign: false };
  return { class: row?.class ?? 'ignore', benign: row?.benign === true };
}

/**
 * A `response.done` whose status is `failed`: `reason` is status_details.error.code (or type).
 * Quota and key failures end the call at once; anything else is retried once per response.
 */
export function classifyFailedResponse(reason: string | undefined): 'call' | 'retry' {
  return reason !== undefined && TABLE[reason]?.class === 'call' ? 'call' : 'retry';
}

/** The server closed the socket: 1001 with the cap's text is the 60-minute limit, not a fault. */
export function isSessionCapClose(code: number, reason: string): boolean {
  return code === 1001 && /maximum duration/i.test(reason);
}

/**
 * Client event ids for one model socket: every event but audio appends gets `<prefix><n>`, and the
 * last few are remembered so an `error` naming one can be traced to what caused it.
 */
export class ClientEventLedger {
  private readonly types = new Map<string, string>();
  private n = 0;

  constructor(
    private readonly prefix: string,
    private readonly keep = 64,
  ) {}

  /** `text` is a client event serialised with `type` first; returns it with an `event_id` added. */
  stamp(text: string): string {
    if (!text.startsWith('{"type":"')) return text;
    const end = text.indexOf('"', 9);
    if (end < 0) return text;
    if (text.startsWith(',"event_id":"', end + 1)) {
      // The caller chose the id (the response sequencer does): remember it, add none.
      const from = end + 14;
      const to = text.indexOf('"', from);
      if (to > from) this.remember(text.slice(from, to), text.slice(9, end));
      return text;
    }
    const id = this.prefix + (this.n++).toString(36);
    this.remember(id, text.slice(9, end));
    return `{"type":"${text.slice(9, end)}","event_id":"${id}"${text.slice(end + 1)}`;
  }

  private remember(id: string, type: string): void {
    this.types.set(id, type);
    if (this.types.size > this.keep) {
      const oldest = this.types.keys().next().value;
      if (oldest !== undefined) this.types.delete(oldest);
    }
  }

  /** The type of the client event sent with this id, if it is one of the recent ones. */
  typeOf(eventId: string | undefined): string | undefined {
    return eventId === undefined ? undefined : this.types.get(eventId);
  }
}
