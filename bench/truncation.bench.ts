/**
 * Truncation accuracy with thinned marks and coalesced media: barge-ins at many offsets into the
 * greeting, one call at a time (so each model session belongs to one known call), for each mark
 * interval and each TWILIO_COALESCE_MS side by side. Real
 * uWS relay, the simulated model speaking realistic-paced deltas of `--delta-ms`, the simulated
 * caller acting as Twilio (real-time playback, mark echoes, clear). The error of a cut is the
 * relay's `audio_end_ms` minus what the caller had played when the `clear` arrived; the caller
 * measures a little late (the clear's delivery, and up to one 20 ms frame of the relay's stream
 * clock), so a small negative bias is expected and is the same for every interval. Beside it, media
 * messages per second of audio and the caller's `dryMs` (silence mid-reply waiting for audio).
 *
 * Run: npx tsx bench/truncation.bench.ts [--calls 12] [--delta-ms 20] [--gap-ms 10] [--intervals 0,100]
 *   [--coalesce 0,40] [--bursts 660/900]
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { startRelay, type Relay } from '../src/server/index.js';
import { freePort } from '../test/helpers/redis-process.js';
import { placeCall, randomSid } from '../src/sim/sim-caller.js';
import { startSimModel, type SimModel } from '../src/sim/sim-model.js';
import { silentLogger } from '../src/telemetry/index.js';
import { BENCH_ACCOUNT_SID, BENCH_AUTH_TOKEN, BENCH_TOKEN_VAR } from './bench-tenant.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BENCH_NUMBER = '+15005550006';

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '12' },
    'delta-ms': { type: 'string', default: '20' },
    intervals: { type: 'string', default: '0,100' },
    coalesce: { type: 'string', default: '0' },
    'gap-ms': { type: 'string' },
    bursts: { type: 'string' },
  },
});
const calls = Math.max(1, Math.min(200, Number(values.calls)));
const deltaMs = Number(values['delta-ms']);
const intervals = values.intervals.split(',').map(Number);
const coalesce = values.coalesce.split(',').map(Number);
const gapMs = values['gap-ms'] !== undefined ? Number(values['gap-ms']) : undefined;
const bursts = values.bursts?.split('/').map(Number);

interface Side {
  interval: number;
  coalesceMs: number;
  media: number;
  dryMs: number;
  relay: Relay;
  sim: SimModel;
  errors: number[];
  marks: number;
  audioMs: number;
}

async function side(interval: number, coalesceMs: number): Promise<Side> {
  const sim = await startSimModel({
    mode: 'realistic',
    deltaMs,
    ...(gapMs !== undefined ? { gapMs } : {}),
    ...(bursts ? { bursts: { audioMs: bursts[0]!, pauseMs: bursts[1]! } } : {}),
  });
  const port = await freePort();
  const relay = await startRelay(
    loadConfig({
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      STREAM_TOKEN_SECRET: 'truncation-bench-stream-secret-0123456789',
      LOG_LEVEL: 'silent',
      MODEL_PROVIDER: 'openai',
      OPENAI_API_KEY: 'sk-sim',
      OPENAI_REALTIME_URL: sim.url,
      TENANTS_FILE: join(ROOT, 'bench', 'tenants.yaml'),
      [BENCH_TOKEN_VAR]: BENCH_AUTH_TOKEN,
      TWILIO_MARK_INTERVAL_MS: String(interval),
      TWILIO_COALESCE_MS: String(coalesceMs),
    }),
    { log: silentLogger() },
  );
  return { interval, coalesceMs, relay, sim, errors: [], marks: 0, audioMs: 0, media: 0, dryMs: 0 };
}

const sides: Side[] = [];
for (const i of intervals) for (const c of coalesce) sides.push(await side(i, c));
try {
  // Offsets spread over the greeting (2.1 s at the realistic pace), the same for every side.
  for (let c = 0; c < calls; c++) {
    const bargeInAfterMs = 300 + Math.round(((c * 0.618034) % 1) * 1500);
    for (const s of sides) {
      const before = s.sim.sessions.length;
      const report = await placeCall({
        baseUrl: s.relay.url,
        to: BENCH_NUMBER,
        accountSid: BENCH_ACCOUNT_SID,
        authToken: BENCH_AUTH_TOKEN,
        callSid: randomSid('CA'),
        script: { turns: [{ say: 'Sorry, quick question', bargeInAfterMs }], maxCallMs: 30_000, hangupAfterMs: 300, quietMs: 600 },
      });
      const session = s.sim.sessions[before];
      const cut = session?.received.find((e) => e.type === 'conversation.item.truncate') as { audio_end_ms?: number } | undefined;
      const heard = report.turns[0]?.playedMsAtClear;
      if (report.errors.length > 0) console.log(`interval ${s.interval}: call errors: ${report.errors.join('; ')}`);
      if (cut?.audio_end_ms !== undefined && heard !== null && heard !== undefined) s.errors.push(cut.audio_end_ms - heard);
      else console.log(`interval ${s.interval}, barge-in at ${bargeInAfterMs} ms: no truncate/clear pair (truncate ${cut?.audio_end_ms}, heard ${heard})`);
      s.marks += report.marksSent;
      s.media += report.framesReceived;
      s.dryMs += report.dryMs;
      s.audioMs += report.audioMsReceived;
    }
  }
} finally {
  for (const s of sides) {
    await s.relay.close();
    await s.sim.close();
  }
}

const q = (xs: number[], p: number): number => {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor(p * v.length))] ?? NaN;
};
console.log(
  `node ${process.version}; ${calls} barge-ins per side, deltas of ${deltaMs} ms${gapMs !== undefined ? ` every ${gapMs} ms` : ''}` +
    `${bursts ? `, bursts ${bursts[0]} ms / pause ${bursts[1]} ms` : ''}`,
);
console.log('interval ms  coalesce ms  cuts  error min / p50 / max (ms)  |error| max  marks per s of audio  media per s of audio  dry ms per call');
for (const s of sides) {
  const abs = s.errors.map(Math.abs);
  console.log(
    `${String(s.interval).padStart(11)}  ${String(s.coalesceMs).padStart(11)}  ${String(s.errors.length).padStart(4)}  ${q(s.errors, 0).toFixed(0).padStart(5)} / ${q(s.errors, 0.5).toFixed(0).padStart(4)} / ${q(s.errors, 1).toFixed(0).padStart(4)}` +
      `            ${Math.max(...abs).toFixed(0).padStart(4)}  ${((s.marks / s.audioMs) * 1000).toFixed(1).padStart(8)}` +
      `  ${((s.media / s.audioMs) * 1000).toFixed(1).padStart(20)}  ${(s.dryMs / calls).toFixed(1).padStart(15)}`,
  );
}
