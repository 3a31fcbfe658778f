// @ts-check
/**
 * The simulated Twilio caller on one call's Media Streams, sans-IO: the state machine of pacing,
 * playback, marks, clear, barge-in, DTMF and stop, and the call's report. Sockets, HTTP and timers
 * belong to the adapters (src/sim/sim-caller.ts for Node, loadtest/lib/k6-adapter.js for k6); the
 * webhook and TwiML are twilio-http.js's. Plain JS with no Node or k6 imports, so k6 runs it too.
 *
 * Over 400 lines on purpose: CallerSession is one state machine whose handlers (the relay's
 * messages, the 20 ms tick, the caller's script) read and write the same playback and turn state;
 * the parts without that state live beside it (audio.js, twilio-http.js).
 */
import { FRAME_BYTES, FRAME_MS, SpeechTextCollector, readSpeechMarker, silence, speechFrames } from './audio.js';
import { describeVerbs } from './twilio-http.js';

/** @typedef {import('./twilio-http.js').TwimlVerb} TwimlVerb */


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
 *   framesReceived: number, audioMsReceived: number, dtmfSent: number, maxInterArrivalGapMs: number,
 *   closeCode: number | null, closeReason: string, endedBy: 'caller' | 'relay' | 'timeout' | 'update' | null,
 *   fallback: string | null, durationMs: number, errors: string[], legs: LegReport[] }} CallerReport
 *   `marksSent`: marks the relay sent (received here); `marksEchoed`: echoes sent back.
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
    closeCode: null,
    closeReason: '',
    endedBy: null,
    fallback: null,
    durationMs: 0,
    errors: [],
    legs: [],
  };
}

const MAX_ERRORS = 50;
const BYTES_PER_MS = FRAME_BYTES / FRAME_MS;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * @typedef {'init' | 'greeting' | 'speaking' | 'listening' | 'closing' | 'ended'} Phase
 * @typedef {{ atMs: number, kind: 'mark', name: string } | { atMs: number, kind: 'text', text: string }} Playout
 */

/**
 * Optional taps for measurement (the bench hides timestamps in the audio): `stampPayload` may
 * rewrite each outgoing media payload (base64 μ-law, same length); `onAudio` sees each received
 * media payload's decoded bytes.
 * `onGreeting` and `onTurn` report the greeting and each turn as soon as the caller moves on from
 * them (the next turn starts, or the call winds down), so a CLI can print the call as it happens;
 * `interrupted` says the caller barged in, so what it heard was cut short.
 * @typedef {{ stampPayload?: (payload: string, nowMs: number) => string,
 *   onAudio?: (bytes: Uint8Array, nowMs: number) => void,
 *   onGreeting?: (text: string, interrupted: boolean) => void,
 *   onTurn?: (index: number, turn: TurnReport, interrupted: boolean) => void }} CallerHooks
 */

/**
 * One simulated call on an open Media Stream. Every method takes the adapter's current time in ms
 * (any monotonic clock) and returns the JSON text messages to send, in order.
 */
export class CallerSession {
  /**
   * @param {{ callSid: string, accountSid: string, streamSid: string, parameters: Record<string, string>,
   *   script: CallScript, b64encode: (bytes: Uint8Array) => string, b64decode: (s: string) => Uint8Array,
   *   clockMs?: () => number, after?: TwimlVerb[], url?: string, hooks?: CallerHooks }} o
   *   `clockMs` supplies the time when a method is called without one; `after` is the TwiML after
   *   `</Connect>` (reported as the fallback if the relay closes the socket); `url` the stream's URL
   *   (for the leg report).
   */
  constructor(o) {
    this.o = o;
    this.script = o.script;
    this.quietMs = o.script.quietMs ?? 300;
    this.replyTimeoutMs = o.script.replyTimeoutMs ?? 10_000;
    this.repeatAfterMoveMs = o.script.repeatAfterMoveMs ?? 2000;
    // The current stream: replaced by beginLeg() when Twilio moves the call to a new one.
    this.streamSid = o.streamSid;
    this.sidJson = JSON.stringify(o.streamSid);
    this.parameters = o.parameters;
    /** @type {TwimlVerb[]} */
    this.after = o.after ?? [];
    /** @type {{ url: string, via: LegReport['via'] }} */
    this.legNext = { url: o.url ?? '', via: 'webhook' };
    /** The phase a stream ended in when the call may go on on a new one (update, relay close); else null. @type {Phase | null} */
    this.resumePhase = null;
    /** When the previous stream ended (-1: none yet), the start of the current stream, the repeat deadline. */
    this.legEndAbs = -1;
    this.legOpenMs = 0;
    this.repeatAtMs = -1;
    this.silenceB64 = o.b64encode(silence(FRAME_BYTES));
    /** @type {Phase} */
    this.phase = 'init';
    this.seq = 0;
    this.chunk = 0;
    this.openMs = 0;
    /** Current turn index; -1 while the greeting plays. */
    this.turn = -1;
    /** @type {string[]} base64 speech frames still to send for the current turn */
    this.speech = [];
    this.speechAt = 0;
    /** @type {string[]} */
    this.dtmf = [];
    this.speechEndMs = 0;
    /** When the phase started waiting (open, or end of the caller's speech). */
    this.waitFromMs = 0;
    /** First reply audio of the current wait: arrival and play start, or -1. */
    this.replyRecvMs = -1;
    this.replyPlayMs = -1;
    this.closingFromMs = 0;
    /** Playback: the time at which everything received so far will have played. */
    this.playEndMs = 0;
    /** @type {Playout[]} marks and heard texts in play order */
    this.playout = [];
    this.frame = new Uint8Array(FRAME_BYTES);
    this.frameFill = 0;
    /** Audio received since the current reply's first marked frame, in ms. */
    this.replyMs = 0;
    this.collector = new SpeechTextCollector();
    this.lastMediaMs = -1;
    this.boundary = true;
    /** @type {string[]} */
    this.greetingParts = [];
    this.report_ = emptyReport(o.callSid, o.streamSid);
    this.report_.turnsPlanned = o.script.turns.length;
  }

  /** @param {number | undefined} t */
  now(t) {
    return t ?? (this.o.clockMs ? this.o.clockMs() : 0);
  }

  /** True once `stop` was sent or the socket closed. */
  get done() {
    return this.phase === 'ended';
  }

  /**
   * True when the stream ended but the call may go on on a new one: a REST update stopped it, or
   * the relay closed it (Twilio then runs the TwiML after `</Connect>`, which may connect again).
   */
  get resumable() {
    return this.phase === 'ended' && this.resumePhase !== null;
  }

  /** The stream currently open or last open. @returns {LegReport | undefined} */
  get leg() {
    return this.report_.legs[this.report_.legs.length - 1];
  }

  /**
   * Twilio moves the call to a new stream (the TwiML of an update or of the after-stream redirect
   * connects again): the next open() sends this stream's `connected`/`start` and the script goes
   * on where it was. Returns false when the call cannot go on (it was hung up, or never started).
   * @param {{ streamSid: string, parameters: Record<string, string>, after?: TwimlVerb[], url: string,
   *   via: 'update' | 'redirect' }} next
   */
  beginLeg(next) {
    if (!this.resumable) return false;
    this.streamSid = next.streamSid;
    this.sidJson = JSON.stringify(next.streamSid);
    this.parameters = next.parameters;
    this.after = next.after ?? [];
    this.legNext = { url: next.url, via: next.via };
    return true;
  }

  /**
   * The new stream prepared by beginLeg() could not be opened: the call ends there.
   * @param {string} why @param {number} [nowMs]
   */
  legFailed(why, nowMs) {
    const now = this.now(nowMs);
    const at = Math.round(now - this.openMs);
    this.report_.legs.push({
      streamSid: this.streamSid, url: this.legNext.url, via: this.legNext.via, startedAtMs: at, endedAtMs: at,
      end: 'stream-failed', closeCode: null, gapMs: null, firstAudioMs: null, repeatedTurn: false,
    });
    this.resumePhase = null;
    this.error(`new stream failed: ${why}`);
  }

  /**
   * A REST call update replaced the call's TwiML: Twilio sends `stop` on this stream (the adapter
   * then closes the socket) and runs the new TwiML, which may open a new stream (beginLeg).
   * @param {number} [nowMs] @returns {string[]}
   */
  stopForUpdate(nowMs) {
    /** @type {string[]} */
    const out = [];
    if (this.phase === 'init' || this.phase === 'ended') return out;
    const now = this.now(nowMs);
    this.resumePhase = this.phase;
    out.push(this.stopMessage());
    this.report_.endedBy = 'update';
    this.report_.closeCode = 1000;
    this.report_.closeReason = '';
    this.endLeg(now, 'stop-by-twilio-update', 1000);
    this.finish(now);
    return out;
  }

  /** @param {string} msg */
  error(msg) {
    if (this.report_.errors.length < MAX_ERRORS) this.report_.errors.push(msg);
  }

  /** @param {string} event @param {string} body */
  envelope(event, body) {
    this.seq++;
    return `{"event":"${event}","sequenceNumber":"${this.seq}","streamSid":${this.sidJson}${body}}`;
  }

  /**
   * The `connected` and `start` messages Twilio sends first.
   * @param {number} [nowMs] @returns {string[]}
   */
  open(nowMs) {
    const now = this.now(nowMs);
    const first = this.phase === 'init';
    if (!first && !this.resumable) return [];
    if (first) this.openMs = now;
    this.startStream(now);
    const start = {
      accountSid: this.o.accountSid,
      streamSid: this.streamSid,
      callSid: this.o.callSid,
      tracks: ['inbound'],
      customParameters: this.parameters,
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
    };
    const out = ['{"event":"connected","protocol":"Call","version":"1.0.0"}', this.envelope('start', `,"start":${JSON.stringify(start)}`)];
    if (first) {
      this.waitFromMs = now;
      if (this.script.waitForGreeting === false) this.startTurn(0, now);
      else this.phase = 'greeting';
    } else this.resume(now);
    return out;
  }

  /**
   * Called every 20 ms: this tick's media frame (Twilio sends audio continuously), due mark echoes,
   * DTMF, and `stop` when the call is over.
   * @param {number} [nowMs] @returns {string[]}
   */
  tick(nowMs) {
    const now = this.now(nowMs);
    /** @type {string[]} */
    const out = [];
    if (this.phase === 'init' || this.phase === 'ended') return out;
    this.advancePlayback(now, out);
    if (now - this.openMs >= this.script.maxCallMs) {
      this.error(`call still running after maxCallMs=${this.script.maxCallMs}: caller hung up`);
      this.stop(now, out, 'timeout');
      return out;
    }
    this.advanceScript(now);
    if (this.phase === 'closing' && this.script.hangupAfterMs !== undefined && now - this.closingFromMs >= this.script.hangupAfterMs) {
      this.stop(now, out, 'caller');
      return out;
    }
    const digit = this.dtmf.shift();
    if (digit !== undefined) {
      out.push(this.envelope('dtmf', `,"dtmf":{"track":"inbound_track","digit":${JSON.stringify(digit)}}`));
      this.report_.dtmfSent++;
    }
    let payload = this.silenceB64;
    if (this.phase === 'speaking') {
      payload = /** @type {string} */ (this.speech[this.speechAt]);
      this.speechAt++;
      if (this.speechAt >= this.speech.length) this.endSpeech(now);
    }
    if (this.o.hooks?.stampPayload) payload = this.o.hooks.stampPayload(payload, now);
    this.chunk++;
    const ts = Math.max(0, Math.round(now - this.legOpenMs));
    out.push(
      this.envelope('media', `,"media":{"track":"inbound","chunk":"${this.chunk}","timestamp":"${ts}","payload":"${payload}"}`),
    );
    this.report_.framesSent++;
    return out;
  }

  /**
   * Hang up now (Twilio's `stop`), e.g. when the adapter is aborted.
   * @param {number} [nowMs] @returns {string[]}
   */
  hangup(nowMs) {
    /** @type {string[]} */
    const out = [];
    if (this.phase !== 'init' && this.phase !== 'ended') this.stop(this.now(nowMs), out, 'caller');
    return out;
  }

  /**
   * A text message from the relay: media is queued for playback, marks wait for the audio before
   * them, clear drops the queue and echoes every pending mark at once.
   * @param {string} text @param {number} [nowMs] @returns {string[]}
   */
  onMessage(text, nowMs) {
    const now = this.now(nowMs);
    /** @type {string[]} */
    const out = [];
    if (this.phase === 'ended') return out;
    /** @type {unknown} */
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      this.error(`31951 invalid message: not JSON: ${text.slice(0, 80)}`);
      return out;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      this.error(`31951 invalid message: not an object: ${text.slice(0, 80)}`);
      return out;
    }
    const m = /** @type {Record<string, unknown>} */ (msg);
    if (this.phase === 'init') {
      this.error(`message before start: ${String(m.event)}`);
      return out;
    }
    if (m.streamSid !== this.streamSid) {
      this.error(`31951 invalid message: streamSid ${JSON.stringify(m.streamSid)} is not this stream's`);
      return out;
    }
    this.advancePlayback(now, out);
    switch (m.event) {
      case 'media': {
        const media = /** @type {Record<string, unknown> | undefined} */ (m.media);
        const payload = media?.payload;
        if (!exactKeys(m, ['event', 'streamSid', 'media']) || !media || !exactKeys(media, ['payload']) || typeof payload !== 'string' || payload.length === 0 || payload.length % 4 !== 0 || !B64.test(payload)) {
          this.error(`31951 invalid message: bad media shape: ${text.slice(0, 120)}`);
          return out;
        }
        this.onAudio(this.o.b64decode(payload), now);
        break;
      }
      case 'mark': {
        const mark = /** @type {Record<string, unknown> | undefined} */ (m.mark);
        const name = mark?.name;
        if (!exactKeys(m, ['event', 'streamSid', 'mark']) || !mark || !exactKeys(mark, ['name']) || typeof name !== 'string') {
          this.error(`31951 invalid message: bad mark shape: ${text.slice(0, 120)}`);
          return out;
        }
        this.report_.marksSent++;
        if (this.playEndMs <= now) this.echoMark(name, out);
        else this.playout.push({ atMs: this.playEndMs, kind: 'mark', name });
        break;
      }
      case 'clear': {
        if (!exactKeys(m, ['event', 'streamSid'])) {
          this.error(`31951 invalid message: bad clear shape: ${text.slice(0, 120)}`);
          return out;
        }
        this.report_.clears++;
        const t = this.report_.turns[this.turn];
        if (t) {
          t.clearReceived = true;
          t.playedMsAtClear = Math.max(0, Math.round(this.replyMs - Math.max(0, this.playEndMs - now)));
        }
        this.replyMs = 0;
        // Twilio: clear empties the buffer and echoes all pending marks at once; queued words are never heard.
        for (const p of this.playout) if (p.kind === 'mark') this.echoMark(p.name, out);
        this.playout = [];
        this.playEndMs = now;
        this.frameFill = 0;
        this.collector.reset();
        this.boundary = true;
        break;
      }
      default:
        this.error(`31951 invalid message: unknown event ${JSON.stringify(m.event)}`);
    }
    return out;
  }

  /**
   * The socket closed (by either side).
   * @param {number} code @param {string} reason @param {number} [nowMs]
   */
  onClose(code, reason, nowMs) {
    const now = this.now(nowMs);
    if (this.report_.closeCode === null) {
      this.report_.closeCode = code;
      this.report_.closeReason = reason;
    }
    const leg = this.leg;
    if (leg && leg.closeCode === null) leg.closeCode = code;
    if (this.phase === 'ended') return;
    this.resumePhase = this.phase === 'init' ? null : this.phase;
    this.report_.endedBy = 'relay';
    if (this.after.length > 0) this.report_.fallback = describeVerbs(this.after);
    // 1006: no close frame (a killed pod, a cut connection); anything else the relay sent.
    this.endLeg(now, code === 1006 ? 'abnormal' : 'relay-closed', code);
    this.finish(now);
  }

  /** @returns {CallerReport} */
  report() {
    const r = this.report_;
    return {
      ...r,
      greeting: this.greetingParts.join(' '),
      turns: r.turns.map((t) => ({ ...t })),
      errors: [...r.errors],
      legs: r.legs.map((l) => ({ ...l })),
    };
  }

  // --- internals ---------------------------------------------------------------------------------

  /** @param {number} now @param {string[]} out @param {'caller' | 'timeout'} by */
  stop(now, out, by) {
    out.push(this.stopMessage());
    this.report_.endedBy = by;
    this.resumePhase = null;
    this.endLeg(now, by === 'timeout' ? 'timeout' : 'caller-hangup', null);
    this.finish(now);
  }

  stopMessage() {
    return this.envelope('stop', `,"stop":{"accountSid":${JSON.stringify(this.o.accountSid)},"callSid":${JSON.stringify(this.o.callSid)}}`);
  }

  /** A stream opens: Twilio's per-stream state starts afresh. @param {number} now */
  startStream(now) {
    const r = this.report_;
    const gapMs = this.legEndAbs >= 0 ? Math.round(now - this.legEndAbs) : null;
    r.legs.push({
      streamSid: this.streamSid, url: this.legNext.url, via: this.legNext.via, startedAtMs: Math.round(now - this.openMs),
      endedAtMs: null, end: null, closeCode: null, gapMs, firstAudioMs: null, repeatedTurn: false,
    });
    r.streamSid = this.streamSid;
    r.closeCode = null;
    r.closeReason = '';
    r.endedBy = null;
    r.fallback = null;
    this.legOpenMs = now;
    this.seq = 0;
    this.chunk = 0;
    // Audio still queued on the old stream is gone with it, and its marks are never echoed.
    this.playout = [];
    this.playEndMs = now;
    this.frameFill = 0;
    this.collector.reset();
    this.replyMs = 0;
    this.lastMediaMs = -1;
    this.boundary = true;
    this.repeatAtMs = -1;
  }

  /**
   * The script goes on on a new stream from where the old one ended: speech cut off is said again
   * from its start (the old pod never had all of it); a caller who heard no greeting speaks first;
   * one still waiting for a reply keeps waiting, and says its turn again if the line stays silent.
   * @param {number} now
   */
  resume(now) {
    const was = this.resumePhase;
    this.resumePhase = null;
    const leg = /** @type {LegReport} */ (this.leg);
    switch (was) {
      case 'speaking':
        this.phase = 'speaking';
        this.speechAt = 0;
        leg.repeatedTurn = true;
        break;
      case 'greeting':
        this.phase = 'greeting';
        this.waitFromMs = now;
        if (this.replyRecvMs < 0) {
          this.announce(-1, false);
          this.startTurn(0, now);
        }
        break;
      case 'listening':
        this.phase = 'listening';
        this.waitFromMs = now;
        if (this.replyRecvMs < 0) this.repeatAtMs = now + this.repeatAfterMoveMs;
        break;
      default:
        this.phase = was ?? 'closing';
    }
  }

  /** @param {number} now @param {LegEnd} end @param {number | null} closeCode */
  endLeg(now, end, closeCode) {
    const leg = this.leg;
    if (!leg || leg.end !== null) return;
    leg.end = end;
    leg.endedAtMs = Math.round(now - this.openMs);
    if (closeCode !== null) leg.closeCode = closeCode;
    this.legEndAbs = now;
  }

  /** @param {number} now */
  finish(now) {
    this.phase = 'ended';
    this.report_.durationMs = Math.round(now - this.openMs);
  }

  /** @param {string} name @param {string[]} out */
  echoMark(name, out) {
    out.push(this.envelope('mark', `,"mark":{"name":${JSON.stringify(name)}}`));
    this.report_.marksEchoed++;
  }

  /** Echo marks and "hear" words whose audio has played by `now`. @param {number} now @param {string[]} out */
  advancePlayback(now, out) {
    let i = 0;
    for (; i < this.playout.length; i++) {
      const p = /** @type {Playout} */ (this.playout[i]);
      if (p.atMs > now) break;
      if (p.kind === 'mark') this.echoMark(p.name, out);
      else this.hear(p.text);
    }
    if (i > 0) this.playout.splice(0, i);
  }

  /** @param {string} text */
  hear(text) {
    const t = this.report_.turns[this.turn];
    if (t) t.heard = t.heard ? `${t.heard} ${text}` : text;
    else this.greetingParts.push(text);
  }

  /** @param {Uint8Array} bytes @param {number} now */
  onAudio(bytes, now) {
    this.o.hooks?.onAudio?.(bytes, now);
    const r = this.report_;
    const leg = this.leg;
    if (leg && leg.firstAudioMs === null) leg.firstAudioMs = Math.round(now - (this.legEndAbs >= 0 ? this.legEndAbs : this.legOpenMs));
    r.framesReceived++;
    r.audioMsReceived += bytes.length / BYTES_PER_MS;
    const playFrom = Math.max(now, this.playEndMs);
    // Reply words ride on 160-byte frames counted from the start of each reply (audio.js marker).
    let newReply = false;
    for (let off = 0; off < bytes.length; ) {
      const n = Math.min(FRAME_BYTES - this.frameFill, bytes.length - off);
      this.frame.set(bytes.subarray(off, off + n), this.frameFill);
      this.frameFill += n;
      off += n;
      if (this.frameFill < FRAME_BYTES) break;
      this.frameFill = 0;
      const marker = readSpeechMarker(this.frame);
      if (!marker) continue;
      if (marker.index === 0) {
        this.collector.reset();
        newReply = true;
        this.replyMs = -(off - FRAME_BYTES) / BYTES_PER_MS;
      }
      this.collector.push(this.frame);
      const text = this.collector.text();
      if (text !== undefined) {
        this.playout.push({ atMs: playFrom + (off - FRAME_BYTES) / BYTES_PER_MS, kind: 'text', text });
        this.collector.reset();
      }
    }
    // Gaps count within one reply only: a new reply, a clear or caller speech in between is a boundary.
    if (!this.boundary && !newReply && this.lastMediaMs >= 0) r.maxInterArrivalGapMs = Math.max(r.maxInterArrivalGapMs, now - this.lastMediaMs);
    this.lastMediaMs = now;
    this.boundary = false;
    if ((this.phase === 'greeting' || this.phase === 'listening') && this.replyRecvMs < 0) {
      this.replyRecvMs = now;
      this.replyPlayMs = playFrom;
      const t = r.turns[this.turn];
      if (t && this.phase === 'listening') t.turnLatencyMs = Math.round((now - this.speechEndMs) * 10) / 10;
    }
    this.playEndMs = playFrom + bytes.length / BYTES_PER_MS;
    this.replyMs += bytes.length / BYTES_PER_MS;
  }

  /** @param {number} now */
  advanceScript(now) {
    if (this.phase !== 'greeting' && this.phase !== 'listening') return;
    const next = this.turn + 1;
    const nextTurn = this.script.turns[next];
    const what = this.phase === 'greeting' ? 'greeting' : `reply to turn ${next}`;
    const bargeIn = nextTurn?.bargeInAfterMs;
    if (this.phase === 'listening' && this.replyRecvMs < 0 && this.repeatAtMs >= 0 && now >= this.repeatAtMs) {
      // A moved call with a silent line: say the turn again on the new stream.
      this.repeatAtMs = -1;
      const leg = this.leg;
      if (leg) leg.repeatedTurn = true;
      this.boundary = true;
      if (this.speech.length > 0) {
        this.phase = 'speaking';
        this.speechAt = 0;
      } else this.endSpeech(now);
      return;
    }
    if (this.replyRecvMs >= 0) {
      const finished = now >= this.playEndMs + this.quietMs;
      const bargeNow = bargeIn !== undefined && now >= this.replyPlayMs + bargeIn;
      if (!finished && !bargeNow) return;
    } else if (now - this.waitFromMs < this.replyTimeoutMs) {
      return;
    } else {
      this.error(`no ${what} within ${this.replyTimeoutMs} ms`);
    }
    const done = this.turn;
    if (nextTurn) this.startTurn(next, now);
    else {
      this.phase = 'closing';
      this.closingFromMs = now;
    }
    this.announce(done, this.report_.turns[next]?.bargeIn === true);
  }

  /** Tell the hooks that the greeting (-1) or turn `i` is over. @param {number} i @param {boolean} interrupted */
  announce(i, interrupted) {
    const hooks = this.o.hooks;
    if (i < 0) hooks?.onGreeting?.(this.greetingParts.join(' '), interrupted);
    else {
      const t = this.report_.turns[i];
      if (t) hooks?.onTurn?.(i, { ...t }, interrupted);
    }
  }

  /** @param {number} i @param {number} now */
  startTurn(i, now) {
    const turn = /** @type {CallTurn} */ (this.script.turns[i]);
    if (!turn) {
      this.phase = 'closing';
      this.closingFromMs = now;
      return;
    }
    this.turn = i;
    this.repeatAtMs = -1;
    this.report_.turns.push({ said: turn.say, heard: '', turnLatencyMs: null, bargeIn: now < this.playEndMs, clearReceived: false, playedMsAtClear: null });
    const minFrames = turn.speechMs !== undefined ? Math.ceil(turn.speechMs / FRAME_MS) : undefined;
    this.speech = turn.say ? speechFrames(turn.say, minFrames !== undefined ? { minFrames } : {}).map((f) => this.o.b64encode(f)) : [];
    this.speechAt = 0;
    for (const d of turn.dtmf ?? '') this.dtmf.push(d);
    this.boundary = true;
    if (this.speech.length > 0) this.phase = 'speaking';
    else this.endSpeech(now);
  }

  /** @param {number} now */
  endSpeech(now) {
    this.phase = 'listening';
    this.speechEndMs = now;
    this.waitFromMs = now;
    this.replyRecvMs = -1;
    this.replyPlayMs = -1;
    this.boundary = true;
  }
}

/** @param {Record<string, unknown>} o @param {string[]} keys */
function exactKeys(o, keys) {
  const k = Object.keys(o);
  return k.length === keys.length && keys.every((x) => Object.prototype.hasOwnProperty.call(o, x));
}
