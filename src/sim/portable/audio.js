// @ts-check
/**
 * μ-law audio for the simulated caller and model: G.711 tables, tone frames, frame energy, and the
 * "spoken text" marker that lets a simulated model read what a simulated caller said.
 * Plain JS with no Node or k6 imports: src/sim, the Node load driver and k6 (loadtest/lib) all load
 * this file, and the in-cluster k6 Job mounts this folder beside the scripts (deploy/README.md).
 */

/** 20 ms of 8 kHz μ-law. */
export const FRAME_BYTES = 160;
export const FRAME_MS = 20;
/** μ-law for linear 0. */
export const MULAW_SILENCE = 0xff;

const BIAS = 0x84;
const CLIP = 32635;

/** @param {number} sample 16-bit linear PCM @returns {number} μ-law byte */
export function linearToMulaw(sample) {
  let s = Math.max(-CLIP, Math.min(CLIP, Math.round(sample)));
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** Decode table: μ-law byte -> 16-bit linear. */
export const MULAW_TO_LINEAR = (() => {
  const t = new Int16Array(256);
  for (let i = 0; i < 256; i++) {
    const u = ~i & 0xff;
    const sign = u & 0x80;
    const exponent = (u >> 4) & 0x07;
    const mantissa = u & 0x0f;
    let sample = ((mantissa << 3) + BIAS) << exponent;
    sample -= BIAS;
    t[i] = sign ? -sample : sample;
  }
  return t;
})();

/**
 * Mean absolute amplitude of a μ-law frame (0 for digital silence, ~8000 for a loud tone).
 * @param {Uint8Array} frame
 */
export function frameEnergy(frame) {
  let sum = 0;
  for (let i = 0; i < frame.length; i++) {
    const v = MULAW_TO_LINEAR[/** @type {number} */ (frame[i])] ?? 0;
    sum += v < 0 ? -v : v;
  }
  return frame.length === 0 ? 0 : sum / frame.length;
}

/** Energy above which a frame counts as speech (simulated VAD). A tone at amplitude 6000 is ~3800. */
export const SPEECH_ENERGY_THRESHOLD = 500;

/** @param {number} bytes @returns {Uint8Array} */
export function silence(bytes = FRAME_BYTES) {
  return new Uint8Array(bytes).fill(MULAW_SILENCE);
}

/**
 * A sine tone as μ-law, continuing phase from `startSample` so consecutive frames join smoothly.
 * @param {number} bytes @param {number} hz @param {number} startSample @param {number} amplitude
 */
export function tone(bytes, hz, startSample = 0, amplitude = 6000) {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) {
    out[i] = linearToMulaw(amplitude * Math.sin((2 * Math.PI * hz * (startSample + i)) / 8000));
  }
  return out;
}

// --- spoken-text marker ------------------------------------------------------------------------
// A simulated caller "says" a sentence by sending tone frames whose first bytes carry the text:
// MAGIC(4) | index(1) | count(1) | length(1) | up to TEXT_PER_FRAME bytes of UTF-8. The tone fills
// the rest, so energy-based VAD still hears speech and real μ-law still flows through the relay
// untouched. Real callers never produce the magic, so a simulated model hears them as unintelligible.

const MAGIC = [0x53, 0x42, 0x54, 0x31]; // "SBT1"
const HEADER = MAGIC.length + 3;
export const TEXT_PER_FRAME = 96;

/** @param {string} text @returns {Uint8Array} */
function utf8(text) {
  if (typeof TextEncoder !== 'undefined') return new TextEncoder().encode(text);
  // k6 has no TextEncoder: fall back to ASCII (simulated scripts are ASCII).
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0x7f;
  return out;
}

/** @param {Uint8Array} bytes @returns {string} */
function fromUtf8(bytes) {
  if (typeof TextDecoder !== 'undefined') return new TextDecoder().decode(bytes);
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(/** @type {number} */ (bytes[i]));
  return s;
}

/**
 * Speech frames for `text`: at least `minFrames` frames (so the VAD has something to hear), each
 * 160 bytes of tone, the first ones carrying the text.
 * @param {string} text @param {{ minFrames?: number, hz?: number }} [opts]
 * @returns {Uint8Array[]}
 */
export function speechFrames(text, opts = {}) {
  const data = utf8(text);
  const count = Math.max(1, Math.ceil(data.length / TEXT_PER_FRAME));
  if (count > 255) throw new Error('text too long for the speech marker');
  const frames = Math.max(count, opts.minFrames ?? 25);
  const hz = opts.hz ?? 300;
  /** @type {Uint8Array[]} */
  const out = [];
  for (let f = 0; f < frames; f++) {
    const frame = tone(FRAME_BYTES, hz, f * FRAME_BYTES);
    if (f < count) {
      const chunk = data.subarray(f * TEXT_PER_FRAME, (f + 1) * TEXT_PER_FRAME);
      frame.set(MAGIC, 0);
      frame[4] = f;
      frame[5] = count;
      frame[6] = chunk.length;
      frame.set(chunk, HEADER);
    }
    out.push(frame);
  }
  return out;
}

/**
 * Reads the text marker of one frame, if it has one.
 * @param {Uint8Array} frame
 * @returns {{ index: number, count: number, text: Uint8Array } | undefined}
 */
export function readSpeechMarker(frame) {
  if (frame.length < HEADER) return undefined;
  for (let i = 0; i < MAGIC.length; i++) if (frame[i] !== MAGIC[i]) return undefined;
  const index = /** @type {number} */ (frame[4]);
  const count = /** @type {number} */ (frame[5]);
  const len = Math.min(/** @type {number} */ (frame[6]), frame.length - HEADER);
  return { index, count, text: frame.subarray(HEADER, HEADER + len) };
}

/** Collects marker chunks of one utterance back into its text. */
export class SpeechTextCollector {
  constructor() {
    /** @type {Uint8Array[]} */
    this.parts = [];
    this.count = 0;
  }
  /** @param {Uint8Array} frame */
  push(frame) {
    const m = readSpeechMarker(frame);
    if (!m) return;
    this.count = m.count;
    this.parts[m.index] = m.text.slice();
  }
  /** @returns {string | undefined} the text once every chunk arrived, else undefined */
  text() {
    if (this.count === 0) return undefined;
    let len = 0;
    for (let i = 0; i < this.count; i++) {
      const p = this.parts[i];
      if (!p) return undefined;
      len += p.length;
    }
    const all = new Uint8Array(len);
    let o = 0;
    for (let i = 0; i < this.count; i++) {
      const p = /** @type {Uint8Array} */ (this.parts[i]);
      all.set(p, o);
      o += p.length;
    }
    return fromUtf8(all);
  }
  reset() {
    this.parts = [];
    this.count = 0;
  }
}
