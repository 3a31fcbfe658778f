/**
 * The bridge's per-frame path alone, with no sockets: a caller media frame to its append, a model
 * audio delta to its media + mark, and a mark echo; and 20 ms deltas with TWILIO_COALESCE_MS off and
 * at 60 (the stream clock stands still here, so Twilio's buffer is always ahead: after the first
 * 100 ms every delta is held and every third sends the joined 60 ms). Doubles do nothing but
 * count, so the figures are the bridge's own cost per frame. Run: npx tsx bench/bridge-frame.bench.ts
 */
import { CallBridge, type BridgeDeps, type TwilioSocket } from '../src/call/index.js';
import { systemClock } from '../src/clock.js';
import type { RealtimeSocket } from '../src/model/index.js';
import { MemoryCallStore } from '../src/store/index.js';
import { silentLogger } from '../src/telemetry/logger.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../src/tenants/index.js';
import { BuiltinToolRunner } from '../src/tools/index.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});
const STREAM = 'MZ00000000000000000000000000000001';
const CALL = 'CA00000000000000000000000000000001';

let sink = 0;
let lastMark = '';
const twilio: TwilioSocket = {
  send(text: string) {
    sink += text.length;
    if (text.charCodeAt(10) === 109 /* m of "mark" */) lastMark = text;
    return 1;
  },
  bufferedAmount: () => 0,
  cork: (fn) => fn(),
  end: () => {},
};
let onMessage: ((d: Buffer) => void) | undefined;
const makeModel = (): RealtimeSocket => ({
  bufferedAmount: 0,
  isOpen: true,
  droppedSends: 0,
  send(text: string) {
    sink += text.length;
  },
  onMessage(cb: (d: Buffer) => void) {
    onMessage = cb;
  },
  onClose() {},
  close() {},
});

const deps = (coalesceMs: number, appendFrames = 1): BridgeDeps => ({
  clock: systemClock,
  store: new MemoryCallStore(() => Date.now()),
  tools: new BuiltinToolRunner(),
  metrics: createMetrics({ defaultMetrics: false }),
  log: silentLogger(),
  pod: 'bench',
  authorise: () => Promise.resolve({ ok: true, tenant }),
  model: { provider: 'sim', shape: 'ga', connect: () => Promise.resolve(makeModel()) },
  limits: {
    twilioMaxBackpressureBytes: 1 << 30,
    modelMaxBufferedBytes: 1 << 30,
    twilioMaxMessageBytes: 64 * 1024,
    callerAudioRingFrames: 250,
    maxCallMs: 3_600_000,
    modelConnectTimeoutMs: 5000,
    frameMetrics: true,
    windDownMs: 15_000,
    twilioCoalesceMs: coalesceMs,
    modelAppendFrames: appendFrames,
  },
});

/** A live bridge with a response in progress, and the model socket's message handler. */
async function liveBridge(
  coalesceMs: number,
  appendFrames = 1,
): Promise<{ bridge: CallBridge; toBridge: (d: Buffer) => void }> {
  const bridge = new CallBridge(twilio, deps(coalesceMs, appendFrames), undefined, () => {});
  bridge.onTwilioMessage(
    Buffer.from(
      JSON.stringify({
        event: 'start',
        sequenceNumber: '1',
        streamSid: STREAM,
        start: {
          accountSid: tenant.twilio.accountSid,
          streamSid: STREAM,
          callSid: CALL,
          tracks: ['inbound'],
          customParameters: {},
          mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        },
      }),
    ),
    false,
  );
  await new Promise((r) => setImmediate(r));
  onMessage!(
    Buffer.from(
      JSON.stringify({
        type: 'session.updated',
        session: {
          type: 'realtime',
          audio: { input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } },
        },
      }),
    ),
  );
  if (bridge.state.kind !== 'live') throw new Error(`bridge not live: ${bridge.state.kind}`);
  onMessage!(
    Buffer.from(
      JSON.stringify({ type: 'response.created', response: { id: 'resp_1', status: 'in_progress' } }),
    ),
  );
  return { bridge, toBridge: onMessage! };
}
const { bridge, toBridge } = await liveBridge(0);
const off20 = await liveBridge(0);
const on20 = await liveBridge(60);
const append2 = await liveBridge(0, 2);

const payload = Buffer.alloc(160, 0xff).toString('base64');
const media = Buffer.from(
  `{"event":"media","sequenceNumber":"2","streamSid":"${STREAM}","media":{"track":"inbound","chunk":"2","timestamp":"20","payload":"${payload}"}}`,
);
const delta = Buffer.from(
  `{"type":"response.output_audio.delta","event_id":"ev","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"${Buffer.alloc(800, 0x10).toString('base64')}"}`,
);

const delta20 = Buffer.from(
  `{"type":"response.output_audio.delta","event_id":"ev","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"${Buffer.alloc(160, 0x10).toString('base64')}"}`,
);

function time(fn: () => void, iterations: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - t0) / iterations;
}

const cases: [string, () => void][] = [
  ['caller media -> append', () => bridge.onTwilioMessage(media, false)],
  ['caller media, MODEL_APPEND_FRAMES=2 (default)', () => append2.bridge.onTwilioMessage(media, false)],
  [
    'model delta -> media + mark, mark echo',
    () => {
      toBridge(delta);
      const name = /"name":"([^"]+)"/.exec(lastMark)![1]!;
      bridge.onTwilioMessage(
        Buffer.from(
          `{"event":"mark","sequenceNumber":"3","streamSid":"${STREAM}","mark":{"name":"${name}"}}`,
        ),
        false,
      );
    },
  ],
  ['model delta -> media + mark (no echo)', () => toBridge(delta)],
  ['20 ms delta, coalescing off', () => off20.toBridge(delta20)],
  ['20 ms delta, TWILIO_COALESCE_MS=60', () => on20.toBridge(delta20)],
];

// Shared machines: interleave rounds and keep each case's best.
const ROUNDS = 7;
const N = 20_000;
const best = cases.map(() => Infinity);
for (let r = 0; r < ROUNDS; r++) {
  cases.forEach(([, fn], i) => {
    best[i] = Math.min(best[i]!, time(fn, N));
  });
}
cases.forEach(([name], i) => console.log(`${name.padEnd(46)} ${best[i]!.toFixed(0).padStart(6)} ns/op`));
if (sink < 0) console.log(sink);
