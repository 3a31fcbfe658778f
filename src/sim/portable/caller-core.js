// @ts-check
/**
 * The simulated Twilio caller on one call's Media Streams, sans-IO: the caller's script (pacing,
 * the greeting, each turn's speech and DTMF, barge-in, waiting for and timing the reply, hanging
 * up) over the stream in caller-stream.js (Twilio's messages, playback, marks, clear, legs); the
 * report's shape is caller-report.js's. Sockets, HTTP and timers belong to the adapters
 * (src/sim/sim-caller.ts for Node, loadtest/lib/k6-adapter.js for k6); the webhook and TwiML are
 * twilio-http.js's. Plain JS with no Node or k6 imports, so k6 runs it too.
 */
import { FRAME_BYTES, FRAME_MS, silence, speechFrames } from './audio.js';
import { CallerStream } from './caller-stream.js';

export { emptyReport } from './caller-report.js';

/** @typedef {import('./caller-report.js').CallTurn} CallTurn */
/** @typedef {import('./caller-report.js').CallScript} CallScript */
/** @typedef {import('./caller-report.js').TurnReport} TurnReport */
/** @typedef {import('./caller-report.js').CallerReport} CallerReport */
/** @typedef {import('./caller-report.js').LegEnd} LegEnd */
/** @typedef {import('./caller-report.js').LegReport} LegReport */
/** @typedef {import('./caller-stream.js').CallerHooks} CallerHooks */

/**
 * One simulated call on an open Media Stream. Every method takes the adapter's current time in ms
 * (any monotonic clock) and returns the JSON text messages to send, in order.
 */
export class CallerSession extends CallerStream {
  /** @param {ConstructorParameters<typeof CallerStream>[0]} o */
  constructor(o) {
    super(o);
    this.script = o.script;
    this.quietMs = o.script.quietMs ?? 300;
    this.replyTimeoutMs = o.script.replyTimeoutMs ?? 10_000;
    this.repeatAfterMoveMs = o.script.repeatAfterMoveMs ?? 2000;
    this.silenceB64 = o.b64encode(silence(FRAME_BYTES));
    /** @type {string[]} base64 speech frames still to send for the current turn */
    this.speech = [];
    this.speechAt = 0;
    /** @type {string[]} */
    this.dtmf = [];
    /** When the phase started waiting (open, or end of the caller's speech). */
    this.waitFromMs = 0;
    this.closingFromMs = 0;
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

  /** @param {number} now @param {string[]} out @param {'caller' | 'timeout'} by */
  stop(now, out, by) {
    out.push(this.stopMessage());
    this.report_.endedBy = by;
    this.resumePhase = null;
    this.endLeg(now, by === 'timeout' ? 'timeout' : 'caller-hangup', null);
    this.finish(now);
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

  stopMessage() {
    return this.envelope('stop', `,"stop":{"accountSid":${JSON.stringify(this.o.accountSid)},"callSid":${JSON.stringify(this.o.callSid)}}`);
  }
}
