/**
 * The leak check's child process (run with `node --expose-gc --import tsx`): twice 1,000 sequential short
 * calls and 200 concurrent simulated calls through a real relay, then one JSON line of figures on stdout.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { writeHeapSnapshot } from 'node:v8';
import type { Relay } from '../../src/server/index.js';
import { promSamples } from '../../src/sim/prom-text.js';
import { placeCall } from '../../src/sim/sim-caller.js';
import { demo, mediaFrame, rawStream, startTestRelay, testTenant } from '../helpers/relay.js';

const SEQUENTIAL = Number(process.env['LEAK_SEQUENTIAL'] ?? 1000);
const CONCURRENT = Number(process.env['LEAK_CONCURRENT'] ?? 200);
const WARMUP = 20;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

async function settleHeap(): Promise<number> {
  // Several rounds with turns of the loop between: weak refs and finalizers need a tick to clear.
  for (let i = 0; i < 4; i++) {
    gc!();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  // Immediates come and go with settleHeap's own turns of the loop; handles and timers are the subject.
  for (const r of process.getActiveResourcesInfo()) if (r !== 'Immediate') out[r] = (out[r] ?? 0) + 1;
  return out;
}

function tenantsFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sb-leak-')), 'tenants.json');
  writeFileSync(file, JSON.stringify({ tenants: [{ ...testTenant(), maxConcurrentCalls: 1000 }] }));
  return file;
}

let seq = 0;
function nextSid(): string {
  return 'CA' + (0x10000000 + seq++).toString(16).padStart(32, '0');
}

/** Webhook, stream, start, a few frames, stop; resolves with the close code. */
async function shortCall(relay: Relay): Promise<number> {
  const callSid = nextSid();
  const s = await rawStream(relay, callSid);
  s.start();
  for (let i = 0; i < 3; i++) s.ws.send(mediaFrame(callSid, i + 2));
  s.ws.send(JSON.stringify({ event: 'stop', sequenceNumber: '9', streamSid: 'MZ' + callSid.slice(2), stop: { accountSid: demo.accountSid, callSid } }));
  return (await s.closed).code;
}

async function concurrentCalls(relay: Relay, n: number): Promise<{ connected: number; greeted: number; errors: string[] }> {
  const reports = await Promise.all(
    Array.from({ length: n }, () =>
      placeCall({ baseUrl: relay.url, ...demo, script: { turns: [], hangupAfterMs: 300, maxCallMs: 20_000, replyTimeoutMs: 10_000 } }),
    ),
  );
  return {
    connected: reports.filter((r) => r.stage === 'connected').length,
    greeted: reports.filter((r) => r.greeting !== '').length,
    errors: reports.flatMap((r) => r.errors).slice(0, 5),
  };
}

async function waitIdle(relay: Relay): Promise<void> {
  for (let i = 0; i < 500 && (relay.activeCalls() > 0 || (relay.sim?.stats().openSessions ?? 0) > 0); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function phase(sequential: number, concurrent: number) {
  // Every simulated call comes from 127.0.0.1: the per-address connect limit would refuse a load
  // test, and the demo tenant's 50-call limit would turn most of the concurrent calls away.
  let relay: Relay | undefined = await startTestRelay({ MEDIA_CONNECT_PER_MINUTE: '0', TENANTS_FILE: tenantsFile() });
  const t0 = performance.now();
  const codes = new Map<number, number>();
  for (let i = 0; i < sequential; i++) {
    const c = await shortCall(relay);
    codes.set(c, (codes.get(c) ?? 0) + 1);
  }
  const tSeq = performance.now();
  const conc = await concurrentCalls(relay, concurrent);
  await waitIdle(relay);
  const tConc = performance.now();
  const metricsText = await (await fetch(`${relay.url}/metrics`)).text();
  const active = promSamples(metricsText, 'switchboard_active_calls')[0]?.value ?? NaN;
  const sim = relay.sim!.stats();
  const heapLive = await settleHeap();
  await relay.close();
  relay = undefined;
  return {
    closeCodes: Object.fromEntries(codes),
    concurrent: conc,
    activeCallsMetric: active,
    simOpenSessions: sim.openSessions,
    simTimers: sim.timers,
    heapLive,
    sequentialMs: Math.round(tSeq - t0),
    concurrentMs: Math.round(tConc - tSeq),
  };
}

async function main(): Promise<void> {
  // Warm-up relay: loads modules, compiles code, fills module-level caches (prom-client, zod, the
  // sim's tone cache). What is left after it closes is the baseline.
  await phase(WARMUP, WARMUP);
  const heapBefore = await settleHeap();
  // Diagnosis: LEAK_SNAPSHOT_DIR=/tmp/x writes before/after heap snapshots to diff in DevTools.
  const snapDir = process.env['LEAK_SNAPSHOT_DIR'];

  const resourcesBefore = resources();
  const first = await phase(SEQUENTIAL, CONCURRENT);
  const heapAfterFirst = await settleHeap();
  if (snapDir) writeHeapSnapshot(join(snapDir, 'before.heapsnapshot'));
  // The first run also pays for V8's optimised code and feedback of every path it took (a few MB
  // measured, with no objects of ours in it); a second identical run isolates what calls retain.
  const second = await phase(SEQUENTIAL, CONCURRENT);
  // Sockets the peer closed leave the resource list on a later turn of the loop: bounded wait.
  let resourcesAfter = resources();
  for (let i = 0; i < 100 && JSON.stringify(resourcesAfter) !== JSON.stringify(resourcesBefore); i++) {
    await new Promise((r) => setTimeout(r, 20));
    resourcesAfter = resources();
  }
  const heapAfter = await settleHeap();
  if (snapDir) writeHeapSnapshot(join(snapDir, 'after.heapsnapshot'));
  process.stdout.write(
    JSON.stringify({
      sequential: SEQUENTIAL,
      concurrentCalls: CONCURRENT,
      runs: [first, second],
      heapBefore,
      heapAfterFirst,
      heapAfter,
      heapGrowthFirstRun: heapAfterFirst - heapBefore,
      heapGrowthSecondRun: heapAfter - heapAfterFirst,
      resourcesBefore,
      resourcesAfter,
    }) + '\n',
  );
  // Exit explicitly: a leaked handle must show up in the figures, not as a hung test.
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`leak check failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
