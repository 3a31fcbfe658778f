/**
 * Parsing one realtime server event, fast: frequent events the relay never reads skip parsing, audio
 * deltas take the fast path below, everything else the slow path of server-events.ts
 * (bench/model-event.bench.ts has the numbers).
 *
 * Deltas are most of the model's messages and can be tens of KB. The fast path walks the flat
 * object the server sends with a few string searches: type first, ASCII only, no backslash
 * anywhere (so every string ends at the next quote), no whitespace between tokens, scalar values
 * only. Anything else (nesting, escapes, spaces, odd numbers) falls back to JSON.parse + zod, so the
 * fast path returns what the slow path would, duplicate keys included (last wins). The one
 * difference: a raw control character inside the delta string, which JSON forbids, is not looked
 * for (it would cost a scan of the payload and no server sends one).
 *
 * Measured: a native call per Buffer.indexOf, and V8's multi-character String#indexOf, cost more
 * than the search itself; so the Buffer is decoded once (latin1 equals UTF-8 for ASCII and is the
 * cheapest decode) and walked with single-character searches.
 */
import { isAscii } from 'node:buffer';
import { parseModelEventSlow, type ModelEvent } from './server-events.js';

const GA_DELTA_HEAD = '{"type":"response.output_audio.delta"';
const BETA_DELTA_HEAD = '{"type":"response.audio.delta"';
const GA_DELTA_HEAD_B = Buffer.from(GA_DELTA_HEAD, 'latin1');
const BETA_DELTA_HEAD_B = Buffer.from(BETA_DELTA_HEAD, 'latin1');
const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const CLOSE_BRACE = 0x7d;
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

function startsWithBuf(buf: Buffer, head: Buffer): boolean {
  return buf.length > head.length && buf.compare(head, 0, head.length, 0, head.length) === 0;
}

/** A small non-negative JSON integer as JSON.parse reads it, or undefined to let zod judge. */
function intToken(tok: string): number | undefined {
  const len = tok.length;
  if (len === 0 || len > 9 || (len > 1 && tok.charCodeAt(0) === 0x30)) return undefined;
  let n = 0;
  for (let i = 0; i < len; i++) {
    const c = tok.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
    n = n * 10 + (c - 0x30);
  }
  return n;
}

/** `s` is known to start with a delta head of length `pos`. */
function fastDelta(s: string, pos: number): ModelEvent | undefined {
  if (s.indexOf('\\', pos) >= 0) return undefined;
  let responseId: string | undefined;
  let itemId: string | undefined;
  let contentIndex: number | undefined;
  let delta: string | undefined;
  // Each round: at `,` (another member follows) or `}` (done).
  for (let guard = 0; guard < 64; guard++) {
    const c = s.charCodeAt(pos);
    if (c === CLOSE_BRACE) {
      for (let i = pos + 1; i < s.length; i++) {
        const w = s.charCodeAt(i);
        if (w !== 0x20 && w !== 0x0a && w !== 0x0d && w !== 0x09) return undefined;
      }
      if (
        responseId === undefined ||
        itemId === undefined ||
        contentIndex === undefined ||
        delta === undefined
      ) {
        return undefined;
      }
      return { type: 'audio_delta', responseId, itemId, contentIndex, delta };
    }
    if (c !== COMMA || s.charCodeAt(pos + 1) !== QUOTE) return undefined;
    const keyEnd = s.indexOf('"', pos + 2);
    if (keyEnd < 0 || s.charCodeAt(keyEnd + 1) !== COLON) return undefined;
    const key = s.slice(pos + 2, keyEnd);
    const v = keyEnd + 2;
    if (s.charCodeAt(v) === QUOTE) {
      const valEnd = s.indexOf('"', v + 1);
      if (valEnd < 0) return undefined;
      if (key === 'delta') delta = s.slice(v + 1, valEnd);
      else if (key === 'item_id') itemId = s.slice(v + 1, valEnd);
      else if (key === 'response_id') responseId = s.slice(v + 1, valEnd);
      else if (key === 'content_index' || key === 'type') return undefined; // zod or a second type decides
      pos = valEnd + 1;
    } else {
      // A scalar (number, true, false, null) runs to the next `,` or `}`; it is short, so walk it.
      let tokEnd = v;
      const limit = Math.min(s.length, v + 32);
      while (tokEnd < limit && s.charCodeAt(tokEnd) !== COMMA && s.charCodeAt(tokEnd) !== CLOSE_BRACE)
        tokEnd++;
      if (tokEnd === limit) return undefined;
      const tok = s.slice(v, tokEnd);
      if (key === 'content_index') {
        contentIndex = intToken(tok);
        if (contentIndex === undefined) return undefined;
      } else if (key === 'response_id' || key === 'item_id' || key === 'delta' || key === 'type') {
        return undefined;
      } else if (
        tok !== 'true' &&
        tok !== 'false' &&
        tok !== 'null' &&
        intToken(tok) === undefined &&
        !JSON_NUMBER.test(tok)
      ) {
        return undefined;
      }
      pos = tokEnd;
    }
  }
  return undefined;
}

function fastDeltaBuffer(buf: Buffer): ModelEvent | undefined {
  const head = startsWithBuf(buf, GA_DELTA_HEAD_B)
    ? GA_DELTA_HEAD_B.length
    : startsWithBuf(buf, BETA_DELTA_HEAD_B)
      ? BETA_DELTA_HEAD_B.length
      : -1;
  if (head < 0 || !isAscii(buf)) return undefined;
  return fastDelta(buf.toString('latin1'), head);
}

function fastDeltaString(s: string): ModelEvent | undefined {
  const head = s.startsWith(GA_DELTA_HEAD)
    ? GA_DELTA_HEAD.length
    : s.startsWith(BETA_DELTA_HEAD)
      ? BETA_DELTA_HEAD.length
      : -1;
  // A string is already decoded: non-ASCII is harmless here.
  return head < 0 ? undefined : fastDelta(s, head);
}

/**
 * Frequent events the relay never reads, recognised by their opening bytes so they skip JSON.parse:
 * the model sends a transcript delta beside every audio delta (GA and beta names).
 */
const SKIPPED = [
  'response.output_audio_transcript.delta',
  'response.audio_transcript.delta',
  'response.function_call_arguments.delta',
].map((t) => ({ type: t, head: Buffer.from(`{"type":"${t}"`) }));

function skippable(data: Buffer | string): string | undefined {
  for (const s of SKIPPED) {
    if (typeof data === 'string' ? data.startsWith(`{"type":"${s.type}"`) : startsWithBuf(data, s.head))
      return s.type;
  }
  return undefined;
}

/** Parse one server event. Never throws: unknown events are `ignored`, broken ones `invalid`. */
export function parseModelEvent(data: Buffer | string): ModelEvent {
  const fast = typeof data === 'string' ? fastDeltaString(data) : fastDeltaBuffer(data);
  if (fast) return fast;
  const skipped = skippable(data);
  return skipped ? { type: 'ignored', eventType: skipped } : parseModelEventSlow(data);
}
