/**
 * A tiny k6 for tests: runs a k6 script's init context and `default()` in VU worker threads against
 * real sockets (node fetch, `ws`), then summarises its metrics and judges its `options.thresholds`.
 * The k6 API fakes live in k6-api.ts; executors are not emulated (iterations are shared, as in
 * k6's shared-iterations), since scheduling is k6's job and scenarios.js's plan data is tested apart.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { evaluateThresholds, trendValues, type Summary, type Thresholds } from '../../loadtest/lib/scenarios.js';
import type { HostMsg, VuMsg } from './k6-api.js';

export interface K6RunOptions {
  env: Record<string, string>;
  vus: number;
  iterations: number;
  /** The whole run is killed after this. */
  timeoutMs: number;
}

export interface K6RunResult {
  options: { scenarios?: Record<string, Record<string, unknown>>; thresholds?: Thresholds } | null;
  summary: Summary;
  thresholds: ReturnType<typeof evaluateThresholds>;
  iterationErrors: string[];
  httpRequests: Array<{ method: string; url: string; status: number }>;
  wsUpgrades: Array<{ url: string; headers: Record<string, string>; status: number }>;
}

type Samples = Extract<VuMsg, { t: 'samples' }>['samples'];

/** Serve one VU's requests with real sockets. */
function host(
  port: MessagePort,
  signal: Int32Array,
  run: { next: () => number; result: K6RunResult; samples: Samples[] },
): { stop: () => void; drained: Promise<void> } {
  // The VU closes its end after its last message: 'close' comes after everything it sent.
  const drained = new Promise<void>((resolve) => port.once('close', () => resolve()));
  const sockets = new Map<number, WebSocket>();
  const reply = (m: HostMsg): void => {
    port.postMessage(m);
    Atomics.add(signal, 0, 1);
    Atomics.notify(signal, 0);
  };
  port.on('message', (m: VuMsg) => {
    switch (m.t) {
      case 'http': {
        const t0 = performance.now();
        const record = { method: m.method, url: m.url, status: 0 };
        run.result.httpRequests.push(record);
        fetch(m.url, { method: m.method, headers: m.headers, body: m.body, signal: AbortSignal.timeout(m.timeoutMs) }).then(
          async (res) => {
            const body = await res.text();
            record.status = res.status;
            reply({ t: 'http-res', id: m.id, status: res.status, body, headers: Object.fromEntries(res.headers), error: '', durationMs: performance.now() - t0 });
          },
          (err: unknown) => reply({ t: 'http-res', id: m.id, status: 0, body: '', headers: {}, error: String(err), durationMs: performance.now() - t0 }),
        );
        return;
      }
      case 'ws-connect': {
        const upgrade = { url: m.url, headers: m.headers, status: 0 };
        run.result.wsUpgrades.push(upgrade);
        const ws = new WebSocket(m.url, { headers: m.headers, perMessageDeflate: false });
        sockets.set(m.id, ws);
        let opened = false;
        let failed = false;
        ws.on('unexpected-response', (_req, res) => {
          failed = true;
          upgrade.status = res.statusCode ?? 0;
          res.resume();
          ws.terminate();
          reply({ t: 'ws-fail', id: m.id, status: upgrade.status, error: `websocket: bad handshake (HTTP ${upgrade.status})` });
        });
        ws.on('upgrade', (res) => {
          upgrade.status = res.statusCode ?? 101;
        });
        ws.on('open', () => {
          opened = true;
          reply({ t: 'ws-open', id: m.id, status: upgrade.status || 101, headers: {} });
        });
        ws.on('message', (data, isBinary) => {
          const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
          if (isBinary) reply({ t: 'ws-binary', id: m.id, data: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer });
          else reply({ t: 'ws-message', id: m.id, data: buf.toString('utf8') });
        });
        ws.on('error', (err) => {
          if (failed) return;
          if (!opened) {
            failed = true;
            reply({ t: 'ws-fail', id: m.id, status: 0, error: err.message });
          } else reply({ t: 'ws-error', id: m.id, error: err.message });
        });
        ws.on('close', (code) => {
          sockets.delete(m.id);
          if (opened) reply({ t: 'ws-closed', id: m.id, code });
        });
        return;
      }
      case 'ws-send': {
        const ws = sockets.get(m.id);
        if (ws?.readyState === WebSocket.OPEN) ws.send(m.data);
        return;
      }
      case 'ws-close': {
        const ws = sockets.get(m.id);
        if (ws?.readyState === WebSocket.OPEN) ws.close(m.code);
        return;
      }
      case 'next-iteration':
        reply({ t: 'iteration', n: run.next() });
        return;
      case 'options':
        run.result.options ??= m.options as K6RunResult['options'];
        return;
      case 'iteration-error':
        run.result.iterationErrors.push(m.error);
        return;
      case 'samples':
        run.samples.push(m.samples);
        return;
    }
  });
  return {
    stop: () => {
      for (const ws of sockets.values()) ws.terminate();
      port.close();
    },
    drained,
  };
}

/** Merge per-VU samples into k6's end-of-test summary shape. */
function summarise(all: Samples[], elapsedS: number): Summary {
  const merged: Samples = {};
  for (const s of all) {
    for (const [name, m] of Object.entries(s)) {
      const into = (merged[name] ??= { type: m.type, values: [] });
      for (const v of m.values) into.values.push(v);
    }
  }
  const summary: Summary = { metrics: {} };
  for (const [name, m] of Object.entries(merged)) {
    if (m.values.length === 0) continue;
    switch (m.type) {
      case 'trend':
        summary.metrics[name] = { type: 'trend', values: trendValues(m.values) };
        break;
      case 'counter': {
        const count = m.values.reduce((a, b) => a + b, 0);
        summary.metrics[name] = { type: 'counter', values: { count, rate: count / elapsedS } };
        break;
      }
      case 'rate': {
        const passes = m.values.filter((v) => v !== 0).length;
        summary.metrics[name] = { type: 'rate', values: { rate: passes / m.values.length, passes, fails: m.values.length - passes } };
        break;
      }
      case 'gauge':
        break;
    }
  }
  return summary;
}

/**
 * Run `scriptPath` (a k6 script) with `vus` VU threads sharing `iterations` iterations, and judge
 * its thresholds as k6 would at the end of the run.
 */
export async function runK6Script(scriptPath: string, o: K6RunOptions): Promise<K6RunResult> {
  const result: K6RunResult = {
    options: null,
    summary: { metrics: {} },
    thresholds: { ok: false, results: [] },
    iterationErrors: [],
    httpRequests: [],
    wsUpgrades: [],
  };
  let given = 0;
  const run = { next: () => (given < o.iterations ? given++ : -1), result, samples: [] as Samples[] };
  const started = performance.now();
  const workers: Array<{ worker: Worker; stop: () => void; exited: Promise<unknown> }> = [];
  for (let vu = 1; vu <= o.vus; vu++) {
    const { port1, port2 } = new MessageChannel();
    const signal = new Int32Array(new SharedArrayBuffer(4));
    const { stop, drained } = host(port1, signal, run);
    const worker = new Worker(new URL('./k6-vu-boot.mjs', import.meta.url), {
      workerData: { entry: new URL('./k6-vu.ts', import.meta.url).href, port: port2, signal, scriptUrl: pathToFileURL(scriptPath).href, env: o.env, vu },
      transferList: [port2],
    });
    const exited = Promise.all([
      new Promise<number>((resolve, reject) => {
        worker.once('error', reject);
        worker.once('exit', resolve);
      }),
      drained,
    ]);
    workers.push({ worker, stop, exited });
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`k6 shim: run exceeded ${o.timeoutMs} ms`)), o.timeoutMs);
  });
  try {
    await Promise.race([Promise.all(workers.map((w) => w.exited)), timeout]);
  } finally {
    clearTimeout(timer);
    for (const w of workers) {
      w.stop();
      await w.worker.terminate();
    }
  }
  result.summary = summarise(run.samples, Math.max(0.001, (performance.now() - started) / 1000));
  result.thresholds = evaluateThresholds(result.summary, result.options?.thresholds ?? {});
  return result;
}
