/** The caller-audio ring used while the model cannot take audio: newest frames kept, oldest dropped. */
import { describe, expect, it } from 'vitest';
import { AudioRing } from '../../src/call/audio-ring.js';

const drained = (r: AudioRing): string[] => {
  const out: string[] = [];
  r.drain((f) => out.push(f));
  return out;
};

describe('AudioRing', () => {
  it('keeps the newest frames and reports each overflow', () => {
    const r = new AudioRing(3);
    expect(r.push('a')).toBe(false);
    expect(r.push('b')).toBe(false);
    expect(r.push('c')).toBe(false);
    expect(r.push('d')).toBe(true);
    expect(r.push('e')).toBe(true);
    expect(drained(r)).toEqual(['c', 'd', 'e']);
    expect(drained(r)).toEqual([]); // drained: empty
  });

  it('keeps order across the wrap after a partial fill and a drain', () => {
    const r = new AudioRing(3);
    r.push('a');
    r.push('b');
    expect(drained(r)).toEqual(['a', 'b']);
    for (const f of ['c', 'd', 'e']) expect(r.push(f)).toBe(false);
    expect(r.push('f')).toBe(true);
    expect(drained(r)).toEqual(['d', 'e', 'f']);
  });

  it('clear() empties it: nothing drains, and it fills again from scratch', () => {
    const r = new AudioRing(2);
    r.push('a');
    r.push('b');
    r.push('c');
    r.clear();
    expect(drained(r)).toEqual([]);
    expect(r.push('x')).toBe(false);
    expect(r.push('y')).toBe(false);
    expect(drained(r)).toEqual(['x', 'y']);
  });
});
