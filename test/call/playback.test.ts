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
    const m1 = p.sent('item_a', 0, 100, 1000);
    const m2 = p.sent('item_a', 0, 100, 1000);
    expect(p.unplayed).toBe(true);
    expect(p.echoed(m1, 1100)).toBe(true);
    expect(p.unplayed).toBe(true);
    expect(p.echoed(m2, 1200)).toBe(true);
    expect(p.unplayed).toBe(false);
    expect(p.echoed('nonsense', 1200)).toBe(false);
  });

  it('truncates the playing item at played + stream time since the last echo, clamped to sent', () => {
    const p = new PlaybackTracker();
    const m1 = p.sent('item_a', 0, 100, 1000);
    p.sent('item_a', 0, 100, 1000);
    p.sent('item_a', 0, 100, 1000);
    p.echoed(m1, 1100);
    // 40 ms of stream time after the first 100 ms chunk finished playing.
    expect(p.interrupt(1140)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 140, sentMs: 300 }]);
    expect(p.generation).toBe(1);
    expect(p.unplayed).toBe(false);
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
    const a = p.sent('item_a', 0, 100, 0);
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
    const old = p.sent('item_a', 0, 100, 0);
    p.interrupt(10);
    expect(p.echoed(old, 20)).toBe(false);
    const fresh = p.sent('item_b', 0, 100, 30);
    expect(fresh).toContain(':g1:');
    expect(p.echoed(fresh, 130)).toBe(true);
  });

  it('returns nothing to truncate when everything was heard and the item is done', () => {
    const p = new PlaybackTracker();
    const m = p.sent('item_a', 0, 100, 0);
    p.echoed(m, 100);
    p.closeItems(100);
    expect(p.interrupt(150)).toEqual([]);
  });

  it('keeps an item played in full while the model may still add to it, and truncates it at what was sent', () => {
    const p = new PlaybackTracker();
    const m = p.sent('item_a', 0, 600, 0);
    p.echoed(m, 600);
    expect(p.interrupt(700)).toEqual([{ itemId: 'item_a', contentIndex: 0, audioEndMs: 600, sentMs: 600 }]);
  });

  it('a pause mid-item: played time survives the dry buffer and the next burst plays from when it was sent', () => {
    const p = new PlaybackTracker();
    const a = p.sent('item_a', 0, 600, 0);
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
    const a = p.sent('item_a', 0, 100, 0);
    p.sent('item_b', 0, 100, 0);
    p.echoed(a, 100);
    expect(p.interrupt(150)).toEqual([{ itemId: 'item_b', contentIndex: 0, audioEndMs: 50, sentMs: 100 }]);
  });
});
