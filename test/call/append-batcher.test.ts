/** Caller audio in appends of N frames: bytes in order, nothing lost or doubled, flushed on demand. */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { AppendBatcher } from '../../src/call/append-batcher.js';

const frame = (fill: number, bytes = 160): string => Buffer.alloc(bytes, fill).toString('base64');
const audioOf = (ev: string): Buffer => Buffer.from((JSON.parse(ev) as { audio: string }).audio, 'base64');

function sink(): { sent: string[]; send(s: string): void } {
  const sent: string[] = [];
  return { sent, send: (s) => void sent.push(s) };
}

describe('AppendBatcher', () => {
  it('N = 1 sends each frame as it comes, its base64 untouched', () => {
    const out = sink();
    const b = new AppendBatcher(1);
    b.push(frame(1), out, 0);
    expect(out.sent).toEqual([`{"type":"input_audio_buffer.append","audio":"${frame(1)}"}`]);
  });

  it('N = 2 sends one append per two frames, the decoded bytes in order (base64 re-encoded, no inner padding)', () => {
    const out = sink();
    const b = new AppendBatcher(2);
    b.push(frame(1), out, 0);
    expect(out.sent).toHaveLength(0);
    b.push(frame(2), out, 0);
    expect(out.sent).toHaveLength(1);
    const audio = audioOf(out.sent[0]!);
    expect(audio.equals(Buffer.concat([Buffer.alloc(160, 1), Buffer.alloc(160, 2)]))).toBe(true);
    expect((JSON.parse(out.sent[0]!) as { audio: string }).audio).not.toMatch(/=[^=]/);
    b.push(frame(3), out, 0);
    b.push(frame(4), out, 0);
    b.push(frame(5), out, 0);
    expect(out.sent.map((e) => [...new Set(audioOf(e))])).toEqual([[1, 2], [3, 4]]);
    b.flush(out); // the fifth frame was held
    expect(out.sent.map((e) => [...new Set(audioOf(e))])).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('flush sends what is held at once (and nothing when empty); clear forgets it', () => {
    const out = sink();
    const b = new AppendBatcher(3);
    b.flush(out);
    expect(out.sent).toHaveLength(0);
    b.push(frame(7), out, 0);
    b.flush(out);
    expect(audioOf(out.sent[0]!).equals(Buffer.alloc(160, 7))).toBe(true);
    b.push(frame(8), out, 0);
    b.clear();
    b.flush(out);
    expect(out.sent).toHaveLength(1);
  });

  it('an oversized frame flushes what is held, then goes alone, order kept', () => {
    const out = sink();
    const b = new AppendBatcher(2);
    b.push(frame(1), out, 0);
    b.push(frame(2, 2000), out, 0);
    expect(out.sent.map((e) => audioOf(e).length)).toEqual([160, 2000]);
    expect(audioOf(out.sent[1]!)[0]).toBe(2);
  });

  it('a held buffer pins its own 640 bytes, not an 8 KB slab of the shared Buffer pool', () => {
    // Buffer.allocUnsafe(640) is a slice of Node's 8 KB pool: as long as the call lives, the whole
    // slab does, whatever else (per-frame decodes) was carved from it. Between two calls' set-ups
    // the pool turns over, so each call would pin a slab of its own (~8 KB of arrayBuffers a call).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const kept: AppendBatcher[] = [];
    gc();
    gc();
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 200; i++) {
      kept.push(new AppendBatcher(2));
      // The traffic between two call set-ups: short-lived pooled buffers.
      for (let j = 0; j < 20; j++) Buffer.from(frame(j, 300), 'base64');
    }
    gc();
    gc();
    const perCall = (process.memoryUsage().arrayBuffers - before) / kept.length;
    expect(kept).toHaveLength(200);
    expect(perCall).toBeGreaterThanOrEqual(640);
    expect(perCall).toBeLessThan(1024);
  });
});
