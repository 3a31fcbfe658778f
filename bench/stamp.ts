/**
 * The bench's audio stamp: a sequence number and a monotonic send time hidden in bytes 150-159 of a
 * 160-byte μ-law frame, so latency is measured end to end through a relay that never decodes audio.
 * Where the stamp is written and read (caller ticks, sim model hooks) is the driver's business.
 */

/** First stamped byte: clear of the spoken-text marker (at most 7 + 96 bytes at the frame's start). */
export const STAMP_OFFSET = 150;
export const STAMP_BYTES = 10;
/** The time field wraps every 2^28 µs (~268 s); latencies are far shorter, so differences stay exact. */
const TIME_MOD = 2 ** 28;
const SEQ_MOD = 2 ** 16;
/** Six check bits: tone or silence bytes must not decode as a stamp. */
const MAGIC = 0b110101;

export interface Stamp {
  seq: number;
  /** Send time in µs modulo 2^28. */
  timeUs: number;
}

/**
 * Each byte carries 5 bits in a μ-law code with exponent 0 (0x70-0x7F, 0xF0-0xFF): amplitude at most
 * 120 of 32767, so a stamped silence frame still reads as silence to an energy VAD (threshold 500 mean).
 */
function encodeByte(v: number): number {
  return 0x70 | ((v & 0x10) << 3) | (v & 0x0f);
}

/** Writes the stamp into `frame` at `offset` (default STAMP_OFFSET; 10 bytes must fit). */
export function writeStamp(frame: Uint8Array, seq: number, timeMs: number, offset = STAMP_OFFSET): void {
  const t = Math.round(timeMs * 1000) % TIME_MOD;
  // 50 bits: magic(6) | seq(16) | time(28), most significant first, 5 bits a byte; < 2^53, exact.
  let acc = (MAGIC * SEQ_MOD + (seq % SEQ_MOD)) * TIME_MOD + t;
  for (let i = STAMP_BYTES - 1; i >= 0; i--) {
    frame[offset + i] = encodeByte(acc % 32);
    acc = Math.floor(acc / 32);
  }
}

/** Reads a stamp from `frame`, or undefined when the bytes are not one. */
export function readStamp(frame: Uint8Array): Stamp | undefined {
  if (frame.length < STAMP_OFFSET + STAMP_BYTES) return undefined;
  let acc = 0;
  for (let i = 0; i < STAMP_BYTES; i++) {
    const b = frame[STAMP_OFFSET + i] ?? 0;
    if ((b & 0x70) !== 0x70) return undefined;
    acc = acc * 32 + (((b & 0x80) >> 3) | (b & 0x0f));
  }
  const timeUs = acc % TIME_MOD;
  const hi = Math.floor(acc / TIME_MOD);
  if (Math.floor(hi / SEQ_MOD) !== MAGIC) return undefined;
  return { seq: hi % SEQ_MOD, timeUs };
}

/** Microseconds from a stamp's send time to `nowMs` (same monotonic clock), modulo the wrap. */
export function stampAgeUs(stamp: Stamp, nowMs: number): number {
  const now = Math.round(nowMs * 1000) % TIME_MOD;
  return (now - stamp.timeUs + TIME_MOD) % TIME_MOD;
}

const tail = Buffer.alloc(STAMP_BYTES);

/**
 * Stamps a 160-byte frame carried as base64 without re-encoding all of it: byte 150 starts a
 * 3-byte group, so its base64 starts at character 200 and the 10-byte tail encodes on its own.
 * Other lengths are returned unchanged.
 */
export function stampBase64Frame(payload: string, seq: number, timeMs: number): string {
  if (payload.length !== 216) return payload;
  writeStamp(tail, seq, timeMs, 0);
  return payload.slice(0, 200) + tail.toString('base64');
}
