// @ts-check
/**
 * What the simulated caller reports about a call: the script it follows (CallScript), and per
 * turn and per Media Stream what it said, heard and measured (CallerReport). Types and the empty
 * report only; caller-stream.js and caller-core.js fill it in.
 */
/**
 * @typedef {{ say: string, bargeInAfterMs?: number, dtmf?: string, speechMs?: number }} CallTurn
 *   `speechMs`: speak for at least this long (default: 500 ms, or as long as the text needs).
 * @typedef {{ turns: CallTurn[], hangupAfterMs?: number, waitForGreeting?: boolean, maxCallMs: number,
 *   quietMs?: number, replyTimeoutMs?: number, repeatAfterMoveMs?: number }} CallScript
 *   `quietMs` (default 300): playback idle this long ends a reply. `replyTimeoutMs` (default 10000):
 *   no reply audio this long after the caller stopped speaking is an error, and the next turn starts.
 *   `repeatAfterMoveMs` (default 2000): on a new stream of a moved call, a caller still waiting for
 *   a reply that hears nothing this long says its turn again, as a person on a silent line would.
 */

/**
 * @typedef {{ said: string, heard: string, turnLatencyMs: number | null, bargeIn: boolean,
 *   clearReceived: boolean, playedMsAtClear: number | null }} TurnReport
 *   `playedMsAtClear`: how much of the reply playing when a `clear` arrived had been played
 *   (audio received since the reply's first marked frame, minus what was still queued).
 * @typedef {{ callSid: string, streamSid: string, greeting: string, turns: TurnReport[],
 *   turnsPlanned: number, marksSent: number, marksEchoed: number, clears: number, framesSent: number,
 *   framesReceived: number, audioMsReceived: number, dtmfSent: number, maxInterArrivalGapMs: number, dryMs: number,
 *   closeCode: number | null, closeReason: string, endedBy: 'caller' | 'relay' | 'timeout' | 'update' | null,
 *   fallback: string | null, durationMs: number, errors: string[], legs: LegReport[] }} CallerReport
 *   `marksSent`: marks the relay sent (received here); `marksEchoed`: echoes sent back.
 *   `dryMs`: silence heard mid-reply: for each media of a reply that arrived after everything
 *   before it had played, the time the playback buffer had been empty, summed.
 *   `fallback`: the TwiML after `</Connect>` Twilio would run because the relay closed the socket.
 *   `endedBy: 'update'`: a REST call update ended the stream (Twilio's `stop`) and no new stream followed.
 *   `legs`: the call's Media Streams in order (one unless Twilio moved the call); `closeCode`,
 *   `closeReason`, `endedBy` and `fallback` describe the last one.
 */

/**
 * How one Media Stream of a call ended: `stop-by-twilio-update` (a REST update replaced the TwiML:
 * Twilio sent `stop` and closed), `relay-closed` (the relay closed with a close frame),
 * `abnormal` (the connection died without one, 1006: a killed pod, a cut network), `caller-hangup`,
 * `timeout` (maxCallMs), `stream-failed` (the stream never opened).
 * @typedef {'stop-by-twilio-update' | 'relay-closed' | 'abnormal' | 'caller-hangup' | 'timeout' | 'stream-failed'} LegEnd
 */

/**
 * One Media Stream of a call. Times are ms since the call's first `start`. `via`: what opened it
 * (the voice webhook's TwiML, a REST update's TwiML, or the after-stream `<Redirect>`'s TwiML).
 * `gapMs`: previous stream's end (its `stop`, or the abnormal close) -> this stream's `start` sent;
 * `firstAudioMs`: the same start point -> the first model audio received on this stream (for the
 * first stream: from its `start`); null until that happens. `repeatedTurn`: the caller said its
 * last turn again on this stream (the move swallowed it, or no reply came).
 * @typedef {{ streamSid: string, url: string, via: 'webhook' | 'update' | 'redirect',
 *   startedAtMs: number, endedAtMs: number | null, end: LegEnd | null, closeCode: number | null,
 *   gapMs: number | null, firstAudioMs: number | null, repeatedTurn: boolean }} LegReport
 */

/**
 * @param {string} callSid @param {string} [streamSid]
 * @returns {CallerReport} a report for a call that never reached its Media Stream.
 */
export function emptyReport(callSid, streamSid = '') {
  return {
    callSid,
    streamSid,
    greeting: '',
    turns: [],
    turnsPlanned: 0,
    marksSent: 0,
    marksEchoed: 0,
    clears: 0,
    framesSent: 0,
    framesReceived: 0,
    audioMsReceived: 0,
    dtmfSent: 0,
    maxInterArrivalGapMs: 0,
    dryMs: 0,
    closeCode: null,
    closeReason: '',
    endedBy: null,
    fallback: null,
    durationMs: 0,
    errors: [],
    legs: [],
  };
}
