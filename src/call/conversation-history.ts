/**
 * The conversation as the caller lived it, kept to replay into a new model session after a
 * reconnect. An assistant answer the caller interrupted is kept only as far as it was heard: the
 * realtime API itself drops the unheard transcript when an item is truncated, and a new session
 * must not believe the caller heard more than they did.
 */

export interface HistoryEntry {
  role: 'caller' | 'assistant';
  text: string;
}

interface Entry extends HistoryEntry {
  /** The assistant item this text came from (for a later truncation). */
  itemId?: string | undefined;
}

/** What was heard of a truncated item: `heardMs` of `totalMs` audio. */
interface Heard {
  heardMs: number;
  totalMs: number;
}

/** Appended to an assistant line the caller talked over, in the record and in a replay. */
export const INTERRUPTED = ' [interrupted by the caller]';

/**
 * The words of `text` in proportion to the audio heard, cut at a word boundary; the realtime API
 * gives no word timings, so speech is taken as evenly paced. '' when nothing was heard.
 */
export function heardText(text: string, heardMs: number, totalMs: number): string {
  if (totalMs <= 0 || heardMs >= totalMs) return text;
  if (heardMs <= 0) return '';
  const n = Math.round((text.length * heardMs) / totalMs);
  if (n >= text.length) return text;
  // Keep a word only when all of it was heard.
  const cut = text[n] === ' ' ? n : text.lastIndexOf(' ', n);
  return cut <= 0 ? '' : text.slice(0, cut).trimEnd();
}

export class ConversationHistory {
  private readonly entries: Entry[] = [];
  /** Items of the current session truncated before their transcript arrived. */
  private readonly truncated = new Map<string, Heard>();

  constructor(private readonly maxEntries: number) {}

  /** What to replay, oldest first. */
  get all(): readonly HistoryEntry[] {
    return this.entries;
  }

  get lastRole(): HistoryEntry['role'] | undefined {
    return this.entries.at(-1)?.role;
  }

  caller(text: string): void {
    this.push({ role: 'caller', text });
  }

  /** An assistant transcript; `interrupted` when its response was cut off while generating. */
  assistant(text: string, itemId: string, interrupted: boolean): void {
    const heard = this.truncated.get(itemId);
    if (heard) {
      this.truncated.delete(itemId);
      const t = heardText(text, heard.heardMs, heard.totalMs);
      if (t !== '') this.push({ role: 'assistant', text: t + INTERRUPTED, itemId });
      return;
    }
    this.push({ role: 'assistant', text: interrupted ? text + INTERRUPTED : text, itemId });
  }

  /** The caller heard `heardMs` of the `totalMs` sent of an assistant item, then spoke over it. */
  truncate(itemId: string, heardMs: number, totalMs: number): void {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i]!;
      if (e.itemId !== itemId) continue;
      if (heardMs >= totalMs) return;
      const t = heardText(e.text, heardMs, totalMs);
      if (t === '') this.entries.splice(i, 1);
      else e.text = t + INTERRUPTED;
      return;
    }
    // The transcript comes later (the answer was still being generated).
    if (heardMs < totalMs && this.truncated.size < this.maxEntries) this.truncated.set(itemId, { heardMs, totalMs });
  }

  /** A new model session: truncations pending for the old session's items no longer apply. */
  newSession(): void {
    this.truncated.clear();
  }

  private push(e: Entry): void {
    this.entries.push(e);
    if (this.entries.length > this.maxEntries) this.entries.shift();
  }
}
