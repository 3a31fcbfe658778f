/**
 * Twilio Media Streams wire codec: inbound frames (Buffer) -> typed events, and outbound envelopes.
 * Pure: no sockets, no state beyond one encoder per stream; the bridge decides what to do with events.
 */
import { z } from 'zod';

/** An inbound Twilio Media Streams event, reduced to what the relay uses (docs/wire-formats.md §2). */
export type TwilioInbound =
  | { event: 'connected' }
  | {
      event: 'start';
      streamSid: string;
      callSid: string;
      accountSid: string;
      tracks: string[];
      customParameters: Readonly<Record<string, string>>;
    }
  /** `payload` is Twilio's base64 μ-law, untouched; `timestampMs` is ms since stream start (0 is valid). */
  | { event: 'media'; payload: string; timestampMs: number }
  | { event: 'mark'; name: string }
  | { event: 'dtmf'; digit: string }
  | { event: 'stop' };

export type InvalidReason = 'malformed_json' | 'invalid_shape' | 'unknown_event' | 'too_large' | 'binary' | 'invalid_utf8';

export type ParseResult = { ok: true; msg: TwilioInbound } | { ok: false; reason: InvalidReason; detail: string };

/**
 * Parse one Twilio Media Streams frame.
 *
 * `data` is a Buffer VIEW over uWS's ArrayBuffer (valid only during the callback): everything in the
 * result is a fresh string, so the result may outlive the callback. Media frames and mark echoes take
 * scanning fast paths that never call JSON.parse; anything a scanner is not certain about goes through
 * JSON.parse and zod, so both paths give the same answer. Never throws.
 *
 * @param maxBytes frames longer than this are rejected as `too_large` before any parsing.
 * @param isBinary uWS's flag: Twilio only sends text frames, so a binary frame is `binary`.
 */
export function parseTwilioMessage(data: Buffer, maxBytes: number, isBinary = false): ParseResult {
  if (isBinary) return { ok: false, reason: 'binary', detail: `binary frame of ${data.length} bytes` };
  if (data.length > maxBytes) {
    return { ok: false, reason: 'too_large', detail: `${data.length} bytes exceeds the ${maxBytes}-byte limit` };
  }
  return scanMediaFrame(data) ?? scanMarkFrame(data) ?? parseTwilioJson(data);
}

// ---------------------------------------------------------------------------------------------
// Fast path for `media`.
//
// Twilio sends ~50 of these a second per call; JSON.parse + zod costs ~2 µs each on this machine.
// Measured here (bench/codec.bench.ts): a JS loop over Buffer bytes costs ~0.8 ns/byte, while the
// regex engine, String#indexOf of a key and a generic tokenizer all cost more, so the scanner is one
// pass over the bytes against the two layouts Twilio serialises, with no searching:
//
//   {"event":"media","sequenceNumber":"D","streamSid":"S","media":{"track":"inbound","chunk":"D","timestamp":"D","payload":"B"}}
//   {"event":"media","sequenceNumber":"D","media":{"track":"inbound","chunk":"D","timestamp":"D","payload":"B"},"streamSid":"S"}
//
// D = digits, S = bytes without quote, backslash or control characters, B = padded base64. Every
// frame that matches is valid JSON that JSON.parse reads the same way; anything else (another field
// order, whitespace, escapes, bad base64, another track ...) returns undefined and goes through the
// JSON path, which is the reference.

const lit = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const HEAD = lit('{"event":"media","sequenceNumber":"');
const SID_THEN = lit(',"streamSid":"');
const MEDIA_THEN = lit(',"media":{"track":"inbound","chunk":"');
const TIMESTAMP_THEN = lit('","timestamp":"');
const PAYLOAD_THEN = lit('","payload":"');

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const RBRACE = 0x7d;

/** 1 for the 64 bytes of the standard base64 alphabet (Twilio's), 0 otherwise. */
const B64 = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') B64[c.charCodeAt(0)] = 1;

/** Longest timestamp the scanner converts itself; 15 digits stay below 2^53. */
const MAX_TS_DIGITS = 15;

/** Index just past `want` if it sits at `i`, else -1. */
function literal(b: Buffer, i: number, want: Uint8Array): number {
  if (i < 0 || i + want.length > b.length) return -1;
  for (let k = 0; k < want.length; k++) if (b[i + k] !== want[k]) return -1;
  return i + want.length;
}

/** Index of the quote closing a non-empty run of digits starting at `i`, else -1. */
function digits(b: Buffer, i: number): number {
  if (i < 0) return -1;
  const start = i;
  let c = b[i];
  while (c !== undefined && c >= 0x30 && c <= 0x39) c = b[++i];
  return c === QUOTE && i > start ? i : -1;
}

/** Index just past `"streamSid":"S"` content's closing quote, for S starting at `i`, else -1. */
function plainString(b: Buffer, i: number): number {
  if (i < 0) return -1;
  const n = b.length;
  for (; i < n; i++) {
    const c = b[i]!;
    if (c === QUOTE) return i + 1;
    // Escapes would make the bytes differ from the value; control characters are invalid JSON.
    if (c === BACKSLASH || c < 0x20) return -1;
  }
  return -1;
}

/**
 * Reads `"track":"inbound",…,"payload":"B"}` from after `"media":{`; writes the payload bounds and
 * timestamp into `out` and returns the index past the closing brace, else -1.
 */
function mediaObject(b: Buffer, i: number, out: { ps: number; pe: number; ts: number }): number {
  i = digits(b, i); // chunk
  i = literal(b, i, TIMESTAMP_THEN);
  const tsEnd = digits(b, i);
  if (tsEnd < 0 || tsEnd - i > MAX_TS_DIGITS) return -1;
  let ts = 0;
  for (let k = i; k < tsEnd; k++) ts = ts * 10 + (b[k]! - 0x30);
  i = literal(b, tsEnd, PAYLOAD_THEN);
  if (i < 0) return -1;
  const ps = i;
  const n = b.length;
  while (i < n && B64[b[i]!] === 1) i++;
  if (b[i] === 0x3d) i++;
  if (b[i] === 0x3d) i++;
  if (i === ps || (i - ps) % 4 !== 0 || b[i] !== QUOTE || b[i + 1] !== RBRACE) return -1;
  out.ps = ps;
  out.pe = i;
  out.ts = ts;
  return i + 2;
}

/**
 * The media fast path alone: a result when the frame is one of Twilio's two media layouts, else
 * undefined. Exported for tests and bench/codec.bench.ts; callers use {@link parseTwilioMessage}.
 */
export function scanMediaFrame(b: Buffer): ParseResult | undefined {
  let i = digits(b, literal(b, 0, HEAD)); // sequenceNumber
  if (i < 0) return undefined;
  i++;
  const out = { ps: 0, pe: 0, ts: 0 };
  const sid = literal(b, i, SID_THEN);
  if (sid >= 0) {
    i = mediaObject(b, literal(b, plainString(b, sid), MEDIA_THEN), out);
    if (i < 0 || i + 1 !== b.length || b[i] !== RBRACE) return undefined;
  } else {
    i = mediaObject(b, literal(b, i, MEDIA_THEN), out);
    i = plainString(b, literal(b, i, SID_THEN));
    if (i < 0 || i + 1 !== b.length || b[i] !== RBRACE) return undefined;
  }
  return { ok: true, msg: { event: 'media', payload: b.toString('latin1', out.ps, out.pe), timestampMs: out.ts } };
}

// ---------------------------------------------------------------------------------------------
// Fast path for `mark` echoes.
//
// Twilio echoes every mark the relay sends (a tenth of the relay's JS time went to JSON.parse + zod
// of these in a profile at 120 calls). Same method as media: one pass over the two layouts,
//
//   {"event":"mark","sequenceNumber":"D","streamSid":"S","mark":{"name":"N"}}
//   {"event":"mark","sequenceNumber":"D","mark":{"name":"N"},"streamSid":"S"}
//
// with N printable ASCII without quote or backslash (the relay's own names are `item:ms:gN:mN`). Any
// other name (escapes, non-ASCII), field, order or spacing goes through the JSON path.

const MARK_HEAD = lit('{"event":"mark","sequenceNumber":"');
const MARK_THEN = lit(',"mark":{"name":"');

/** Index of the quote closing a mark name (printable ASCII, no escapes) starting at `i`, else -1. */
function asciiName(b: Buffer, i: number): number {
  if (i < 0) return -1;
  const n = b.length;
  for (; i < n; i++) {
    const c = b[i]!;
    if (c === QUOTE) return i;
    if (c === BACKSLASH || c < 0x20 || c > 0x7e) return -1;
  }
  return -1;
}

/**
 * The mark fast path alone: a result when the frame is one of Twilio's two mark layouts, else
 * undefined. Exported for tests and bench/codec.bench.ts; callers use {@link parseTwilioMessage}.
 */
export function scanMarkFrame(b: Buffer): ParseResult | undefined {
  let i = digits(b, literal(b, 0, MARK_HEAD)); // sequenceNumber
  if (i < 0) return undefined;
  i++;
  let ns: number;
  let ne: number;
  const sid = literal(b, i, SID_THEN);
  if (sid >= 0) {
    ns = literal(b, plainString(b, sid), MARK_THEN);
    ne = asciiName(b, ns);
    // `"}}` and nothing after it.
    if (ne < 0 || ne + 3 !== b.length || b[ne + 1] !== RBRACE || b[ne + 2] !== RBRACE) return undefined;
  } else {
    ns = literal(b, i, MARK_THEN);
    ne = asciiName(b, ns);
    if (ne < 0 || b[ne + 1] !== RBRACE) return undefined;
    i = plainString(b, literal(b, ne + 2, SID_THEN));
    if (i < 0 || i + 1 !== b.length || b[i] !== RBRACE) return undefined;
  }
  return { ok: true, msg: { event: 'mark', name: b.toString('latin1', ns, ne) } };
}

// ---------------------------------------------------------------------------------------------
// The JSON path: every event kind, and the reference for media frames the scanner declined.

const DETAIL_MAX = 200;

function clip(s: string): string {
  return s.length > DETAIL_MAX ? `${s.slice(0, DETAIL_MAX)}…` : s;
}

/** Twilio sends numbers as strings ("5"); a real 0 is valid (docs/wire-formats.md §8, the `if (!startTs)` bug). */
const NumericString = z.union([
  z.string().regex(/^\d{1,15}$/, { message: 'must be a string of digits' }).transform(Number),
  z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
]);

const Base64Payload = z
  .string()
  .min(1, { message: 'must not be empty' })
  .refine(isBase64, { message: 'must be base64 (A-Z a-z 0-9 + /, padded to a multiple of 4)' });

const Sid = z.string().min(1);

const ConnectedMsg = z.object({ event: z.literal('connected') });

const StartMsg = z
  .object({
    event: z.literal('start'),
    streamSid: Sid.optional(),
    start: z.object({
      streamSid: Sid.optional(),
      callSid: Sid,
      accountSid: Sid,
      tracks: z.array(z.string()).default(['inbound']),
      customParameters: z.record(z.string(), z.string()).default({}),
    }),
  })
  .refine((m) => m.start.streamSid !== undefined || m.streamSid !== undefined, {
    message: 'streamSid is missing',
    path: ['start', 'streamSid'],
  })
  .refine((m) => m.start.streamSid === undefined || m.streamSid === undefined || m.start.streamSid === m.streamSid, {
    message: 'start.streamSid and streamSid differ',
    path: ['start', 'streamSid'],
  });

const MediaMsg = z.object({
  event: z.literal('media'),
  media: z.object({
    // Only the caller's track exists on a bidirectional <Connect><Stream>.
    track: z.literal('inbound').optional(),
    timestamp: NumericString,
    payload: Base64Payload,
  }),
});

const MarkMsg = z.object({ event: z.literal('mark'), mark: z.object({ name: z.string() }) });

const DtmfMsg = z.object({
  event: z.literal('dtmf'),
  dtmf: z.object({ digit: z.string().regex(/^[0-9*#A-D]$/, { message: 'must be one of 0-9 * # A-D' }) }),
});

const StopMsg = z.object({ event: z.literal('stop') });

const BASE64_BODY = /^[A-Za-z0-9+/]+={0,2}$/;

/** Standard base64 as Twilio sends it: non-empty, padded to a multiple of 4 (the scanner's rule too). */
function isBase64(s: string): boolean {
  return s.length % 4 === 0 && BASE64_BODY.test(s);
}

function shapeError(event: string, error: z.ZodError): ParseResult {
  const issue = error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.join('.') : '(root)';
  return { ok: false, reason: 'invalid_shape', detail: clip(`${event}: ${where}: ${issue?.message ?? 'invalid'}`) };
}

/**
 * The JSON.parse + zod path for any frame (exported for tests and bench/codec.bench.ts, which hold
 * the fast path to it). Does not check size or binary-ness: that is {@link parseTwilioMessage}'s job.
 */
export function parseTwilioJson(data: Buffer): ParseResult {
  let raw: unknown;
  try {
    raw = JSON.parse(data.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: 'malformed_json', detail: clip(err instanceof Error ? err.message : 'unparseable') };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, reason: 'invalid_shape', detail: 'frame is not a JSON object' };
  }
  const event = (raw as { event?: unknown }).event;
  if (typeof event !== 'string') {
    return { ok: false, reason: 'invalid_shape', detail: '"event" is missing or not a string' };
  }
  switch (event) {
    case 'media': {
      const r = MediaMsg.safeParse(raw);
      if (!r.success) return shapeError(event, r.error);
      return { ok: true, msg: { event: 'media', payload: r.data.media.payload, timestampMs: r.data.media.timestamp } };
    }
    case 'connected': {
      const r = ConnectedMsg.safeParse(raw);
      return r.success ? { ok: true, msg: { event: 'connected' } } : shapeError(event, r.error);
    }
    case 'start': {
      const r = StartMsg.safeParse(raw);
      if (!r.success) return shapeError(event, r.error);
      const s = r.data.start;
      // Copied from the parsed JSON (zod drops a "__proto__" key) with define semantics, so such a
      // parameter stays a plain own key and never becomes the object's prototype.
      const rawParams = (raw as { start: { customParameters?: Record<string, string> } }).start.customParameters ?? {};
      const entries = Object.entries(rawParams);
      if (!entries.every(([, v]) => typeof v === 'string')) {
        return { ok: false, reason: 'invalid_shape', detail: 'start: start.customParameters: values must be strings' };
      }
      const customParameters = Object.freeze(Object.fromEntries(entries));
      return {
        ok: true,
        msg: {
          event: 'start',
          // One of the two is present (refined above).
          streamSid: s.streamSid ?? r.data.streamSid ?? '',
          callSid: s.callSid,
          accountSid: s.accountSid,
          tracks: s.tracks,
          customParameters,
        },
      };
    }
    case 'mark': {
      const r = MarkMsg.safeParse(raw);
      return r.success ? { ok: true, msg: { event: 'mark', name: r.data.mark.name } } : shapeError(event, r.error);
    }
    case 'dtmf': {
      const r = DtmfMsg.safeParse(raw);
      return r.success ? { ok: true, msg: { event: 'dtmf', digit: r.data.dtmf.digit } } : shapeError(event, r.error);
    }
    case 'stop': {
      const r = StopMsg.safeParse(raw);
      return r.success ? { ok: true, msg: { event: 'stop' } } : shapeError(event, r.error);
    }
    default:
      return { ok: false, reason: 'unknown_event', detail: clip(`unknown event ${JSON.stringify(event)}`) };
  }
}

// ---------------------------------------------------------------------------------------------
// Outbound.

/** Outbound Twilio messages for one stream; each returns a complete JSON text frame. */
export interface TwilioEncoder {
  /** `payloadB64` must be base64 (it is spliced in unescaped; base64 needs no JSON escaping). */
  media(payloadB64: string): string;
  /** Any name: escaped with JSON.stringify (marks are rare). */
  mark(name: string): string;
  clear(): string;
}

/**
 * The encoder for one stream: the `streamSid` is serialised once here, like pino's child bindings,
 * and each frame is a splice of constant parts, never a JSON.stringify (bench/codec.bench.ts).
 */
export function twilioEncoder(streamSid: string): TwilioEncoder {
  const sid = JSON.stringify(streamSid);
  const mediaHead = `{"event":"media","streamSid":${sid},"media":{"payload":"`;
  const markHead = `{"event":"mark","streamSid":${sid},"mark":{"name":`;
  const clear = `{"event":"clear","streamSid":${sid}}`;
  return {
    media: (payloadB64) => mediaHead + payloadB64 + '"}}',
    mark: (name) => markHead + JSON.stringify(name) + '}}',
    clear: () => clear,
  };
}
