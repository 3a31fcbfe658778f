/**
 * The Twilio side of one call: assistant audio out with a mark after every `markIntervalMs` of it
 * (or after each chunk), marks uWS dropped resent on drain, what the caller heard
 * (PlaybackTracker), and the barge-in `clear` (docs/wire-formats.md §7). Per delta it costs what
 * the bridge's inline code did: no allocation beyond the frames it sends.
 */
import type { DropReason } from '../telemetry/index.js';
import { twilioEncoder, type TwilioEncoder } from '../twilio/index.js';
import { base64MulawMs, PlaybackTracker, type Truncation } from './playback.js';

/** The Twilio side as the bridge sees it: a thin view over a uWS WebSocket. */
export interface TwilioSocket {
  /** uWS semantics: 1 sent, 0 sent but backpressure built up, 2 dropped. */
  send(text: string): number;
  bufferedAmount(): number;
  /** Batch several sends into one syscall. */
  cork(fn: () => void): void;
  end(code: number, reason: string): void;
}

export class TwilioPlayout {
  /** Stream time: the latest inbound media timestamp. */
  streamTs = 0;
  /** False once the socket was ended or closed under us. */
  open = true;
  private enc: TwilioEncoder | undefined;
  private readonly playback: PlaybackTracker;
  /** Responses cut by a barge-in: their late audio is stale. */
  private readonly discarded = new Set<string>();
  /** Marks uWS dropped although their media frame was sent; resent in order when the socket drains. */
  private readonly lostMarks: string[] = [];

  /** `markIntervalMs`: audio per mark, or a mark after every delta longer than that (0: after every delta). */
  constructor(
    private readonly twilio: TwilioSocket,
    private readonly maxBackpressureBytes: number,
    markIntervalMs = 0,
  ) {
    this.playback = new PlaybackTracker(markIntervalMs);
  }

  /** The stream started: frames go out on its sid. */
  started(streamSid: string): void {
    this.enc = twilioEncoder(streamSid);
  }

  /** Audio sent but not yet confirmed played. */
  get unplayed(): boolean {
    return this.playback.unplayed;
  }

  isDiscarded(responseId: string): boolean {
    return this.discarded.has(responseId);
  }

  /** Send one chunk of assistant audio and its mark. Returns why it was dropped, or undefined. */
  play(delta: string, itemId: string, contentIndex: number): DropReason | undefined {
    const enc = this.enc;
    if (!this.open || !enc) return 'call_ending';
    const twilio = this.twilio;
    if (twilio.bufferedAmount() > this.maxBackpressureBytes) return 'caller_backpressure';
    const ms = base64MulawMs(delta);
    let media = 1;
    twilio.cork(() => {
      // The previous item's unmarked tail is marked before another item's audio.
      const tail = this.playback.tailMark(itemId, contentIndex);
      if (tail !== undefined) this.sendMark(enc, tail);
      media = twilio.send(enc.media(delta));
      // A frame uWS dropped gets no mark: one that can never echo would hold a wind-down (and count
      // as audio still playing at the next barge-in) until the caller gave up.
      if (media === 2) return;
      const markName = this.playback.sent(itemId, contentIndex, ms, this.streamTs);
      if (markName !== undefined) this.sendMark(enc, markName);
    });
    return media === 2 ? 'caller_backpressure' : undefined;
  }

  /** Send a mark; if uWS drops it (the media before it filled the buffer), it is resent on drain. */
  private sendMark(enc: TwilioEncoder, name: string): void {
    if (this.twilio.send(enc.mark(name)) === 2) this.lostMarks.push(name);
  }

  /** The unmarked tail of the last item gets its mark: no more audio follows it for now. */
  private markTail(): void {
    const enc = this.enc;
    if (!this.open || !enc) return;
    const tail = this.playback.tailMark();
    if (tail !== undefined) this.sendMark(enc, tail);
  }

  /** A mark came back. False for unknown or stale (pre-clear) names. */
  echoed(name: string): boolean {
    return this.playback.echoed(name, this.streamTs);
  }

  /** The model finished sending audio for now (audio done, response done). */
  closeItems(): void {
    this.markTail();
    this.playback.closeItems(this.streamTs);
  }

  /**
   * Twilio's socket drained. Audio is dropped, not queued, so nothing to resume — except marks uWS
   * dropped after their audio went out: they must come back for the wind-down to know it played.
   */
  drained(): void {
    const enc = this.enc;
    if (this.lostMarks.length === 0 || !this.open || !enc) return;
    let sent = 0;
    while (sent < this.lostMarks.length && this.twilio.send(enc.mark(this.lostMarks[sent]!)) !== 2) sent++;
    this.lostMarks.splice(0, sent);
  }

  /**
   * Barge-in: `clear` Twilio when it holds audio of ours, forget every pending mark, mark the active
   * response's further audio stale, and return what of each item was heard (for the truncates).
   */
  interrupt(activeResponseId: string | undefined): Truncation[] {
    if (this.open && this.enc && this.playback.unplayed) this.twilio.send(this.enc.clear());
    const heard = this.playback.interrupt(this.streamTs);
    this.lostMarks.length = 0; // marks of audio the clear discarded: nothing to wait for
    if (activeResponseId) this.discarded.add(activeResponseId);
    return heard;
  }

  /** A new model session: its responses and items are new; audio of the old one may still play. */
  newSession(): void {
    this.markTail();
    this.playback.newSession();
    this.discarded.clear();
  }

  /** End the socket once (uWS throws if it closed under us in the same tick: nothing left to close). */
  end(code: number, reason: string): void {
    if (!this.open) return;
    this.open = false;
    try {
      this.twilio.end(code, reason);
    } catch {
      // closed already
    }
  }
}
