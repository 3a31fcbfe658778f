/**
 * A fixed-size ring of base64 audio frames for the moments the model cannot take audio (connecting,
 * reconnecting). Drop policy: the oldest frame goes first, and the caller counts the drop.
 */
export class AudioRing {
  private readonly buf: (string | undefined)[];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.buf = new Array<string | undefined>(capacity);
  }

  /** Returns true when an old frame had to be dropped to make room. */
  push(frame: string): boolean {
    const idx = (this.head + this.count) % this.capacity;
    if (this.count < this.capacity) {
      this.buf[idx] = frame;
      this.count++;
      return false;
    }
    this.buf[this.head] = frame;
    this.head = (this.head + 1) % this.capacity;
    return true;
  }

  /** Hand every frame, oldest first, to `fn` and empty the ring. */
  drain(fn: (frame: string) => void): void {
    while (this.count > 0) {
      const f = this.buf[this.head]!;
      this.buf[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.count--;
      fn(f);
    }
  }

  clear(): void {
    this.buf.fill(undefined);
    this.head = 0;
    this.count = 0;
  }
}
