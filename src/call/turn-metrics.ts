/**
 * Turn timing of one call: when each 20 ms of caller audio went to the model (so the model's
 * `audio_end_ms` maps back to a time), the end of the caller's turn, and the latency from there to
 * the first assistant audio relayed. Times come from the call's Clock (`mono`), so a manual clock
 * drives it in tests. Allocation-free per frame: a fixed ring of numbers.
 */
import { base64MulawMs } from './playback.js';

/** Stream-time ring of append times, for mapping the model's audio_end_ms back to monotonic time. */
const APPEND_TIMES = 256;

export interface TurnSummary {
  turns: number;
  connectMs: number | undefined;
  turnLatencyMsMax: number;
  turnLatencyMsAvg: number | undefined;
}

export class TurnMetrics {
  /** Caller turns so far (speech stopped). */
  turns = 0;
  /** Model connect to configured session, first session only. */
  connectMs: number | undefined;
  private readonly appendTimes = new Float64Array(APPEND_TIMES);
  private appendedMs = 0;
  private turnEnd: number | undefined;
  private maxMs = 0;
  private sumMs = 0;
  private count = 0;

  /** Audio of a new session starts at stream position 0. */
  restartStream(): void {
    this.appendedMs = 0;
  }

  /** `payload` (base64 μ-law) went to the model at monotonic time `now`. */
  appended(payload: string, now: number): void {
    this.appendedMs += base64MulawMs(payload);
    this.appendTimes[Math.floor(this.appendedMs / 20) % APPEND_TIMES] = now;
  }

  /**
   * The caller stopped speaking at `audioEndMs` of the session's input audio; `now` when the
   * position is no longer in the ring. Returns the new turn's index (1-based).
   */
  turnEnded(audioEndMs: number, now: number): number {
    this.turnEnd = this.appendTimeAt(audioEndMs) ?? now;
    return ++this.turns;
  }

  /**
   * Assistant audio was relayed at `now`: the first after a turn end yields the turn latency in
   * seconds (and is recorded); any other yields undefined.
   */
  audioRelayed(now: number): number | undefined {
    if (this.turnEnd === undefined) return undefined;
    const seconds = (now - this.turnEnd) / 1000;
    const ms = seconds * 1000;
    this.maxMs = Math.max(this.maxMs, ms);
    this.sumMs += ms;
    this.count++;
    this.turnEnd = undefined;
    return seconds;
  }

  /** The session the turn's end belonged to is gone: no latency is measured against it. */
  forgetTurn(): void {
    this.turnEnd = undefined;
  }

  summary(): TurnSummary {
    return {
      turns: this.turns,
      connectMs: this.connectMs,
      turnLatencyMsMax: Math.round(this.maxMs),
      turnLatencyMsAvg: this.count ? Math.round(this.sumMs / this.count) : undefined,
    };
  }

  private appendTimeAt(audioMs: number): number | undefined {
    if (audioMs < 0 || audioMs > this.appendedMs || this.appendedMs - audioMs > (APPEND_TIMES - 2) * 20) return undefined;
    const t = this.appendTimes[Math.floor(audioMs / 20) % APPEND_TIMES];
    return t === undefined || t === 0 ? undefined : t;
  }
}
