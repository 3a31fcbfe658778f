/** Time as a dependency, so state machines can be driven by a manual clock in tests. */
export interface Clock {
  /** Wall-clock milliseconds (Date.now()). */
  now(): number;
  /** Monotonic milliseconds with sub-ms precision (performance.now()). */
  mono(): number;
  /** Run `fn` after `ms`; returns a cancel function. Timers never keep the process alive. */
  after(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  mono: () => performance.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};
