/** A Clock driven by the test: time moves only when `advance` is called, timers fire in order. */
import type { Clock } from '../../src/clock.js';

export class ManualClock implements Clock {
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private seq = 0;
  constructor(private t = 1_700_000_000_000) {}

  now(): number {
    return this.t;
  }

  mono(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): () => void {
    const id = ++this.seq;
    this.timers.push({ at: this.t + ms, fn, id });
    return () => {
      this.timers = this.timers.filter((x) => x.id !== id);
    };
  }

  /** Move time forward, firing due timers (including ones they schedule) in time order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; guard < 10_000; guard++) {
      const due = this.timers.filter((x) => x.at <= end).sort((x, y) => x.at - y.at || x.id - y.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }

  pending(): number {
    return this.timers.length;
  }
}
