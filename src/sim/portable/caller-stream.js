// @ts-check
/**
 * One Media Stream of the simulated Twilio caller, as Twilio's side of it: the messages it frames
 * (`connected`/`start`, `media`, `mark`, `stop`), what it does with the relay's (`media` queued
 * for playback, marks echoed once their audio has played, `clear`), the close, and the legs when
 * Twilio moves the call to a new stream. caller-core.js drives it with the caller's script.
 * Sans-IO plain JS with no Node or k6 imports, like the rest of this folder. Just over 400 lines:
 * Twilio's side of one stream (framing, playback queue, marks, legs) reads best in one place.
 */
import { FRAME_BYTES, FRAME_MS, SpeechTextCollector, readSpeechMarker } from './audio.js';
import { emptyReport } from './caller-report.js';
import { describeVerbs } from './twilio-http.js';

/** @typedef {import('./twilio-http.js').TwimlVerb} TwimlVerb */
/** @typedef {import('./caller-report.js').CallScript} CallScript */
/** @typedef {import('./caller-report.js').CallerReport} CallerReport */
/** @typedef {import('./caller-report.js').TurnReport} TurnReport */
/** @typedef {import('./caller-report.js').LegReport} LegReport */
/** @typedef {import('./caller-report.js').LegEnd} LegEnd */

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
 * The stream side of one simulated call: see CallerSession (caller-core.js), which adds the script.
 * Every method takes the adapter's current time in ms (any monotonic clock) and returns the JSON
 * text messages to send, in order.
 */
export class CallerStream {
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
    /** @type {Phase} */
    this.phase = 'init';
    this.seq = 0;
    this.chunk = 0;
    this.openMs = 0;
    /** Current turn index; -1 while the greeting plays. */
    this.turn = -1;
    this.speechEndMs = 0;
    /** First reply audio of the current wait: arrival and play start, or -1. */
    this.replyRecvMs = -1;
    this.replyPlayMs = -1;
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
    if (!this.boundary && !newReply && this.lastMediaMs >= 0) {
      r.maxInterArrivalGapMs = Math.max(r.maxInterArrivalGapMs, now - this.lastMediaMs);
      if (this.playEndMs < now) r.dryMs += now - this.playEndMs;
    }
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
}

/** @param {Record<string, unknown>} o @param {string[]} keys */
function exactKeys(o, keys) {
  const k = Object.keys(o);
  return k.length === keys.length && keys.every((x) => Object.prototype.hasOwnProperty.call(o, x));
}
