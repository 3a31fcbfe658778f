/**
 * G.711 μ-law decoding for the relay's own audio checks (the stall rule's speech test). The
 * simulators and k6 keep a plain-JS copy in src/sim/portable/audio.js, which k6 can run and the
 * production relay must not load; test/call/mulaw.test.ts keeps the two identical.
 */

const BIAS = 0x84;

/** μ-law byte -> 16-bit linear PCM. */
export const MULAW_TO_LINEAR: Readonly<Int16Array> = (() => {
  const t = new Int16Array(256);
  for (let i = 0; i < 256; i++) {
    const u = ~i & 0xff;
    const magnitude = (((u & 0x0f) << 3) + BIAS) << ((u >> 4) & 0x07);
    t[i] = u & 0x80 ? BIAS - magnitude : magnitude - BIAS;
  }
  return t;
})();

/** Mean |linear| above which a frame counts as speech (the simulated model's VAD uses the same). */
export const SPEECH_ENERGY_THRESHOLD = 500;
