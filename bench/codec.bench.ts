/**
 * Micro-benchmark of the Twilio media codec, old beside new: JSON.parse + zod vs the scanning fast
 * paths for inbound media and mark echoes, JSON.stringify vs the encoder splice for outbound.
 * Run: npx tsx bench/codec.bench.ts
 */
import { parseTwilioJson, parseTwilioMessage, scanMarkFrame, scanMediaFrame, twilioEncoder } from '../src/twilio/media-stream-codec.js';

const ITER = Number(process.argv[2] ?? 200_000);
const ROUNDS = 9;
const MAX_BYTES = 64 * 1024;

const streamSid = 'MZ18ad3ab5a668481ce02b83e7395059f0';
// 160 bytes of μ-law (20 ms) as Twilio sends it: 216 base64 chars.
const payload = Buffer.from(Array.from({ length: 160 }, (_, i) => (i * 37) & 0xff)).toString('base64');
const inbound = Buffer.from(
  JSON.stringify({ event: 'media', sequenceNumber: '4', streamSid, media: { track: 'inbound', chunk: '2', timestamp: '5', payload } }),
);
const PAYLOAD_KEY = Buffer.from('"payload":"');

/**
 * Each case runs ITER times per round; rounds are interleaved across cases and the best round is
 * kept, so a noisy neighbour on a shared 2-core box inflates every case alike or none.
 */
function compare(title: string, cases: Record<string, () => number>): Record<string, number> {
  let sink = 0;
  const best: Record<string, number> = {};
  for (const [name, fn] of Object.entries(cases)) {
    for (let i = 0; i < ITER; i++) sink += fn();
    best[name] = Infinity;
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(cases)) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < ITER; i++) sink += fn();
      best[name] = Math.min(best[name] ?? Infinity, Number(process.hrtime.bigint() - t0) / ITER);
    }
  }
  console.log(title);
  for (const [name, ns] of Object.entries(best)) console.log(`  ${name.padEnd(58)} ${ns.toFixed(0).padStart(6)} ns/op`);
  if (sink === 0.5) console.log('(sink)');
  return best;
}

console.log(`node ${process.version}, inbound frame ${inbound.length} bytes, ${ITER} ops x ${ROUNDS} interleaved rounds, best round\n`);

const inb = compare('inbound media (Buffer -> { payload, timestampMs })', {
  'old: JSON.parse only': () => (JSON.parse(inbound.toString('utf8')) as { media: { payload: string } }).media.payload.length,
  'old: JSON.parse + zod (parseTwilioJson)': () => (parseTwilioJson(inbound).ok ? 1 : 0),
  'new: parseTwilioMessage (validated fast path)': () => (parseTwilioMessage(inbound, MAX_BYTES).ok ? 1 : 0),
  'floor: indexOf + latin1 slice, no validation': () => {
    const s = inbound.indexOf(PAYLOAD_KEY) + PAYLOAD_KEY.length;
    return inbound.toString('latin1', s, inbound.indexOf(0x22, s)).length;
  },
});
const ok = scanMediaFrame(inbound);
if (!ok?.ok) throw new Error('fast path did not take the benchmark frame');
const fast = inb['new: parseTwilioMessage (validated fast path)'] ?? NaN;
console.log(
  `  fast path: ${((inb['old: JSON.parse + zod (parseTwilioJson)'] ?? NaN) / fast).toFixed(1)}x faster than JSON.parse + zod, ` +
    `${((inb['old: JSON.parse only'] ?? NaN) / fast).toFixed(1)}x faster than JSON.parse alone\n`,
);

// A mark echo as Twilio sends it, named the way the relay names its marks.
const markEcho = Buffer.from(
  JSON.stringify({ event: 'mark', sequenceNumber: '1234', streamSid, mark: { name: 'item_CkYx1v2AbCdEfGhIjKlMn:18400:g3:m917' } }),
);
const mk = compare('inbound mark echo (Buffer -> { name })', {
  'old: JSON.parse + zod (parseTwilioJson)': () => (parseTwilioJson(markEcho).ok ? 1 : 0),
  'new: parseTwilioMessage (media scan declines, mark fast path)': () => (parseTwilioMessage(markEcho, MAX_BYTES).ok ? 1 : 0),
  'new: scanMarkFrame alone': () => (scanMarkFrame(markEcho)?.ok ? 1 : 0),
});
if (!scanMarkFrame(markEcho)?.ok) throw new Error('fast path did not take the benchmark mark');
console.log(
  `  mark fast path: ${((mk['old: JSON.parse + zod (parseTwilioJson)'] ?? NaN) / (mk['new: parseTwilioMessage (media scan declines, mark fast path)'] ?? NaN)).toFixed(1)}x faster than JSON.parse + zod\n`,
);

const enc = twilioEncoder(streamSid);
// A splice is a lazy cons string; Buffer.byteLength flattens it as uWS's send does, so count it too.
const out = compare('outbound media (payload -> JSON text frame)', {
  'old: JSON.stringify': () => JSON.stringify({ event: 'media', streamSid, media: { payload } }).length,
  'new: encoder splice': () => enc.media(payload).length,
  'old: JSON.stringify + Buffer.byteLength': () => Buffer.byteLength(JSON.stringify({ event: 'media', streamSid, media: { payload } })),
  'new: encoder splice + Buffer.byteLength': () => Buffer.byteLength(enc.media(payload)),
});
console.log(
  `  splice: ${((out['old: JSON.stringify'] ?? NaN) / (out['new: encoder splice'] ?? NaN)).toFixed(0)}x alone, ` +
    `${((out['old: JSON.stringify + Buffer.byteLength'] ?? NaN) / (out['new: encoder splice + Buffer.byteLength'] ?? NaN)).toFixed(1)}x flattened`,
);
