/**
 * What the caller has actually heard of the assistant's audio, from Twilio mark echoes and the
 * stream clock (docs/wire-formats.md §7). Pure bookkeeping: twilio-playout.ts sends the marks and the
 * `clear`, conversation.ts the truncates.
 *
 * Marks may be thinned (`markIntervalMs`): one per that much audio of an item, or per delta when a
 * delta is longer. Between marks the stream clock carries the played position: it advances at the
 * same rate as playback, so truncation stays within a frame of what was heard, as with a mark per
 * delta. The unmarked tail of an item gets its mark when the model stops sending it (closeItems)
 * or another item starts (tailMark), so every audio sent is eventually confirmed played.
 */

interface ItemPlayback {
  itemId: string;
  contentIndex: number;
  /** Milliseconds of this item's audio sent to Twilio. */
  sentMs: number;
  /** Milliseconds of this item's audio followed by a mark; the rest is the unmarked tail. */
  markedMs: number;
  /** Milliseconds known played: the end of the last echoed mark (or `guessed`, see there). */
  playedMs: number;
  /**
   * True when playedMs came from the stream clock, not a mark: the model paused with an unmarked
   * tail and, by the clock, Twilio's buffer had run dry when more audio came. The next echo is the
   * truth even when it is behind the guess.
   */
  guessed: boolean;
  /** Stream time (media.timestamp) of the last mark echo, or of the first send before any echo. */
  anchorTs: number;
  /** True once a mark of this item was echoed. */
  echoed: boolean;
  /**
   * True while the model may still send audio for this item. The real model streams in bursts and
   * can pause mid-item until Twilio's buffer runs dry; the item's played position must survive that.
   */
  open: boolean;
  /** False for items of an earlier model session: still playing, but no truncate may name them. */
  current: boolean;
}

interface PendingMark {
  item: ItemPlayback;
  endMs: number;
}

export interface Truncation {
  itemId: string;
  contentIndex: number;
  audioEndMs: number;
  /** Milliseconds of the item's audio sent to Twilio. */
  sentMs: number;
}

/** μ-law at 8 kHz: 8 bytes per millisecond; base64 carries 3 bytes per 4 characters. */
export function base64MulawMs(b64: string): number {
  const len = b64.length;
  if (len === 0) return 0;
  const pad = b64.charCodeAt(len - 1) === 61 /* = */ ? (b64.charCodeAt(len - 2) === 61 ? 2 : 1) : 0;
  return ((len / 4) * 3 - pad) / 8;
}

/** Played by marks plus stream time elapsed since the anchor, clamped to what was sent. */
function heardAt(item: ItemPlayback, streamTs: number): number {
  return Math.min(item.sentMs, item.playedMs + Math.max(0, streamTs - item.anchorTs));
}

export class PlaybackTracker {
  /** Bumped at each barge-in; marks of older generations are echoes of a `clear`, not playback. */
  private generation = 0;
  private items: ItemPlayback[] = [];
  private readonly pending = new Map<string, PendingMark>();
  private seq = 0;

  /** `markIntervalMs`: audio per mark (0: a mark after every delta). */
  constructor(private readonly markIntervalMs = 0) {}

  /**
   * Record audio sent for `itemId` and return the name of the mark to send right after it, or
   * undefined while the item's unmarked audio is shorter than the mark interval.
   * `streamTs` is the latest inbound media timestamp (the stream clock). Call {@link tailMark}
   * first: a new item must not start before the previous one's tail is marked.
   */
  sent(itemId: string, contentIndex: number, ms: number, streamTs: number): string | undefined {
    let item = this.items[this.items.length - 1];
    if (!item || item.itemId !== itemId || item.contentIndex !== contentIndex) {
      // A new item starts its own clock (keeping the old start caused "Audio content of X ms is
      // already shorter than Y ms" in the reference implementations); the one before it is done.
      if (item) item.open = false;
      item = { itemId, contentIndex, sentMs: 0, markedMs: 0, playedMs: 0, guessed: false, anchorTs: streamTs, echoed: false, open: true, current: true };
      this.items.push(item);
    } else if (this.pending.size === 0 && item.markedMs >= item.sentMs) {
      // Twilio's buffer ran dry during a pause mid-item (every mark echoed): this audio starts playing now.
      item.anchorTs = streamTs;
    } else if (item.markedMs < item.sentMs && this.items[0] === item && heardAt(item, streamTs) >= item.sentMs) {
      // The same with an unmarked tail: by the stream clock all of it has played (it is the item
      // playing, not one queued behind another).
      item.playedMs = item.sentMs;
      item.guessed = true;
      item.anchorTs = streamTs;
    }
    item.sentMs += ms;
    return item.sentMs - item.markedMs >= this.markIntervalMs ? this.mark(item) : undefined;
  }

  /**
   * The name of a mark for the last item's unmarked tail when `itemId`/`contentIndex` (if given)
   * is not that item: to send before audio of another item, or when the model stops sending.
   */
  tailMark(itemId?: string, contentIndex?: number): string | undefined {
    const item = this.items[this.items.length - 1];
    if (!item || item.markedMs >= item.sentMs) return undefined;
    if (item.itemId === itemId && item.contentIndex === contentIndex) return undefined;
    return this.mark(item);
  }

  private mark(item: ItemPlayback): string {
    item.markedMs = item.sentMs;
    const name = `${item.itemId}:${Math.round(item.sentMs)}:g${this.generation}:m${++this.seq}`;
    this.pending.set(name, { item, endMs: item.sentMs });
    return name;
  }

  /** A mark came back from Twilio. Returns false for unknown or stale (pre-clear) names. */
  echoed(name: string, streamTs: number): boolean {
    const p = this.pending.get(name);
    if (!p) return false;
    this.pending.delete(name);
    const item = p.item;
    // max: a mark uWS dropped is resent later, and may come back after the marks behind it.
    item.playedMs = item.guessed ? p.endMs : Math.max(item.playedMs, p.endMs);
    item.guessed = false;
    item.anchorTs = streamTs;
    item.echoed = true;
    this.prune(streamTs);
    return true;
  }

  /**
   * The model finished sending audio (audio done, response done): no item grows any more, and
   * fully played ones can be forgotten.
   */
  closeItems(streamTs: number): void {
    for (const item of this.items) item.open = false;
    this.prune(streamTs);
  }

  /** Drop fully played, finished items from the front; they need no truncation any more. */
  private prune(streamTs: number): void {
    while (this.items.length > 0) {
      const first = this.items[0]!;
      if (!first.open && first.playedMs >= first.sentMs && !this.hasPendingFor(first)) {
        this.items.shift();
        // The next item starts playing only now, not when it was sent.
        const next = this.items[0];
        if (next && !next.echoed) next.anchorTs = Math.max(next.anchorTs, streamTs);
      } else break;
    }
  }

  private hasPendingFor(item: ItemPlayback): boolean {
    for (const p of this.pending.values()) if (p.item === item) return true;
    return false;
  }

  /** True when audio of `itemId`/`contentIndex` was the last sent: more of it continues that item. */
  continues(itemId: string, contentIndex: number): boolean {
    const item = this.items[this.items.length - 1];
    return item !== undefined && item.itemId === itemId && item.contentIndex === contentIndex;
  }

  /**
   * Milliseconds of audio sent and, by the marks and the stream clock, not yet played: what Twilio's
   * buffer holds ahead of playout. The item playing counts what is left of it, the items queued
   * behind it all of theirs. An estimate on the late side of playback (the stream clock is the
   * caller's last frame), so callers keep a margin.
   */
  queuedMs(streamTs: number): number {
    let queued = 0;
    let playingFound = false;
    for (const item of this.items) {
      if (playingFound) {
        queued += item.sentMs - item.playedMs;
        continue;
      }
      const heard = heardAt(item, streamTs);
      if (heard >= item.sentMs) continue; // played out (maybe awaiting its echo)
      playingFound = true;
      queued += item.sentMs - heard;
    }
    return queued;
  }

  /** Audio sent but not yet confirmed played (a pending mark, or an unmarked tail). */
  get unplayed(): boolean {
    if (this.pending.size > 0) return true;
    const last = this.items[this.items.length - 1];
    return last !== undefined && last.markedMs < last.sentMs;
  }

  /**
   * The caller spoke over the assistant: work out how much of each item was heard, then forget
   * everything (twilio-playout.ts sends `clear`, so every pending mark will echo as discarded).
   * Heard = played-by-marks plus stream time elapsed since the last echo, clamped to what was sent;
   * items queued behind the one playing were not heard at all (0). An item still open (the model
   * paused mid-item) is truncated even when all of it played: the model may hold more than was sent.
   */
  interrupt(streamTs: number): Truncation[] {
    const out: Truncation[] = [];
    let playingFound = false;
    for (const item of this.items) {
      if (item.playedMs >= item.sentMs && !this.hasPendingFor(item) && !item.open) continue; // fully heard
      let heard = 0;
      if (!playingFound) {
        playingFound = true;
        heard = heardAt(item, streamTs);
      }
      if (!item.current) continue;
      out.push({ itemId: item.itemId, contentIndex: item.contentIndex, audioEndMs: Math.max(0, Math.floor(heard)), sentMs: item.sentMs });
    }
    this.items = [];
    this.pending.clear();
    this.generation++;
    return out;
  }

  /**
   * A new model session: audio of the old one may still be playing (and is still cleared on a
   * barge-in), but its items do not exist in the new session, so no truncation names them.
   */
  newSession(): void {
    for (const item of this.items) {
      item.open = false;
      item.current = false;
    }
  }
}
