/**
 * One shared drift-corrected 20 ms ticker for every simulated call in the process.
 */
import { FRAME_MS } from './portable/audio.js';

// --- shared ticker ---------------------------------------------------------------------------------
// Real calls' 20 ms frames arrive at unrelated phases. Firing every call on one 20 ms edge would
// send the relay bursts of N frames at once and measure queueing the driver made up, so calls are
// spread over PHASES slots of the frame period; each call still ticks exactly every 20 ms.

type TickFn = (nowMs: number) => void;
const PHASES = 10;
const SLOT_MS = FRAME_MS / PHASES;
const slots: Set<TickFn>[] = Array.from({ length: PHASES }, () => new Set<TickFn>());
let subscriberCount = 0;
let assigned = 0;
let nextSlot = 0;
let nextAt = 0;
let timer: NodeJS.Timeout | undefined;
/** A stalled loop catches up at most this many frame periods at once, then skips ahead. */
const MAX_CATCH_UP = 5;

function runTicker(): void {
  timer = undefined;
  const now = performance.now();
  for (let i = 0; i < MAX_CATCH_UP * PHASES && nextAt <= now; i++) {
    for (const fn of [...slots[nextSlot]!]) fn(now);
    nextSlot = (nextSlot + 1) % PHASES;
    nextAt += SLOT_MS;
  }
  // Absolute schedule: each slot is start + n·2 ms, so setTimeout jitter does not accumulate.
  if (nextAt <= now) nextAt = now + SLOT_MS;
  if (subscriberCount > 0) timer = setTimeout(runTicker, Math.max(0, nextAt - performance.now()));
}

/** Call `fn` every 20 ms (in one of the phase slots) until the returned function is called. */
export function subscribe(fn: TickFn): () => void {
  const slot = slots[assigned++ % PHASES]!;
  slot.add(fn);
  subscriberCount++;
  if (timer === undefined) {
    nextAt = performance.now() + SLOT_MS;
    timer = setTimeout(runTicker, SLOT_MS);
  }
  return () => {
    if (slot.delete(fn)) subscriberCount--;
    if (subscriberCount === 0 && timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
  };
}

