/**
 * A seeded PRNG and input mutators for the abuse suites, so every fuzz run is reproducible: the seed
 * is printed in the test name and a failure replays with the same inputs. Tests decide what to send.
 */

/** mulberry32: a small, fast 32-bit PRNG; good enough to pick mutations, not for secrets. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rand: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rand() * xs.length)] as T;
}

export function int(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

/** One random byte-level mutation of `input`: flip, delete, insert, truncate, duplicate a slice. */
export function mutate(rand: () => number, input: Buffer): Buffer {
  const b = Buffer.from(input);
  const at = int(rand, 0, Math.max(0, b.length - 1));
  switch (int(rand, 0, 5)) {
    case 0:
      b[at] = int(rand, 0, 255);
      return b;
    case 1:
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
    case 2:
      return Buffer.concat([b.subarray(0, at), Buffer.from([pick(rand, [0x22, 0x5c, 0x7b, 0x7d, 0x2c, 0x3a, 0x00, 0xff, 0xc3])]), b.subarray(at)]);
    case 3:
      return b.subarray(0, at);
    case 4: {
      const len = int(rand, 1, 40);
      return Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]);
    }
    default: {
      // Replace a quoted value with something of another type.
      const s = b.toString('latin1');
      const m = [...s.matchAll(/"([a-zA-Z]+)":"([^"]*)"/g)];
      const hit = m.length > 0 ? pick(rand, m) : undefined;
      if (!hit || hit.index === undefined) return b;
      const repl = pick(rand, ['null', '-1', '1e309', 'true', '[]', '{}', '"\\u0000"', '99999999999999999999999']);
      return Buffer.from(s.slice(0, hit.index) + `"${hit[1]}":${repl}` + s.slice(hit.index + hit[0].length), 'latin1');
    }
  }
}
