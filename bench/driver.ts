/**
 * The bench driver: N simulated Twilio callers (placeCall) and one simulated model in this process,
 * stamping every caller frame and model delta and reading the stamps back on the far side, so the
 * latency measured is what a relay adds end to end. Which relay, and its process, are run.ts's.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { placeCall, type CallReport, type CallScript, type CallTurn } from '../src/sim/sim-caller.js';
import { startSimModel, type SimModel } from '../src/sim/sim-model.js';
import { DEMO_NUMBER } from '../src/tenants/tenant.js';
import { BENCH_ACCOUNT_SID, BENCH_AUTH_TOKEN } from './bench-tenant.js';
import { readStamp, stampAgeUs, stampBase64Frame, writeStamp } from './stamp.js';
import { quantiles, Samples, type Quantiles } from './stats.js';

/** One direction's end-to-end figures over the window (latency in ms). */
export interface DirectionResult {
  /** Stamped frames sent during the window. */
  sent: number;
  /** Of those, how many arrived on the far side (by the end of the grace period). */
  received: number;
  latencyMs: Quantiles;
}

export interface DriverResult {
  callsTarget: number;
  /** Calls whose stream was open through the whole window. */
  callsHeld: number;
  callsFailed: number;
  /** First few distinct failure reasons with counts. */
  failures: Array<{ reason: string; count: number }>;
  windowMs: number;
  callerToModel: DirectionResult;
  modelToCaller: DirectionResult;
  /** Barge-ins the callers saw answered with `clear` during the whole run, and marks echoed. */
  clears: number;
  marksEchoed: number;
  /** Media and mark messages the relay sent the callers during the whole run (Twilio's side of the wire). */
  mediaToCallers: number;
  marksToCallers: number;
  driver: { cpuPercent: number; loopLagP99Ms: number; loopLagMaxMs: number; saturated: boolean };
}

export interface Progress {
  phase: 'ramp' | 'settle' | 'window' | 'grace';
  callsUp: number;
  callsFailed: number;
  /** p99 of both directions over the last progress interval, ms. */
  p99Ms: number | null;
}

export interface WindowHooks {
  /** Called when the measurement window opens and closes (run.ts snapshots relay CPU, metrics). */
  windowStart?(): Promise<void>;
  windowEnd?(): Promise<void>;
  /**
   * Called after the grace period, calls still up: run.ts forces a GC in the relay here, so the pause
   * lands on no frame that is measured.
   */
  afterGrace?(): Promise<void>;
  /** Called every `sampleEveryMs` inside the window (relay memory sampling). */
  sample?(): Promise<void>;
  progress?(p: Progress): void;
}

export interface LevelOptions {
  /** The relay's HTTP base (voice webhook); the callers follow its TwiML `<Stream url>`. */
  baseUrl: string;
  calls: number;
  rampPerSec: number;
  windowMs: number;
  /** Time for the last calls to connect and hear their greeting before the window opens. */
  settleMs?: number;
  /** After the window: frames sent in it may still be in flight. */
  graceMs?: number;
  progressEveryMs?: number;
  sampleEveryMs?: number;
  /** Bound on ramp + settle waiting for calls to connect. */
  connectTimeoutMs?: number;
}

const PHRASE = 'Tell me something nice about today';
/** A turn: ~1.5 s of caller speech (realistic phone traffic). */
const SPEECH_MS = 1500;
const BARGE_IN_AFTER_MS = 300;
const LAG_RESOLUTION_MS = 5;

/**
 * A long conversation: `turns` turns of 1.5 s speech, every 10th one interrupting the model's reply
 * (10 % barge-in), starting at a per-call offset so barge-ins spread over time. The caller hangs up
 * when the driver aborts it; maxCallMs only bounds a run that loses its driver.
 */
export function benchScript(callIndex: number, turns: number, maxCallMs: number): CallScript {
  const list: CallTurn[] = [];
  for (let t = 0; t < turns; t++) {
    const turn: CallTurn = { say: PHRASE, speechMs: SPEECH_MS };
    if ((t + callIndex) % 10 === 9 && t > 0) turn.bargeInAfterMs = BARGE_IN_AFTER_MS;
    list.push(turn);
  }
  return { turns: list, maxCallMs, hangupAfterMs: maxCallMs, replyTimeoutMs: 10_000 };
}

class Direction {
  readonly samples = new Samples(1 << 16);
  readonly recent = new Samples(1 << 12);
  sent = 0;
  received = 0;
  seq = 0;

  result(): DirectionResult {
    const q = quantiles(this.samples);
    const ms = (v: number | null): number | null => (v === null ? null : v / 1000);
    return { sent: this.sent, received: this.received, latencyMs: { count: q.count, p50: ms(q.p50), p99: ms(q.p99), p999: ms(q.p999), max: ms(q.max) } };
  }
}

/**
 * The shared state of one level: a window [from, to) in performance.now() ms; frames whose stamped
 * send time falls inside it are counted and timed.
 */
class Meter {
  from = Infinity;
  to = Infinity;
  readonly c2m = new Direction();
  readonly m2c = new Direction();

  inWindow(sendMs: number): boolean {
    return sendMs >= this.from && sendMs < this.to;
  }

  stamp(d: Direction, payload: string): string {
    const now = performance.now();
    if (this.inWindow(now)) d.sent++;
    return stampBase64Frame(payload, d.seq++, now);
  }

  stampBytes(d: Direction, bytes: Uint8Array): void {
    if (bytes.length < 160) return;
    const now = performance.now();
    if (this.inWindow(now)) d.sent++;
    writeStamp(bytes, d.seq++, now);
  }

  read(d: Direction, bytes: Uint8Array): void {
    const s = readStamp(bytes);
    if (!s) return;
    const now = performance.now();
    const ageUs = stampAgeUs(s, now);
    d.recent.add(ageUs);
    if (!this.inWindow(now - ageUs / 1000)) return;
    d.received++;
    d.samples.add(ageUs);
  }
}

/** The simulated model with the bench's hooks; start it before the relay (the relay needs its URL). */
export class BenchDriver {
  private constructor(
    readonly model: SimModel,
    private readonly meter: Meter,
  ) {}

  /**
   * With `tls`, the model serves `wss` (bench/tls.ts) as the real API does; `deltaMs`: audio per
   * delta; `gapMs`: time between deltas (shorter than `deltaMs`: the model runs ahead of playback).
   */
  static async start(tls?: { key: Buffer; cert: Buffer }, deltaMs?: number, gapMs?: number): Promise<BenchDriver> {
    const meter = new Meter();
    const model = await startSimModel({
      mode: 'loadtest',
      host: '127.0.0.1',
      ...(deltaMs !== undefined ? { deltaMs } : {}),
      ...(gapMs !== undefined ? { gapMs } : {}),
      ...(tls ? { tls: { key: tls.key, cert: tls.cert } } : {}),
      hooks: {
        // An append may carry several 160-byte frames (MODEL_APPEND_FRAMES): each has its stamp.
        onCallerAudio: (bytes) => {
          for (let off = 0; off + 160 <= bytes.length; off += 160) meter.read(meter.c2m, bytes.subarray(off, off + 160));
        },
        beforeAudioDelta: (bytes) => meter.stampBytes(meter.m2c, bytes),
      },
    });
    return new BenchDriver(model, meter);
  }

  async close(): Promise<void> {
    await this.model.close();
  }

  /** Ramp up `calls` callers, hold them through the window, measure, hang up. Never throws for call failures. */
  async runLevel(o: LevelOptions, hooks: WindowHooks = {}): Promise<DriverResult> {
    const m = this.meter;
    const settleMs = o.settleMs ?? 3000;
    const graceMs = o.graceMs ?? 1000;
    const progressEvery = o.progressEveryMs ?? 2000;
    const sampleEvery = o.sampleEveryMs ?? 5000;
    const connectTimeoutMs = o.connectTimeoutMs ?? Math.ceil((o.calls / o.rampPerSec) * 1000) + 30_000;
    // Long enough to outlast ramp + settle + window + grace with margin; the driver hangs up first.
    const callMs = Math.ceil((o.calls / o.rampPerSec) * 1000) + settleMs + o.windowMs + graceMs + 60_000;
    const turns = Math.ceil(callMs / 2500);

    type CallTrack = { opened: number; closed: number; report: CallReport | undefined };
    const tracks: CallTrack[] = [];
    const aborts: AbortController[] = [];
    const done: Array<Promise<void>> = [];
    const counts = (): { up: number; failed: number; pending: number } => {
      let up = 0;
      let failed = 0;
      for (const t of tracks) {
        if (t.closed >= 0) failed++;
        else if (t.opened >= 0) up++;
      }
      return { up, failed, pending: o.calls - up - failed };
    };
    let phase: Progress['phase'] = 'ramp';
    const report = (): void => {
      const r = [...sortedRecent(m.c2m), ...sortedRecent(m.m2c)].sort((a, b) => a - b);
      const p99 = r.length > 0 ? (r[Math.min(r.length - 1, Math.ceil(r.length * 0.99) - 1)] ?? 0) / 1000 : null;
      const c = counts();
      hooks.progress?.({ phase, callsUp: c.up, callsFailed: c.failed, p99Ms: p99 });
    };
    const progressTimer = setInterval(report, progressEvery);
    progressTimer.unref();

    try {
      // Ramp: a paced start, `rampPerSec` new calls a second.
      const t0 = performance.now();
      for (let i = 0; i < o.calls; i++) {
        const due = t0 + (i * 1000) / o.rampPerSec;
        const wait = due - performance.now();
        if (wait > 0) await delay(wait);
        const track: CallTrack = { opened: -1, closed: -1, report: undefined };
        tracks.push(track);
        const ac = new AbortController();
        aborts.push(ac);
        done.push(
          placeCall({
            baseUrl: o.baseUrl,
            to: DEMO_NUMBER,
            accountSid: BENCH_ACCOUNT_SID,
            authToken: BENCH_AUTH_TOKEN,
            script: benchScript(i, turns, callMs),
            signal: ac.signal,
            hooks: {
              stampPayload: (payload) => {
                if (track.opened < 0) track.opened = performance.now();
                return m.stamp(m.c2m, payload);
              },
              // A media may join several deltas (TWILIO_COALESCE_MS), each stamped in its first frame.
              onAudio: (bytes) => {
                for (let off = 0; off + 160 <= bytes.length; off += 160) m.read(m.m2c, bytes.subarray(off, off + 160));
              },
            },
          }).then((r) => {
            track.closed = performance.now();
            track.report = r;
          }),
        );
      }
      // Settle: every call connected (or failed), then a little time for greetings to play.
      phase = 'settle';
      const settleDeadline = performance.now() + connectTimeoutMs;
      while (counts().pending > 0 && performance.now() < settleDeadline) await delay(100);
      await delay(settleMs);

      phase = 'window';
      await hooks.windowStart?.();
      const cpu0 = process.cpuUsage();
      const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
      lag.enable();
      m.c2m.samples.clear();
      m.m2c.samples.clear();
      m.c2m.sent = m.c2m.received = m.m2c.sent = m.m2c.received = 0;
      m.from = performance.now();
      m.to = Infinity;
      const windowEndAt = m.from + o.windowMs;
      let nextSample = m.from + sampleEvery;
      while (performance.now() < windowEndAt) {
        const now = performance.now();
        if (now >= nextSample) {
          await hooks.sample?.();
          nextSample += sampleEvery;
        }
        await delay(Math.max(1, Math.min(windowEndAt, nextSample) - performance.now()));
      }
      m.to = performance.now();
      const windowMs = m.to - m.from;
      const cpu = process.cpuUsage(cpu0);
      lag.disable();
      const heldFrom = m.from;
      const heldTo = m.to;
      phase = 'grace';
      await hooks.windowEnd?.();
      await delay(graceMs);
      await hooks.afterGrace?.();

      let held = 0;
      for (const t of tracks) if (t.opened >= 0 && t.opened <= heldFrom && (t.closed < 0 || t.closed >= heldTo)) held++;
      const result: DriverResult = {
        callsTarget: o.calls,
        callsHeld: held,
        callsFailed: o.calls - held,
        failures: [],
        windowMs,
        callerToModel: m.c2m.result(),
        modelToCaller: m.m2c.result(),
        clears: 0,
        marksEchoed: 0,
        mediaToCallers: 0,
        marksToCallers: 0,
        driver: {
          cpuPercent: ((cpu.user + cpu.system) / 1000 / windowMs) * 100,
          // The histogram records the whole timer interval: lag is what lies beyond it.
          loopLagP99Ms: Math.max(0, lag.percentile(99) / 1e6 - LAG_RESOLUTION_MS),
          loopLagMaxMs: Math.max(0, lag.max / 1e6 - LAG_RESOLUTION_MS),
          saturated: false,
        },
      };
      result.driver.saturated = result.driver.cpuPercent > 85 || result.driver.loopLagP99Ms > 20;
      m.from = m.to = Infinity;

      // Hang up: Twilio's `stop`, then the socket closes; bounded.
      for (const ac of aborts) ac.abort();
      await Promise.race([Promise.all(done), delay(15_000)]);
      const reasons = new Map<string, number>();
      for (const t of tracks) {
        const r = t.report;
        if (r) {
          result.clears += r.clears;
          result.marksEchoed += r.marksEchoed;
          result.mediaToCallers += r.framesReceived;
          result.marksToCallers += r.marksSent;
        }
        const failedEarly = t.opened < 0 || t.opened > heldFrom || (t.closed >= 0 && t.closed < heldTo);
        if (!failedEarly) continue;
        const why = !r ? 'never connected' : r.stage !== 'connected' ? `${r.stage}: ${r.errors[0] ?? ''}` : `closed ${r.closeCode ?? ''} ${r.closeReason} ${r.errors[0] ?? ''}`;
        const key = why.replace(/CA[0-9a-f]{32}|MZ[0-9a-f]{32}/g, '<sid>').slice(0, 160);
        reasons.set(key, (reasons.get(key) ?? 0) + 1);
      }
      result.failures = [...reasons].map(([reason, count]) => ({ reason, count })).slice(0, 5);
      return result;
    } finally {
      clearInterval(progressTimer);
      for (const ac of aborts) ac.abort();
    }
  }
}

function sortedRecent(d: Direction): number[] {
  const s = Array.from(d.recent.sorted());
  d.recent.clear();
  return s;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
