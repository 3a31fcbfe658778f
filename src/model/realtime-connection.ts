/**
 * The one model socket: endpoint selection per provider, a bounded connect with retry and backoff,
 * and a small RealtimeSocket over `ws`. What is said on it (session.update, events) is left to
 * client-events.ts and src/call/ (model-session.ts opens and configures it). A little over 400 lines: the connect, its retry budget and
 * the socket's backpressure are one lifecycle, clearer read together than split.
 */
import WebSocket from 'ws';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { ModelConfig } from '../config.js';
import { ABNORMAL_CLOSE, SwitchboardError } from '../errors.js';
import type { Logger } from '../telemetry/index.js';
import { ClientEventLedger } from './model-errors.js';
import type { SessionShape } from './client-events.js';

export interface ModelEndpoint {
  url: string;
  /** Carries the credential: never log these. */
  headers: Record<string, string>;
  shape: SessionShape;
  provider: 'openai' | 'azure' | 'sim';
}

/**
 * Where and how to connect, from Config.model. OpenAI gets no `OpenAI-Beta` header: the beta shape
 * is retired and the server closes such sessions with 4000 (docs/wire-formats.md §5). For provider `sim`,
 * pass the simulated model's ws URL.
 */
export function modelEndpoint(model: ModelConfig, simUrl?: string): ModelEndpoint {
  switch (model.provider) {
    case 'openai': {
      const u = new URL(model.url);
      // An explicit ?model= in OPENAI_REALTIME_URL is the more specific setting; keep it.
      if (!u.searchParams.has('model')) u.searchParams.set('model', model.model);
      return {
        url: u.toString(),
        headers: { Authorization: `Bearer ${model.apiKey}` },
        shape: 'ga',
        provider: 'openai',
      };
    }
    case 'azure':
      // config.ts already built the GA or preview URL; the preview one speaks the beta shape.
      return { url: model.url, headers: { 'api-key': model.apiKey }, shape: model.shape, provider: 'azure' };
    case 'sim': {
      if (simUrl === undefined)
        throw new SwitchboardError('internal', 'modelEndpoint: provider sim needs the sim server URL');
      const u = new URL(simUrl);
      u.searchParams.set('model', 'sim');
      return { url: u.toString(), headers: { Authorization: 'Bearer sim' }, shape: 'ga', provider: 'sim' };
    }
  }
}

/** The model socket as the call sees it. Message data stays a Buffer (no decoding here). */
export interface RealtimeSocket {
  /** Sends one text frame; a no-op, counted in `droppedSends`, when the socket is not open. */
  send(text: string): void;
  /** Bytes queued in the socket not yet written: the call's backpressure signal. */
  readonly bufferedAmount: number;
  readonly isOpen: boolean;
  /** Sends attempted while not open. */
  readonly droppedSends: number;
  /**
   * The one message listener; set once. Messages that arrived between open and this call (the
   * server may send session.created in the same packet as the 101) are delivered at once, in order.
   */
  onMessage(cb: (data: Buffer) => void): void;
  /** The one close listener; called once. If the socket already closed, called at once. */
  onClose(cb: (code: number, reason: string) => void): void;
  /** Idempotent. Starts the close handshake and terminates the socket if it stalls. */
  close(code?: number, reason?: string): void;
  /**
   * The type of the client event this socket sent with `eventId` (every event but audio appends
   * carries one), for tracing an `error` back to its cause. Absent on test doubles.
   */
  clientEventType?(eventId: string | undefined): string | undefined;
}

/** ws-level liveness: a ping every `intervalMs`; no pong within `timeoutMs` and the socket is cut. */
export interface Keepalive {
  intervalMs: number;
  timeoutMs: number;
}

/** The close code and reason the model session sees when the keepalive cut a silent socket. */
export const KEEPALIVE_CLOSE = { code: ABNORMAL_CLOSE, reason: 'keepalive: no pong from the model' } as const;

export interface ConnectOptions {
  /** Per attempt: TCP + TLS + upgrade. */
  timeoutMs: number;
  attempts: number;
  /** Abort when the caller hangs up while we connect; any socket opened is closed. */
  signal?: AbortSignal;
  log: Logger;
  /** Delay before attempt n+1 after failure n (0-based). Default 200 ms · 2^n, jittered, capped at 2 s. */
  backoffMs?: (attempt: number) => number;
  /** How long close() waits for the peer's close frame before terminate(). Default 2000. */
  closeTimeoutMs?: number;
  /** Ping the open socket; off when absent. */
  keepalive?: Keepalive;
}

/**
 * Model deltas can be tens of KB (docs/wire-formats.md §8: no tiny max payload on the model socket), but a
 * runaway frame must not take the heap.
 */
export const MODEL_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;
const DEFAULT_CLOSE_TIMEOUT_MS = 2000;
/** Messages kept for a listener not yet set; the server sends one or two before session.update. */
const MAX_EARLY_MESSAGES = 1024;

/** The default backoff: 200 ms · 2^n with ±25 % jitter, capped at 2 s. */
export function defaultBackoffMs(attempt: number): number {
  const base = Math.min(2000, 200 * 2 ** attempt);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

type AttemptFailure =
  | { kind: 'status'; status: number }
  | { kind: 'timeout' }
  | { kind: 'network'; code: string | undefined; message: string }
  | { kind: 'aborted' };

class AttemptError extends Error {
  constructor(readonly failure: AttemptFailure) {
    super(describe(failure));
  }
}

function describe(f: AttemptFailure): string {
  switch (f.kind) {
    case 'status':
      return `upgrade answered HTTP ${f.status}`;
    case 'timeout':
      return 'connect timed out';
    case 'network':
      return f.code ? `${f.code}: ${f.message}` : f.message;
    case 'aborted':
      return 'aborted';
  }
}

// Certificate problems and bad URLs do not heal with a retry.
const PERMANENT_NETWORK = /^(ERR_TLS_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|ERR_INVALID_URL)/;

function isRetryable(f: AttemptFailure): boolean {
  switch (f.kind) {
    case 'status':
      return f.status === 429 || f.status === 408 || f.status >= 500;
    case 'timeout':
      return true;
    case 'network':
      return f.code === undefined || !PERMANENT_NETWORK.test(f.code);
    case 'aborted':
      return false;
  }
}

function abortError(signal: AbortSignal): SwitchboardError {
  return new SwitchboardError('model_unreachable', 'model connect aborted', false, { cause: signal.reason });
}

/**
 * One attempt: resolves with the OPEN socket already wrapped, rejects with an AttemptError. The wrap
 * happens inside 'open': ws can emit the first message (sent in the same packet as the 101) from a
 * nextTick, before an awaiting caller resumes, and a message without a listener is lost.
 */
function attempt(
  ep: ModelEndpoint,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  wrapOpen: (ws: WebSocket) => RealtimeSocket,
): Promise<RealtimeSocket> {
  return new Promise<RealtimeSocket>((resolve, reject) => {
    const ws = new WebSocket(ep.url, {
      headers: ep.headers,
      perMessageDeflate: false,
      maxPayload: MODEL_MAX_PAYLOAD_BYTES,
      // ws uses this as the request's idle timeout; the timer below bounds the whole attempt.
      handshakeTimeout: timeoutMs,
      followRedirects: false,
    });
    let failure: AttemptFailure | undefined;
    let settled = false;

    const finish = (f: AttemptFailure | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      ws.off('open', onOpen);
      ws.off('unexpected-response', onUnexpected);
      if (f === undefined) {
        ws.off('error', onError);
        ws.off('close', onEarlyClose);
        resolve(wrapOpen(ws));
        return;
      }
      // Keep an error listener: terminate() emits one more, and an unheard 'error' would throw.
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
      reject(new AttemptError(f));
    };
    const onOpen = (): void => finish(undefined);
    const onUnexpected = (_req: ClientRequest, res: IncomingMessage): void => {
      failure = { kind: 'status', status: res.statusCode ?? 0 };
      res.resume();
      finish(failure);
    };
    const onError = (err: Error & { code?: string }): void => {
      finish(failure ?? { kind: 'network', code: err.code, message: err.message });
    };
    const onEarlyClose = (): void =>
      finish(failure ?? { kind: 'network', code: undefined, message: 'closed during connect' });
    const onAbort = (): void => finish({ kind: 'aborted' });
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);

    ws.on('open', onOpen);
    ws.on('unexpected-response', onUnexpected);
    ws.on('error', onError);
    ws.on('close', onEarlyClose);
    if (signal) {
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
  });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(t);
      resolve(false);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Open the model socket; resolves once it is OPEN (the model session then sends session.update and waits
 * for session.updated). Retries timeouts, refused connections, 5xx and 429 with backoff, at most
 * `attempts` times in all. Throws SwitchboardError `model_auth` (not retryable) on 401/403,
 * `model_unreachable` otherwise (retryable when the last failure was transient, with it as cause),
 * and `model_unreachable` with the signal's reason as cause when aborted (check `signal.aborted`).
 */
export async function connectRealtime(ep: ModelEndpoint, o: ConnectOptions): Promise<RealtimeSocket> {
  const attempts = Math.max(1, Math.floor(o.attempts));
  const backoff = o.backoffMs ?? defaultBackoffMs;
  const host = safeHost(ep.url);
  let last: AttemptError | undefined;
  for (let n = 0; n < attempts; n++) {
    if (o.signal?.aborted) throw abortError(o.signal);
    try {
      const sock = await attempt(ep, o.timeoutMs, o.signal, (ws) =>
        wrap(ws, o.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS, o.log, o.keepalive),
      );
      if (n > 0) o.log.info({ provider: ep.provider, host, attempt: n + 1 }, 'model connected after retry');
      return sock;
    } catch (err) {
      if (!(err instanceof AttemptError)) {
        // `new WebSocket` throws synchronously on a URL it cannot use (bad scheme, fragment).
        const why = err instanceof Error ? err.message : 'unknown error';
        throw new SwitchboardError('model_unreachable', `model connect failed: ${why}`, false, {
          cause: err,
        });
      }
      const f = err.failure;
      if (f.kind === 'aborted') throw abortError(o.signal as AbortSignal);
      last = err;
      const retryable = isRetryable(f);
      o.log.warn(
        { provider: ep.provider, host, attempt: n + 1, attempts, failure: err.message, retryable },
        'model connect attempt failed',
      );
      if (f.kind === 'status' && (f.status === 401 || f.status === 403)) {
        throw new SwitchboardError('model_auth', `model rejected credentials (HTTP ${f.status})`, false, {
          cause: err,
        });
      }
      if (!retryable) {
        throw new SwitchboardError('model_unreachable', `model connect failed: ${err.message}`, false, {
          cause: err,
        });
      }
      if (n + 1 < attempts && !(await sleep(backoff(n), o.signal))) throw abortError(o.signal as AbortSignal);
    }
  }
  throw new SwitchboardError(
    'model_unreachable',
    `model unreachable after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${last?.message ?? 'unknown'}`,
    true,
    { cause: last },
  );
}

function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'invalid-url';
  }
}

/** Distinct event-id prefixes per socket of this process, so logs of two sessions never collide. */
let socketSeq = 0;

function wrap(ws: WebSocket, closeTimeoutMs: number, log: Logger, keepalive: Keepalive | undefined): RealtimeSocket {
  const ledger = new ClientEventLedger(`sb${(socketSeq++).toString(36)}_`);
  let messageCb: ((data: Buffer) => void) | undefined;
  let closeCb: ((code: number, reason: string) => void) | undefined;
  let early: Buffer[] | undefined = [];
  let closed: { code: number; reason: string } | undefined;
  let closing = false;
  let dropped = 0;
  let killTimer: NodeJS.Timeout | undefined;

  ws.on('message', (raw) => {
    const data = raw as Buffer;
    // binaryType is 'nodebuffer' (the default): data is one Buffer, fragments already joined.
    if (messageCb) messageCb(data);
    else if (early && early.length < MAX_EARLY_MESSAGES) early.push(data);
  });
  ws.on('error', (err: Error & { code?: string }) => {
    // A 'close' always follows; the model session learns of the end there.
    log.warn({ code: err.code, failure: err.message }, 'model socket error');
  });
  let pingTimer: NodeJS.Timeout | undefined;
  let pongTimer: NodeJS.Timeout | undefined;
  let keepaliveCut = false;
  const stopKeepalive = (): void => {
    if (pingTimer) clearInterval(pingTimer);
    if (pongTimer) clearTimeout(pongTimer);
    pingTimer = pongTimer = undefined;
  };
  if (keepalive) {
    ws.on('pong', () => {
      if (pongTimer) clearTimeout(pongTimer);
      pongTimer = undefined;
    });
    pingTimer = setInterval(() => {
      if (pongTimer || ws.readyState !== WebSocket.OPEN) return; // one ping outstanding at a time
      ws.ping();
      pongTimer = setTimeout(() => {
        pongTimer = undefined;
        keepaliveCut = true;
        log.warn({ code: 'model_closed', timeoutMs: keepalive.timeoutMs }, 'model socket answered no ping: cut');
        ws.terminate();
      }, keepalive.timeoutMs);
      pongTimer.unref();
    }, keepalive.intervalMs);
    pingTimer.unref();
  }
  ws.on('close', (code: number, reason: Buffer) => {
    if (killTimer) clearTimeout(killTimer);
    stopKeepalive();
    closed = keepaliveCut ? { ...KEEPALIVE_CLOSE } : { code, reason: reason.toString('utf8') };
    if (closeCb) closeCb(closed.code, closed.reason);
  });

  return {
    send(text) {
      if (ws.readyState !== WebSocket.OPEN) {
        dropped++;
        return;
      }
      // Per frame: appends ('{"type":"input_audio_buffer.append"…', an `i` at 9) carry no id.
      ws.send(text.charCodeAt(9) === 0x69 ? text : ledger.stamp(text));
    },
    clientEventType(eventId) {
      return ledger.typeOf(eventId);
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    get isOpen() {
      return ws.readyState === WebSocket.OPEN;
    },
    get droppedSends() {
      return dropped;
    },
    onMessage(cb) {
      if (messageCb) throw new SwitchboardError('internal', 'RealtimeSocket.onMessage set twice');
      messageCb = cb;
      const pending = early;
      early = undefined;
      if (pending) for (const m of pending) cb(m);
    },
    onClose(cb) {
      if (closeCb) throw new SwitchboardError('internal', 'RealtimeSocket.onClose set twice');
      closeCb = cb;
      if (closed) cb(closed.code, closed.reason);
    },
    close(code = 1000, reason = '') {
      if (closing || closed) return;
      closing = true;
      stopKeepalive();
      if (ws.readyState !== WebSocket.OPEN) {
        ws.terminate();
        return;
      }
      try {
        ws.close(code, reason);
      } catch {
        // Invalid code (e.g. 1005) or a reason over 123 bytes: do not leave the socket open over it.
        ws.terminate();
        return;
      }
      // ws waits 30 s for the peer's close frame; a stalled peer must not hold the call that long.
      killTimer = setTimeout(() => ws.terminate(), closeTimeoutMs);
      killTimer.unref();
    },
  };
}
