/**
 * What the caller has actually heard of the assistant's audio, from Twilio mark echoes and the
 * stream clock (docs/wire-formats.md §7). Pure bookkeeping: the bridge sends the marks, truncates and clears.
 */

interface ItemPlayback {
  itemId: string;
  contentIndex: number;
  /** Milliseconds of this item's audio sent to Twilio. */
  sentMs: number;
  /** Milliseconds known played: the end of the last echoed mark. */
  playedMs: number;
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

export class PlaybackTracker {
  /** Bumped at each barge-in; marks of older generations are echoes of a `clear`, not playback. */
  generation = 0;
  private items: ItemPlayback[] = [];
  private readonly pending = new Map<string, PendingMark>();
  private seq = 0;

  /**
   * Record audio sent for `itemId` and return the name of the mark to send right after it.
   * `streamTs` is the latest inbound media timestamp (the stream clock).
   */
  sent(itemId: string, contentIndex: number, ms: number, streamTs: number): string {
    let item = this.items[this.items.length - 1];
    if (!item || item.itemId !== itemId || item.contentIndex !== contentIndex) {
      // A new item starts its own clock (keeping the old start caused "Audio content of X ms is
      // already shorter than Y ms" in the reference implementations); the one before it is done.
      if (item) item.open = false;
      item = { itemId, contentIndex, sentMs: 0, playedMs: 0, anchorTs: streamTs, echoed: false, open: true, current: true };
      this.items.push(item);
    } else if (this.pending.size === 0) {
      // Twilio's buffer ran dry during a pause mid-item: this audio starts playing now.
      item.anchorTs = streamTs;
    }
    item.sentMs += ms;
    const name = `${itemId}:${Math.round(item.sentMs)}:g${this.generation}:m${++this.seq}`;
    this.pending.set(name, { item, endMs: item.sentMs });
    return name;
  }

  /** A mark came back from Twilio. Returns false for unknown or stale (pre-clear) names. */
  echoed(name: string, streamTs: number): boolean {
    const p = this.pending.get(name);
    if (!p) return false;
    this.pending.delete(name);
    p.item.playedMs = Math.max(p.item.playedMs, p.endMs);
    p.item.anchorTs = streamTs;
    p.item.echoed = true;
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

  /** Audio sent but not yet confirmed played. */
  get unplayed(): boolean {
    return this.pending.size > 0;
  }

  get pendingMarks(): number {
    return this.pending.size;
  }

  /**
   * The caller spoke over the assistant: work out how much of each item was heard, then forget
   * everything (the bridge sends `clear`, so every pending mark will echo as discarded).
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
        heard = Math.min(item.sentMs, item.playedMs + Math.max(0, streamTs - item.anchorTs));
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

  /** Forget all items without truncating (e.g. the response finished and was fully heard). */
  reset(): void {
    this.items = [];
    this.pending.clear();
  }
}
