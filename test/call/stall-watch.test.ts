/** The stall rule's speech test reads base64 μ-law in place; it must judge as the decoded bytes do. */
import { describe, expect, it } from 'vitest';
import { frameEnergy, tone } from '../../src/sim/portable/audio.js';
import { base64MulawEnergy, StallWatch } from '../../src/call/stall-watch.js';

describe('base64MulawEnergy', () => {
  it('equals frameEnergy of the first 60 decoded bytes, for silence, tones and every byte value', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    for (const bytes of [new Uint8Array(160).fill(0xff), tone(160, 440, 0), tone(160, 300, 17, 900), all.subarray(0, 160), all.subarray(96)]) {
      const b64 = Buffer.from(bytes).toString('base64');
      expect(base64MulawEnergy(b64)).toBeCloseTo(frameEnergy(bytes.subarray(0, 60)), 6);
    }
    expect(base64MulawEnergy('')).toBe(0);
    expect(base64MulawEnergy('!!!!')).toBe(0);
  });
});

describe('StallWatch', () => {
  const speech = Buffer.from(tone(160, 440, 0)).toString('base64');
  const quiet = Buffer.alloc(160, 0xff).toString('base64');

  function harness(): { w: StallWatch; fire: () => void; stalls: number; turnOpen: boolean } {
    let pending: (() => void) | undefined;
    const h = {
      stalls: 0,
      turnOpen: false,
      w: undefined as unknown as StallWatch,
      fire: () => pending?.(),
    };
    h.w = new StallWatch(
      1000,
      { after: (_ms, fn) => ((pending = fn), () => (pending = undefined)), mono: () => performance.now() },
      () => h.stalls++,
      () => h.turnOpen,
    );
    return h;
  }

  it('fires when the caller keeps talking and the model says nothing', () => {
    const h = harness();
    for (let i = 0; i < 5; i++) h.w.sample(speech, performance.now());
    h.fire();
    expect(h.stalls).toBe(1);
  });

  it('fires when the model owes an event and sends none; an event settles it', () => {
    const h = harness();
    h.w.expectEvent();
    h.fire();
    expect(h.stalls).toBe(1);
    h.w.expectEvent();
    h.w.modelEvent();
    h.fire();
    expect(h.stalls).toBe(1);
  });

  it('does not fire for silence, for a model that spoke, or while the model holds the turn', () => {
    const h = harness();
    for (let i = 0; i < 5; i++) h.w.sample(quiet, performance.now());
    h.fire();
    for (let i = 0; i < 5; i++) h.w.sample(speech, performance.now());
    h.w.modelEvent();
    h.fire();
    h.turnOpen = true;
    for (let i = 0; i < 5; i++) h.w.sample(speech, performance.now());
    h.fire();
    expect(h.stalls).toBe(0);
  });
});
