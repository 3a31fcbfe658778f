/**
 * Caller audio toward the model in appends of N Twilio frames: one `input_audio_buffer.append` per
 * N × 20 ms instead of one per frame (the API takes any length; 20 ms is Twilio's framing). Base64
 * payloads cannot be concatenated as text (each 160-byte frame ends in `==` padding), so frames are
 * decoded into one buffer owned by the call and re-encoded once per append: no per-frame allocation.
 * With a `FrameWait`, each frame's time from arrival to the send of the append that carries it (the
 * hold included) is observed when that append goes: switchboard_frame_relay_seconds{caller_to_model}.
 */
import { APPEND_PREFIX } from '../model/client-events.js';

/** Twilio's frame: 20 ms of 8 kHz μ-law. */
const FRAME_BYTES = 160;

/** Where appends go: the model socket. */
export interface AppendSink {
  send(data: string): void;
}

/** Where each sent frame's wait goes: a clock (ms) read once per append and a histogram (seconds). */
export interface FrameWait {
  readonly clock: { mono(): number };
  readonly histogram: { observe(seconds: number): void };
}

export class AppendBatcher {
  private readonly buf: Buffer;
  private len = 0;
  private frames = 0;
  /** Arrival (clock ms) of each held frame, in order: at most N (3), kept for the call. */
  private readonly arrived: Float64Array;

  /**
   * `framesPerAppend` 1 sends every frame as it comes (no buffer at all). The buffer lives as long
   * as the call, so it gets its own memory (allocUnsafeSlow): `allocUnsafe` would slice it from
   * Node's shared 8 KB pool and pin that whole slab for the call (~8 KB a call, measured).
   */
  constructor(
    readonly framesPerAppend: number,
    private readonly wait?: FrameWait,
  ) {
    this.buf = Buffer.allocUnsafeSlow(framesPerAppend > 1 ? framesPerAppend * FRAME_BYTES * 2 : 0);
    this.arrived = new Float64Array(framesPerAppend > 1 ? framesPerAppend : 0);
  }

  /**
   * Base64 audio as one append of its own: the one place the event is spliced (a frame with N = 1,
   * an oversized frame, each frame held while the model connected, a flush).
   */
  send(audio: string, out: AppendSink): void {
    out.send(APPEND_PREFIX + audio + '"}');
  }

  /**
   * One caller frame (base64 μ-law) that arrived at `arrivedMs` (clock ms): sent at once with N = 1,
   * else held until N are, then sent as one append.
   */
  push(payload: string, out: AppendSink, arrivedMs: number): void {
    if (this.framesPerAppend <= 1) return this.sendOne(payload, out, arrivedMs);
    // Decoded size is at most 3/4 of the base64 length. What would not fit goes out first; an
    // oversized frame (not Twilio's 160 bytes) then goes alone.
    const max = (payload.length * 3) >>> 2;
    if (this.len + max > this.buf.length) {
      this.flush(out);
      if (max > this.buf.length) return this.sendOne(payload, out, arrivedMs);
    }
    this.len += this.buf.write(payload, this.len, 'base64');
    this.arrived[this.frames] = arrivedMs;
    if (++this.frames >= this.framesPerAppend) this.flush(out);
  }

  private sendOne(payload: string, out: AppendSink, arrivedMs: number): void {
    this.send(payload, out);
    if (this.wait) this.wait.histogram.observe((this.wait.clock.mono() - arrivedMs) / 1000);
  }

  /** Send what is held as one append (nothing when empty): before any event that must follow the audio. */
  flush(out: AppendSink): void {
    if (this.len === 0) return;
    const audio = this.buf.toString('base64', 0, this.len);
    const frames = this.frames;
    this.len = 0;
    this.frames = 0;
    this.send(audio, out);
    if (!this.wait) return;
    const now = this.wait.clock.mono();
    for (let i = 0; i < frames; i++) this.wait.histogram.observe((now - this.arrived[i]!) / 1000);
  }

  /** Forget what is held (the session it was meant for is gone). */
  clear(): void {
    this.len = 0;
    this.frames = 0;
  }
}
