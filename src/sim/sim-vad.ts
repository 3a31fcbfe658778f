/**
 * The simulated model's voice activity detection over caller μ-law, timed by the audio itself
 * (bytes / 8 = ms), never by the wall clock: two speech-energy frames in a row start speech, the
 * session's silence duration of quiet frames ends it. Speech frames' text markers are collected for
 * the transcript the model "hears".
 */
import { FRAME_BYTES, SPEECH_ENERGY_THRESHOLD, SpeechTextCollector, frameEnergy } from './portable/audio.js';

export interface VadEvents {
  /** Speech started `audioStartMs` into the session's input audio. */
  started(audioStartMs: number): void;
  /** Speech ended `audioEndMs` into the session's input audio (the last speech frame's end). */
  stopped(audioEndMs: number): void;
}

export class SimVad {
  private partial: Uint8Array | undefined;
  private vadBytes = 0;
  private buffered = 0;
  private speechRun = 0;
  private runStartMs = 0;
  private speaking = false;
  private silenceMs = 0;
  private lastSpeechEndMs = 0;
  private readonly collector = new SpeechTextCollector();

  constructor(private readonly events: VadEvents) {}

  /** Input audio since the buffer was last committed or cleared. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * Feed appended audio (any length; frames are cut across appends). `listening` false (turn
   * detection off, session closed) still buffers and collects it but detects nothing.
   */
  push(bytes: Uint8Array, listening: boolean, silenceLimitMs: number): void {
    let buf: Uint8Array = bytes;
    if (this.partial) {
      buf = Buffer.concat([this.partial, bytes]);
      this.partial = undefined;
    }
    let off = 0;
    for (; off + FRAME_BYTES <= buf.length; off += FRAME_BYTES) this.frame(buf.subarray(off, off + FRAME_BYTES), listening, silenceLimitMs);
    if (off < buf.length) this.partial = buf.slice(off);
  }

  /** The text the collected speech carries, if any. */
  transcript(): string | undefined {
    return this.collector.text();
  }

  /** The buffer was committed or cleared: forget the speech in it. */
  reset(): void {
    this.collector.reset();
    this.buffered = 0;
    this.speaking = false;
    this.speechRun = 0;
    this.silenceMs = 0;
  }

  private frame(f: Uint8Array, listening: boolean, silenceLimitMs: number): void {
    const isSpeech = frameEnergy(f) >= SPEECH_ENERGY_THRESHOLD;
    const startMs = this.vadBytes / 8;
    this.vadBytes += f.length;
    this.buffered += f.length;
    if (isSpeech) this.collector.push(f);
    if (!listening) return;
    if (isSpeech) {
      this.silenceMs = 0;
      this.lastSpeechEndMs = this.vadBytes / 8;
      if (!this.speaking) {
        if (this.speechRun === 0) this.runStartMs = startMs;
        if (++this.speechRun >= 2) {
          this.speaking = true;
          this.events.started(this.runStartMs);
        }
      }
    } else if (this.speaking) {
      this.silenceMs += f.length / 8;
      if (this.silenceMs >= silenceLimitMs) this.events.stopped(this.lastSpeechEndMs);
    } else {
      this.speechRun = 0;
    }
  }
}
