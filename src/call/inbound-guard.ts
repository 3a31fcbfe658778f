/**
 * Media-socket messages the bridge cannot use. Twilio never sends an invalid one: each is counted,
 * the first logged, and the stream closed past a small budget, before `start`, or at once for one
 * too large. An event of a kind we do not know is counted and ignored, before or after `start`:
 * Twilio adds events (it added `dtmf` and `mark` after `media`).
 */
import type { Logger } from 'pino';
import { CloseCode } from '../errors.js';
import type { RelayMetrics } from '../telemetry/index.js';

/** Invalid messages tolerated per call before the stream is closed (Twilio never sends any). */
export const MAX_INVALID_MESSAGES = 20;

export class InboundGuard {
  private invalidMessages = 0;
  private unknownEvents = 0;

  constructor(private readonly metrics: RelayMetrics) {}

  /** An invalid message: the close that ends the stream, or undefined to carry on. */
  invalid(reason: string, detail: string, log: Logger, beforeStart: boolean): { code: CloseCode; reason: string } | undefined {
    this.metrics.twilioMessagesInvalid.labels(reason).inc();
    this.invalidMessages++;
    if (this.invalidMessages === 1) log.warn({ code: 'twilio_message_invalid', reason, detail }, 'invalid media-socket message');
    if (reason === 'too_large') return { code: CloseCode.messageTooBig, reason: 'message too large' };
    if (this.invalidMessages >= MAX_INVALID_MESSAGES || beforeStart) return { code: CloseCode.invalidMessage, reason: 'invalid messages' };
    return undefined;
  }

  /** A well-formed message whose event name we do not know: counted, logged once, ignored. */
  unknown(detail: string, log: Logger): void {
    this.metrics.twilioEventsUnknown.inc();
    if (this.unknownEvents++ === 0) log.info({ detail }, 'media-socket event of an unknown kind ignored');
  }
}
