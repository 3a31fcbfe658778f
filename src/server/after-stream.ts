/**
 * What Twilio runs after the media socket closes (<Redirect> after </Connect>): hang up after a
 * goodbye, dial the tenant's human after a hand-off, apologise (and dial a human if there is one),
 * or, with DRAIN_MODE=migrate, resume a call whose pod died mid-call on whichever pod answers.
 */
import { CALL_OUTCOMES, type CallOutcome } from '../call/lifecycle.js';
import type { CallRecord } from '../store/index.js';
import { dialTwiml, sayHangupTwiml } from '../twilio/index.js';

/** How long the after-stream route waits for the outcome of a call whose end is still being written. */
export const OUTCOME_WAIT_MS = 2000;
const OUTCOME_POLL_MS = 100;
/**
 * With crash resume on, the first look waits only this long: a living pod stores the outcome before
 * it closes the stream, so a record still without one is plainly a call whose pod died, and every
 * millisecond here is silence on the line.
 */
export const CRASH_OUTCOME_WAIT_MS = 500;
/** Resumes after a crash per call: a call that keeps killing its pods gets the apology. */
export const MAX_CRASH_RESUMES = 3;
/** A call this close to MAX_CALL_SECONDS is not resumed (it would only say goodbye). */
const RESUME_MARGIN_MS = 10_000;

/** The call record once it has an outcome, or after `waitMs` without one (bounded polling). */
export async function settledRecord(
  read: () => Promise<CallRecord | undefined>,
  sleep: (ms: number) => Promise<void>,
  waitMs: number,
): Promise<CallRecord | undefined> {
  let rec = await read();
  for (let waited = 0; rec && rec.outcome === undefined && waited < waitMs; waited += OUTCOME_POLL_MS) {
    await sleep(OUTCOME_POLL_MS);
    rec = await read();
  }
  return rec;
}

/**
 * Why a call whose stream closed without an outcome is not resumed after a crash (`ended`: it has
 * an outcome, or is ending or handing off; `too_many_resumes`; `too_long`), or undefined: resume it.
 */
export function crashResumeRefusal(rec: CallRecord, now: number, maxCallMs: number): 'ended' | 'too_many_resumes' | 'too_long' | undefined {
  if (rec.outcome !== undefined || rec.phase === 'ended' || rec.phase === 'ending' || rec.phase === 'handing-off') return 'ended';
  if (rec.migrations.filter((m) => m.reason === 'crash').length >= MAX_CRASH_RESUMES) return 'too_many_resumes';
  if (now - rec.startedAt >= maxCallMs - RESUME_MARGIN_MS) return 'too_long';
  return undefined;
}

/** A stored outcome read back as a CallOutcome; undefined for one this build does not know. */
export function parseOutcome(stored: string): CallOutcome | undefined {
  return (CALL_OUTCOMES as readonly string[]).includes(stored) ? (stored as CallOutcome) : undefined;
}

/**
 * The outcome to answer with. Twilio runs the redirect as soon as the media socket closes, maybe on
 * another pod than the call's: its pod stores the outcome before closing, but a slow store can
 * still lose that race, so a record without an outcome is read again (bounded). If none arrives,
 * a call that was saying goodbye or handing off is answered as such; anything else gets the fallback.
 * A stored outcome this build does not know (a newer pod's) is told to `unknown` and gets the fallback.
 */
export async function settledOutcome(
  read: () => Promise<CallRecord | undefined>,
  sleep: (ms: number) => Promise<void>,
  waitMs = OUTCOME_WAIT_MS,
  unknown: (stored: string) => void = () => {},
): Promise<CallOutcome | undefined> {
  const rec = await settledRecord(read, sleep, waitMs);
  if (!rec) return undefined;
  if (rec.outcome !== undefined) {
    const outcome = parseOutcome(rec.outcome);
    if (outcome === undefined) unknown(rec.outcome);
    return outcome;
  }
  if (rec.phase === 'ending') return 'ended_by_assistant';
  if (rec.phase === 'handing-off') return 'transferred';
  return undefined;
}

/**
 * The TwiML for how the call ended. The switch names every outcome and has no default: a new
 * outcome fails the typecheck here until someone decides what its caller hears.
 */
export function afterStreamTwiml(
  outcome: CallOutcome | undefined,
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
    case 'model_unavailable':
    case 'model_failed':
    case 'protocol_error':
    case 'rejected_token':
    case 'rejected_capacity':
    case 'rejected_budget':
    case 'drained':
    case 'abandoned':
    case undefined:
      // The model failed, the stream was refused or cut, an unknown call or outcome, the store is
      // down: never dead air.
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
