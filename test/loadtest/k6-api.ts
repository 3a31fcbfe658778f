/**
 * The k6 API surface the load-test scripts use (k6, k6/http, k6/ws, k6/crypto, k6/encoding,
 * k6/metrics, k6/execution), for a VU worker thread. Real I/O happens on the host (k6-shim.ts).
 *
 * k6 calls are synchronous: `http.post` returns the response and `ws.connect` returns only after
 * the socket closed, running the socket's handlers and timers in between (its per-VU event loop).
 * The worker reproduces that by posting a request to the host and blocking on Atomics.wait until
 * the host's answer or socket events arrive (receiveMessageOnPort reads them synchronously).
 */
import { createHmac, randomBytes as nodeRandomBytes } from 'node:crypto';
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';

/** Host -> worker messages. */
export type HostMsg =
  | { t: 'http-res'; id: number; status: number; body: string; headers: Record<string, string>; error: string; durationMs: number }
  | { t: 'ws-open'; id: number; status: number; headers: Record<string, string> }
  | { t: 'ws-fail'; id: number; status: number; error: string }
  | { t: 'ws-message'; id: number; data: string }
  | { t: 'ws-binary'; id: number; data: ArrayBuffer }
  | { t: 'ws-error'; id: number; error: string }
  | { t: 'ws-closed'; id: number; code: number }
  | { t: 'iteration'; n: number };

/** Worker -> host messages. */
export type VuMsg =
  | { t: 'http'; id: number; method: string; url: string; body: string | null; headers: Record<string, string>; timeoutMs: number }
  | { t: 'ws-connect'; id: number; url: string; headers: Record<string, string> }
  | { t: 'ws-send'; id: number; data: string }
  | { t: 'ws-close'; id: number; code: number }
  | { t: 'next-iteration' }
  | { t: 'options'; options: unknown }
  | { t: 'iteration-error'; error: string }
  | { t: 'samples'; samples: Record<string, { type: 'trend' | 'counter' | 'rate' | 'gauge'; values: number[] }> };

let port: MessagePort | undefined;
let signal: Int32Array | undefined;
/** No k6 call blocks longer than this: a bound for every wait loop. */
const HARD_LIMIT_MS = 10 * 60_000;
let nextId = 1;

/** Connect the fakes to the host: the port and the shared counter the host bumps per message. */
export function attach(p: MessagePort, s: Int32Array): void {
  port = p;
  signal = s;
}

export function post(msg: VuMsg): void {
  if (!port) throw new Error('k6 shim: VU not attached to a host');
  port.postMessage(msg);
}

/** The next host message, waiting at most `timeoutMs`. */
function receive(timeoutMs: number): HostMsg | undefined {
  if (!port || !signal) throw new Error('k6 shim: VU not attached to a host');
  const seen = Atomics.load(signal, 0);
  const ready = receiveMessageOnPort(port);
  if (ready) return ready.message as HostMsg;
  if (timeoutMs > 0) Atomics.wait(signal, 0, seen, timeoutMs);
  return receiveMessageOnPort(port)?.message as HostMsg | undefined;
}

/** Block until a message matching `pred` arrives (others are kept for later, in order). */
const backlog: HostMsg[] = [];
function awaitMsg<T extends HostMsg>(pred: (m: HostMsg) => m is T, what: string): T {
  const i = backlog.findIndex(pred);
  if (i >= 0) return backlog.splice(i, 1)[0] as T;
  const deadline = Date.now() + HARD_LIMIT_MS;
  while (Date.now() < deadline) {
    const m = receive(Math.min(1000, deadline - Date.now()));
    if (!m) continue;
    if (pred(m)) return m;
    backlog.push(m);
  }
  throw new Error(`k6 shim: no ${what} within ${HARD_LIMIT_MS} ms`);
}

function durationMs(d: string | number | undefined, fallback: number): number {
  if (typeof d === 'number') return d;
  const m = d === undefined ? null : /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(d);
  if (!m) return fallback;
  const v = Number(m[1]);
  return m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000;
}

// --- k6/http -----------------------------------------------------------------------------------------

interface HttpParams {
  headers?: Record<string, string>;
  timeout?: string | number;
  tags?: Record<string, string>;
  responseType?: string;
}

function request(method: string, url: string, body: string | null, params: HttpParams = {}) {
  const id = nextId++;
  post({ t: 'http', id, method, url, body, headers: params.headers ?? {}, timeoutMs: durationMs(params.timeout, 60_000) });
  const r = awaitMsg((m): m is Extract<HostMsg, { t: 'http-res' }> => m.t === 'http-res' && m.id === id, 'HTTP response');
  return {
    url,
    status: r.status,
    body: r.body,
    headers: r.headers,
    error: r.error,
    error_code: r.status === 0 ? 1000 : 0,
    timings: { duration: r.durationMs },
  };
}

const http = {
  request,
  get: (url: string, params?: HttpParams) => request('GET', url, null, params),
  post: (url: string, body: string | null, params?: HttpParams) => request('POST', url, body, params),
  del: (url: string, body?: string | null, params?: HttpParams) => request('DELETE', url, body ?? null, params),
};

// --- k6/ws ---------------------------------------------------------------------------------------------

type Handler = (...args: unknown[]) => void;
interface Timer {
  due: number;
  every: number;
  fn: () => void;
}
const wsError = (error: string) => ({ error: () => error });

function connect(url: string, paramsOrCb: { headers?: Record<string, string> } | null | ((s: unknown) => void), maybeCb?: (s: unknown) => void) {
  const params = typeof paramsOrCb === 'function' ? null : paramsOrCb;
  const setup = typeof paramsOrCb === 'function' ? paramsOrCb : maybeCb;
  if (!setup) throw new Error('ws.connect: a callback is required');
  const id = nextId++;
  const handlers = new Map<string, Handler[]>();
  const timers: Timer[] = [];
  let closed = false;
  const emit = (event: string, ...args: unknown[]): void => {
    for (const h of handlers.get(event) ?? []) h(...args);
  };
  const socket = {
    on(event: string, handler: Handler): void {
      handlers.set(event, [...(handlers.get(event) ?? []), handler]);
    },
    send(data: string): void {
      if (!closed) post({ t: 'ws-send', id, data });
    },
    sendBinary(): void {
      throw new Error('k6 shim: sendBinary is not used by the load-test scripts');
    },
    ping(): void {},
    close(code?: number): void {
      if (!closed) post({ t: 'ws-close', id, code: code ?? 1000 });
    },
    setInterval(fn: () => void, ms: number): void {
      timers.push({ due: Date.now() + ms, every: Math.max(1, ms), fn });
    },
    setTimeout(fn: () => void, ms: number): void {
      timers.push({ due: Date.now() + ms, every: 0, fn });
    },
  };
  post({ t: 'ws-connect', id, url, headers: params?.headers ?? {} });
  const hs = awaitMsg(
    (m): m is Extract<HostMsg, { t: 'ws-open' | 'ws-fail' }> => (m.t === 'ws-open' || m.t === 'ws-fail') && m.id === id,
    'WebSocket handshake',
  );
  // As in k6: the set-up callback runs after the dial, then `error` (dial failed) or `open`.
  setup(socket);
  if (hs.t === 'ws-fail') {
    emit('error', wsError(hs.error));
    return { url, status: hs.status, headers: {}, body: '', error: hs.error };
  }
  emit('open');
  const deadline = Date.now() + HARD_LIMIT_MS;
  while (!closed && Date.now() < deadline) {
    const now = Date.now();
    timers.sort((a, b) => a.due - b.due);
    for (const t of [...timers]) {
      if (closed || t.due > now) break;
      t.fn();
      if (t.every > 0) t.due = Math.max(t.due + t.every, now);
      else timers.splice(timers.indexOf(t), 1);
    }
    if (closed) break;
    const nextDue = timers.reduce((n, t) => Math.min(n, t.due), now + 1000);
    // Events that arrived while a handler made an HTTP request (k6 allows it) wait in the backlog.
    const early = backlog.findIndex((b) => 'id' in b && b.id === id);
    const m = early >= 0 ? backlog.splice(early, 1)[0] : receive(Math.max(0, nextDue - Date.now()));
    // One socket per VU at a time: anything else is a late event of an earlier socket.
    if (!m || !('id' in m) || m.id !== id) continue;
    switch (m.t) {
      case 'ws-message':
        emit('message', m.data);
        break;
      case 'ws-binary':
        emit('binaryMessage', m.data);
        break;
      case 'ws-error':
        emit('error', wsError(m.error));
        break;
      case 'ws-closed':
        closed = true;
        emit('close', m.code);
        break;
      case 'http-res':
      case 'ws-open':
      case 'ws-fail':
        break;
    }
  }
  return { url, status: hs.status, headers: hs.headers, body: '', error: '' };
}

// --- k6/crypto, k6/encoding ------------------------------------------------------------------------------

function toBuffer(input: string | ArrayBuffer): Buffer {
  return typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input);
}

function b64encode(input: string | ArrayBuffer, enc: string = 'std'): string {
  const s = toBuffer(input).toString(enc.includes('url') ? 'base64url' : 'base64');
  if (enc === 'std') return s;
  if (enc === 'url') return s + '='.repeat((4 - (s.length % 4)) % 4);
  return s.replace(/=+$/, '');
}

function b64decode(input: string, enc: string = 'std', format?: 's'): ArrayBuffer | string {
  const b = Buffer.from(input, enc.includes('url') ? 'base64url' : 'base64');
  if (format === 's') return b.toString('utf8');
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}

// --- k6/metrics ------------------------------------------------------------------------------------------

const registry: Record<string, { type: 'trend' | 'counter' | 'rate' | 'gauge'; values: number[] }> = {};
function metric(type: 'trend' | 'counter' | 'rate' | 'gauge') {
  return class {
    readonly name: string;
    constructor(name: string) {
      this.name = name;
      registry[name] ??= { type, values: [] };
    }
    add(value: number | boolean): void {
      registry[this.name]?.values.push(typeof value === 'boolean' ? (value ? 1 : 0) : value);
    }
  };
}

/** Every sample added by this VU, by metric. */
export function samples(): typeof registry {
  return registry;
}

// --- k6/execution, k6 ---------------------------------------------------------------------------------

let iterationInTest = 0;
let vuId = 0;
export function setIteration(n: number): void {
  iterationInTest = n;
}
export function setVu(n: number): void {
  vuId = n;
}

/** Ask the host for the next iteration number of the shared-iterations pool; -1 when none is left. */
export function nextIteration(): number {
  post({ t: 'next-iteration' });
  return awaitMsg((m): m is Extract<HostMsg, { t: 'iteration' }> => m.t === 'iteration', 'iteration number').n;
}

export const k6Modules: Record<string, unknown> = {
  k6: {
    check: (value: unknown, sets: Record<string, (v: unknown) => boolean>) => Object.values(sets).every((f) => f(value)),
    sleep: (s: number) => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, s * 1000);
    },
    group: (_name: string, fn: () => unknown) => fn(),
    fail: (msg?: string) => {
      throw new Error(msg ?? 'fail()');
    },
  },
  'k6/http': http,
  'k6/ws': { connect },
  'k6/crypto': {
    hmac: (alg: string, secret: string | ArrayBuffer, data: string | ArrayBuffer, enc: 'base64' | 'hex') =>
      createHmac(alg, toBuffer(secret)).update(toBuffer(data)).digest(enc),
    randomBytes: (n: number) => {
      const b = nodeRandomBytes(n);
      return b.buffer.slice(b.byteOffset, b.byteOffset + n);
    },
  },
  'k6/encoding': { b64encode, b64decode },
  'k6/metrics': { Trend: metric('trend'), Counter: metric('counter'), Rate: metric('rate'), Gauge: metric('gauge') },
  'k6/execution': {
    scenario: {
      get iterationInTest() {
        return iterationInTest;
      },
    },
    vu: {
      get idInTest() {
        return vuId;
      },
    },
  },
};
