import { describe, expect, it } from 'vitest';
import { base64MulawMs, PlaybackTracker } from '../../src/call/playback.js';

const b64 = (bytes: number) => Buffer.alloc(bytes, 0xff).toString('base64');

describe('base64MulawMs', () => {
  it('turns base64 μ-law length into milliseconds without decoding', () => {
    expect(base64MulawMs(b64(160))).toBe(20);
    expect(base64MulawMs(b64(800))).toBe(100);
    expect(base64MulawMs(b64(161))).toBeCloseTo(161 / 8);
    expect(base64MulawMs(b64(162))).toBeCloseTo(162 / 8);
    expect(base64MulawMs('')).toBe(0);
  });
});

describe('PlaybackTracker', () => {
  it('counts audio played only when marks echo', () => {
    const p = new PlaybackTracker();
    const m1 = p.sent('item_a', 0, 100, 1000)!;
    const m2 = p.sent('item_a', 0, 100, 1000)!;
    expect(p.unplayed).toBe(true);
    expect(p.echoed(m1, 1100)).toBe(true);
    expect(p.unplayed).toBe(true);
    expect(p.echoed(m2, 1200)).toBe(true);
    expect(p.unplayed).toBe(false);
    expect(p.echoed('nonsense', 1200)).toBe(false);
  });

  it('truncates the playing item at played + stream time since the last echo, clamped to sent', () => {
    const p = new PlaybackTracker();
    const m1 = p.sent('item_a', 0, 100, 1000)!;
    p.sent('item_a', 0, 100, 1000);
    p.sent('item_a', 0, 100, 1000);
    p.echoed(m1, 1100);
    // 40 ms of stream time after the first 100 ms chunk finished playing.
    expect(p.interrupt(1140)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 140, sentMs: 300 }]);
    expect(p.unplayed).toBe(false);
    expect(p.sent('item_b', 0, 100, 1200)).toMatch(/^item_b:100:g1:m\d+$/); // marks after the clear are a new generation
  });

  it('never truncates past what was sent', () => {
    const p = new PlaybackTracker();
    p.sent('item_a', 0, 100, 0);
    expect(p.interrupt(10_000)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 100, sentMs: 100 }]);
  });

  it('uses the first send as the anchor before any echo', () => {
    const p = new PlaybackTracker();
    p.sent('item_a', 0, 300, 5000);
    expect(p.interrupt(5120)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 120, sentMs: 300 }]);
  });

  it('gives queued items 0 and skips fully heard ones', () => {
    const p = new PlaybackTracker();
    const a = p.sent('item_a', 0, 100, 0)!;
    p.sent('item_b', 0, 100, 0);
    p.sent('item_c', 0, 100, 0);
    p.echoed(a, 100); // item_a fully heard; item_b starts playing at stream time 100
    expect(p.interrupt(130)).toEqual([
      { itemId: 'item_b', contentIndex: 0, audioEndMs: 30, sentMs: 100 },
      { itemId: 'item_c', contentIndex: 0, audioEndMs: 0, sentMs: 100 },
    ]);
  });

  it('ignores marks from before a clear (older generation)', () => {
    const p = new PlaybackTracker();
    const old = p.sent('item_a', 0, 100, 0)!;
    p.interrupt(10);
    expect(p.echoed(old, 20)).toBe(false);
    const fresh = p.sent('item_b', 0, 100, 30)!;
    expect(fresh).toContain(':g1:');
    expect(p.echoed(fresh, 130)).toBe(true);
  });

  it('returns nothing to truncate when everything was heard and the item is done', () => {
    const p = new PlaybackTracker();
    const m = p.sent('item_a', 0, 100, 0)!;
    p.echoed(m, 100);
    p.closeItems(100);
    expect(p.interrupt(150)).toEqual([]);
  });

  it('keeps an item played in full while the model may still add to it, and truncates it at what was sent', () => {
    const p = new PlaybackTracker();
    const m = p.sent('item_a', 0, 600, 0)!;
    p.echoed(m, 600);
    expect(p.interrupt(700)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 600, sentMs: 600 }]);
  });

  it('a pause mid-item: played time survives the dry buffer and the next burst plays from when it was sent', () => {
    const p = new PlaybackTracker();
    const a = p.sent('item_a', 0, 600, 0)!;
    p.echoed(a, 600); // buffer dry from 600 to 900
    p.sent('item_a', 0, 600, 900);
    expect(p.interrupt(1150)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 850, sentMs: 1200 }]);
  });

  it('items of an earlier model session are never named in a truncation, but still count as playing', () => {
    const p = new PlaybackTracker();
    p.sent('old_item', 0, 500, 0);
    p.newSession();
    p.sent('new_item', 0, 100, 100);
    expect(p.unplayed).toBe(true);
    // old_item was still playing at 200: new_item, queued behind it, was not heard at all.
    expect(p.interrupt(200)).toEqual([{ itemId: 'new_item', contentIndex: 0, audioEndMs: 0, sentMs: 100 }]);
  });

  it('a new item closes the one before; a closed item fully played is forgotten', () => {
    const p = new PlaybackTracker();
    const a = p.sent('item_a', 0, 100, 0)!;
    p.sent('item_b', 0, 100, 0);
    p.echoed(a, 100);
    expect(p.interrupt(150)).toEqual([{ itemId: 'item_b', contentIndex: 0, audioEndMs: 50, sentMs: 100 }]);
  });
});

describe('PlaybackTracker with thinned marks (one per 100 ms of audio)', () => {
  it('marks every 100 ms of an item, or each delta longer than that; the tail is marked on demand', () => {
    const p = new PlaybackTracker(100);
    const names = [20, 20, 20, 20, 20, 20, 20].map(() => p.sent('item_a', 0, 20, 0));
    expect(names.map((n) => n !== undefined)).toEqual([false, false, false, false, true, false, false]);
    expect(names[4]).toMatch(/^item_a:100:g0:m1$/);
    expect(p.sent('item_a', 0, 240, 0)).toMatch(/^item_a:380:g0:m2$/); // a long delta gets its own mark
    expect(p.sent('item_a', 0, 30, 0)).toBeUndefined();
    expect(p.tailMark('item_a', 0)).toBeUndefined(); // more of the same item may follow
    expect(p.tailMark('item_b', 0)).toMatch(/^item_a:410:g0:m3$/);
    expect(p.tailMark('item_b', 0)).toBeUndefined(); // nothing unmarked any more
    // Three marks await their echo, each accepted once.
    for (const n of [names[4], 'item_a:380:g0:m2', 'item_a:410:g0:m3']) expect(p.echoed(n!, 500)).toBe(true);
    expect(p.echoed('item_a:410:g0:m3', 500)).toBe(false);
  });

  it('an unmarked tail is audio not yet known played', () => {
    const p = new PlaybackTracker(100);
    const m = p.sent('item_a', 0, 100, 0)!;
    p.sent('item_a', 0, 40, 0);
    expect(p.echoed(m, 100)).toBe(true);
    expect(p.echoed(m, 100)).toBe(false); // no mark pending any more
    expect(p.unplayed).toBe(true);
    const tail = p.tailMark()!;
    expect(p.echoed(tail, 140)).toBe(true);
    expect(p.unplayed).toBe(false);
  });

  it('a barge-in between marks truncates at the last echo plus stream time since it', () => {
    const p = new PlaybackTracker(100);
    // 1 s of audio in 20 ms deltas, sent at once (the model runs ahead of playback).
    const marks = Array.from({ length: 50 }, () => p.sent('item_a', 0, 20, 1000)).filter((n) => n !== undefined);
    expect(marks).toHaveLength(10);
    p.echoed(marks[0]!, 1100);
    expect(p.interrupt(1180)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 180, sentMs: 1000 }]);
  });

  it('a pause mid-item after an unmarked tail: the next burst plays from when it was sent, not from the last echo', () => {
    const p = new PlaybackTracker(100);
    // 660 ms in 20 ms deltas at stream time 0: marks at 100 … 600, a 60 ms tail unmarked.
    const marks = Array.from({ length: 33 }, () => p.sent('item_a', 0, 20, 0)).filter((n) => n !== undefined);
    expect(marks).toHaveLength(6);
    for (const [i, m] of marks.entries()) p.echoed(m, (i + 1) * 100);
    // The buffer ran dry at 660; the model speaks again at 900.
    for (let i = 0; i < 20; i++) p.sent('item_a', 0, 20, 900);
    // 250 ms into the second burst the caller has heard 660 + 250.
    expect(p.interrupt(1150)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 910, sentMs: 1060 }]);
  });

  it('an unmarked item queued behind another is never guessed played by its own send time', () => {
    const p = new PlaybackTracker(100);
    const a = p.sent('item_a', 0, 1000, 0)!; // plays from 0 to 1000
    expect(p.tailMark('item_b', 0)).toBeUndefined(); // item_a is marked to its end
    p.sent('item_b', 0, 40, 0); // queued behind item_a, unmarked
    p.sent('item_b', 0, 40, 500);
    p.echoed(a, 1000); // item_b starts playing only now
    expect(p.interrupt(1030)).toEqual([{ itemId: 'item_b', contentIndex: 0, audioEndMs: 30, sentMs: 80 }]);
  });

  it('a clock guess that the buffer ran dry gives way to a later echo behind it', () => {
    const p = new PlaybackTracker(100);
    const m = p.sent('item_a', 0, 100, 0)!;
    p.sent('item_a', 0, 60, 0); // unmarked tail
    // By the clock all 160 ms played at 200; the echo of the first 100 ms is late (playback lags the clock).
    p.sent('item_a', 0, 100, 200);
    p.echoed(m, 230);
    // Played 100 at 230: at 280 the caller has heard 150, not 160 + 80.
    expect(p.interrupt(280)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 150, sentMs: 260 }]);
  });

  it('queuedMs: what Twilio holds ahead of playout, by marks and the stream clock; continues() names the last item', () => {
    const p = new PlaybackTracker(100);
    expect(p.queuedMs(0)).toBe(0);
    const a = p.sent('item_a', 0, 100, 0)!;
    p.sent('item_b', 0, 60, 0); // queued behind item_a
    expect(p.continues('item_b', 0)).toBe(true);
    expect(p.continues('item_a', 0)).toBe(false);
    expect(p.queuedMs(40)).toBe(60 + 60); // 60 ms of item_a left, all of item_b
    p.echoed(a, 100); // item_b starts playing only now
    expect(p.queuedMs(130)).toBe(30);
    expect(p.queuedMs(500)).toBe(0);
    p.interrupt(500);
    expect(p.continues('item_b', 0)).toBe(false);
  });
});
