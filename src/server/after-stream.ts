/**
 * What Twilio runs after the media socket closes (<Redirect> after </Connect>): hang up after a
 * goodbye, dial the tenant's human after a hand-off, or apologise (and dial a human if there is one).
 */
import { dialTwiml, sayHangupTwiml } from '../twilio/index.js';

export function afterStreamTwiml(
  outcome: string | undefined,
  humanNumber: string | undefined,
  callerId: string | undefined,
): string {
  switch (outcome) {
    case 'ended_by_assistant':
    case 'completed':
    case 'caller_hung_up':
      return '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>';
    case 'too_long':
      // The assistant has said its goodbye (or could not: reconnecting at the limit); end politely.
      return sayHangupTwiml('Thank you for calling. Goodbye.');
    case 'transferred':
      if (humanNumber)
        return dialTwiml({ to: humanNumber, say: 'Connecting you now.', ...(callerId ? { callerId } : {}) });
      return sayHangupTwiml(
        'Sorry, nobody is available to take your call right now. Please call again later. Goodbye.',
      );
    case undefined:
    default:
      // model_unavailable, model_failed, unknown call, store down: never dead air.
      if (humanNumber) {
        return dialTwiml({
          to: humanNumber,
          say: 'Sorry, our assistant is unavailable. Connecting you to a person.',
          ...(callerId ? { callerId } : {}),
        });
      }
      return sayHangupTwiml(
        'Sorry, our assistant is unavailable right now. Please call again later. Goodbye.',
      );
  }
}
