/**
 * The stall rule: a model that hears every caller frame answers speech within a second or so
 * (speech_started). When the caller has been talking for `stallMs` and the model has sent nothing
 * since the caller began, the session is stuck even if its socket still answers pings. Likewise
 * when the model owes an event (a response.create was sent, server VAD ended a turn) and nothing
 * comes for `stallMs`: a greeting that never starts is a silent line.
 *
 * The bridge samples one caller frame in eight (every 160 ms); a sample reads the first 80 base64
 * characters of the payload and sums their μ-law magnitudes in place: no decode, no allocation. Speech is judged as the simulated model's VAD
 * judges it (mean |linear| over the frame), and counts only after a run of speech samples.
 */
import { MULAW_TO_LINEAR, SPEECH_ENERGY_THRESHOLD } from './mulaw.js';
import type { Clock } from '../clock.js';

/** Consecutive speech samples (≈ 0.5 s of speech) before the caller counts as talking. */
const ONSET_SAMPLES = 3;
/** At the deadline the caller must still be talking: a speech sample this recent. */
const STILL_TALKING_MS = 1000;
/** Base64 characters read per sample: 60 μ-law bytes, the first 7.5 ms of a frame. */
const SAMPLE_CHARS = 80;
const B64 = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;
const LINEAR: ArrayLike<number> = MULAW_TO_LINEAR;

function absLinear(b: number): number {
  const v = LINEAR[b] ?? 0;
  return v < 0 ? -v : v;
}

/** Mean |linear| of the μ-law bytes in the first SAMPLE_CHARS of a base64 payload (no decode buffer). */
export function base64MulawEnergy(payload: string): number {
  const end = Math.min(payload.length, SAMPLE_CHARS) & ~3;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < end; i += 4) {
    const a = B64[payload.charCodeAt(i) & 127] ?? -1;
    const b = B64[payload.charCodeAt(i + 1) & 127] ?? -1;
    const c = B64[payload.charCodeAt(i + 2) & 127] ?? -1;
    const d = B64[payload.charCodeAt(i + 3) & 127] ?? -1;
    if (a < 0 || b < 0 || c < 0 || d < 0) break; // padding or junk: judge what came before
    sum += absLinear((a << 2) | (b >> 4)) + absLinear(((b & 15) << 4) | (c >> 2)) + absLinear(((c & 3) << 6) | d);
    n += 3;
  }
  return n === 0 ? 0 : sum / n;
}

export class StallWatch {
  private run = 0;
  private lastSpeechMono = 0;
  /** When the caller began talking with no model event since; undefined otherwise. */
  private onsetMono: number | undefined;
  private cancelTimer: (() => void) | undefined;
  /** Model events seen; an owed event is one that moves this on. */
  private events = 0;
  private cancelOwed: (() => void) | undefined;

  constructor(
    readonly stallMs: number,
    private readonly clock: Pick<Clock, 'after' | 'mono'>,
    private readonly onStall: () => void,
    /** speech_started seen and not yet speech_stopped (the conversation knows): the model has the turn in hand. */
    private readonly turnOpen: () => boolean,
  ) {}

  /** One sampled caller frame (base64 μ-law), at monotonic time `now`. */
  sample(payload: string, now: number): void {
    if (base64MulawEnergy(payload) < SPEECH_ENERGY_THRESHOLD) {
      this.run = 0;
      return;
    }
    this.lastSpeechMono = now;
    if (++this.run < ONSET_SAMPLES || this.turnOpen() || this.onsetMono !== undefined) return;
    const onset = (this.onsetMono = now);
    this.cancelTimer?.();
    this.cancelTimer = this.clock.after(this.stallMs, () => {
      this.cancelTimer = undefined;
      if (this.onsetMono === onset && !this.turnOpen() && this.clock.mono() - this.lastSpeechMono < STILL_TALKING_MS) this.onStall();
    });
  }

  /** Any model event: the model is alive; the caller's next words start a new watch. */
  modelEvent(): void {
    this.onsetMono = undefined;
    this.events++;
  }

  /** The model owes an answer now (a response.create went out, a caller turn ended). */
  expectEvent(): void {
    if (this.cancelOwed) return; // one owed-event watch at a time; any event settles it
    const seen = this.events;
    this.cancelOwed = this.clock.after(this.stallMs, () => {
      this.cancelOwed = undefined;
      if (this.events === seen) this.onStall();
    });
  }

  /** A new session, or the call ended. */
  reset(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.cancelOwed?.();
    this.cancelOwed = undefined;
    this.onsetMono = undefined;
    this.run = 0;
  }
}
