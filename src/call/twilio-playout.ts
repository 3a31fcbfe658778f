/**
 * The Twilio side of one call: assistant audio out with a mark after every `markIntervalMs` of it
 * (or after each chunk), marks uWS dropped resent on drain, what the caller heard
 * (PlaybackTracker), and the barge-in `clear` (docs/wire-formats.md §7). Per delta it costs what
 * the bridge's inline code did: no allocation beyond the frames it sends.
 *
 * Coalescing (`coalesceMs` > 0, docs/performance.md): once Twilio's buffer holds at least
 * {@link COALESCE_MIN_QUEUED_MS} of audio ahead of playout, further deltas of the same item are
 * decoded into one buffer and sent as one `media` of up to `coalesceMs`. The first audio of an item
 * is never held, nor anything while the buffer ahead is thinner; held audio goes out before any
 * mark of another item, when the model stops sending, on a new model session, at the call's end,
 * and as soon as the stream clock (every inbound frame) says the buffer ahead fell below the
 * threshold. A barge-in drops it unsent: it was never played, so the truncation stays exact.
 */
import type { DropReason } from '../telemetry/index.js';
import { twilioEncoder, type TwilioEncoder } from '../twilio/index.js';
import { base64MulawMs, PlaybackTracker, type Truncation } from './playback.js';

/**
 * Audio Twilio must hold ahead of playout before more is held back. The estimate is late by up to
 * a frame (the stream clock is the caller's last frame) and is checked every frame (20 ms), so at
 * the flush at least ~60 ms are still queued: the caller never waits for held audio.
 */
export const COALESCE_MIN_QUEUED_MS = 100;

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
  /** Coalescing: decoded μ-law held back (capacity `coalesceMs` of audio; empty when off). */
  private readonly held: Buffer;
  private heldLen = 0;
  /** Deltas in `held`, and the item they continue (the last one sent). */
  private heldDeltas = 0;
  private heldItem = '';
  private heldContent = 0;

  /**
   * `markIntervalMs`: audio per mark, or a mark after every delta longer than that (0: after every
   * delta). `coalesceMs`: most audio joined into one media message (0: one per delta, as the model
   * sent it). `dropped` counts held deltas that could not be sent when their turn came.
   */
  constructor(
    private readonly twilio: TwilioSocket,
    private readonly maxBackpressureBytes: number,
    markIntervalMs = 0,
    coalesceMs = 0,
    private readonly dropped: (reason: DropReason, deltas: number) => void = () => {},
  ) {
    this.playback = new PlaybackTracker(markIntervalMs);
    this.held = Buffer.allocUnsafe(Math.max(0, Math.floor(coalesceMs)) * 8);
  }

  /** The stream clock moved (an inbound media frame): held audio goes out once the buffer ahead thins. */
  tick(streamTs: number): void {
    this.streamTs = streamTs;
    if (this.heldLen > 0 && this.playback.queuedMs(streamTs) < COALESCE_MIN_QUEUED_MS) this.flush();
  }

  /** The stream started: frames go out on its sid. */
  started(streamSid: string): void {
    this.enc = twilioEncoder(streamSid);
  }

  /** Audio sent but not yet confirmed played, or held to be sent. */
  get unplayed(): boolean {
    return this.heldLen > 0 || this.playback.unplayed;
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
    if (this.held.length > 0 && this.hold(delta, ms * 8, itemId, contentIndex)) return undefined;
    return this.send(enc, delta, ms, itemId, contentIndex);
  }

  /**
   * Coalescing: take `delta` into the held audio (sending the lot when full, or when the buffer
   * ahead is too thin to wait) and return true; false when it must go out as it came.
   */
  private hold(delta: string, bytes: number, itemId: string, contentIndex: number): boolean {
    const same = this.playback.continues(itemId, contentIndex);
    const fits = this.heldLen + bytes <= this.held.length;
    if (this.heldLen > 0 && !(same && fits)) this.flush();
    if (!same || !fits) return false;
    const thin = this.playback.queuedMs(this.streamTs) < COALESCE_MIN_QUEUED_MS;
    if (thin && this.heldLen === 0) return false;
    this.heldLen += this.held.write(delta, this.heldLen, 'base64');
    this.heldDeltas++;
    this.heldItem = itemId;
    this.heldContent = contentIndex;
    // Full when another 20 ms frame would not fit.
    if (thin || this.heldLen + 160 > this.held.length) this.flush();
    return true;
  }

  /** Send the held audio as one media message (and its mark when one is due). */
  private flush(): void {
    const len = this.heldLen;
    if (len === 0) return;
    const deltas = this.heldDeltas;
    this.heldLen = 0;
    this.heldDeltas = 0;
    const enc = this.enc;
    if (!this.open || !enc) return this.dropped('call_ending', deltas);
    if (this.twilio.bufferedAmount() > this.maxBackpressureBytes) return this.dropped('caller_backpressure', deltas);
    const why = this.send(enc, this.held.toString('base64', 0, len), len / 8, this.heldItem, this.heldContent);
    if (why !== undefined) this.dropped(why, deltas);
  }

  /** One media message of `ms` audio of the item, after the previous item's tail mark and before its own mark. */
  private send(enc: TwilioEncoder, payload: string, ms: number, itemId: string, contentIndex: number): DropReason | undefined {
    const twilio = this.twilio;
    let media = 1;
    twilio.cork(() => {
      // The previous item's unmarked tail is marked before another item's audio.
      const tail = this.playback.tailMark(itemId, contentIndex);
      if (tail !== undefined) this.sendMark(enc, tail);
      media = twilio.send(enc.media(payload));
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
    this.flush();
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
    // Held audio was never sent, so never heard: dropped, and the truncation counts none of it.
    this.heldLen = 0;
    this.heldDeltas = 0;
    if (this.open && this.enc && this.playback.unplayed) this.twilio.send(this.enc.clear());
    const heard = this.playback.interrupt(this.streamTs);
    this.lostMarks.length = 0; // marks of audio the clear discarded: nothing to wait for
    if (activeResponseId) this.discarded.add(activeResponseId);
    return heard;
  }

  /** A new model session: its responses and items are new; audio of the old one may still play. */
  newSession(): void {
    this.flush();
    this.markTail();
    this.playback.newSession();
    this.discarded.clear();
  }

  /** End the socket once (uWS throws if it closed under us in the same tick: nothing left to close). */
  end(code: number, reason: string): void {
    if (!this.open) return;
    this.flush();
    this.open = false;
    try {
      this.twilio.end(code, reason);
    } catch {
      // closed already
    }
  }
}
