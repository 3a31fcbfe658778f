/**
 * A scriptable fake realtime model for fault tests: a real `ws` server that answers each upgrade as
 * told (accept, HTTP status, hang, reset) and either speaks a minimal OpenAI Realtime GA protocol
 * itself or proxies every session to a real model (the sim) so a test can inject faults into a
 * realistic conversation. What the relay does with the faults is the tests' business.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { FRAME_BYTES, speechFrames } from '../../src/sim/portable/audio.js';

/** How one upgrade attempt is answered. */
export type UpgradeFault =
  | { kind: 'accept' }
  /** An HTTP error instead of 101 (401 is not retried by the relay, 503 is). */
  | { kind: 'status'; status: number }
  /** Keep the TCP connection and never answer: the relay's connect timeout must fire. */
  | { kind: 'hang' }
  /** Reset the TCP connection as soon as the request arrives. */
  | { kind: 'reset' };

/** A client (relay) event as received, with `audio` of appends left out (appends are counted). */
export type ClientEvent = { type: string; [k: string]: unknown };

export interface FaultConnection {
  /** 0-based among accepted sessions. */
  readonly index: number;
  readonly received: readonly ClientEvent[];
  /** `input_audio_buffer.append` events received. */
  readonly appends: number;
  /** Caller audio bytes those appends carried (an append holds 1 to MODEL_APPEND_FRAMES frames). */
  readonly appendedBytes: number;
  /** Server events sent to the relay so far (own and proxied), by type. */
  readonly sentTypes: readonly string[];
  readonly isOpen: boolean;
  /** Resolves when the relay's socket is gone, with the close code the server saw. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Send one server event (an object gets an event_id). */
  send(ev: Record<string, unknown>): void;
  /** Send exact bytes: malformed JSON, binary frames, giant payloads. */
  sendRaw(data: string | Buffer, binary?: boolean): void;
  /** A clean close with a code, as the real server does after `session_expired` (1001). */
  close(code: number, reason?: string): void;
  /** Kill the TCP connection with no close frame (a network drop). */
  drop(): void;
  /**
   * Minimal mode: speak one response now (response.created, μ-law deltas whose first frames carry
   * `text` as the spoken-text marker, transcript, response.done). Returns the response id.
   */
  speak(text: string, o?: { deltaBytes?: number; totalBytes?: number }): string;
  /** Resolves with the first client event matching `pred` (already received or future). */
  waitForClient(pred: (e: ClientEvent) => boolean, timeoutMs?: number): Promise<ClientEvent>;
  /** Resolves with the first server event type matching `pred` sent to the relay from now on. */
  waitForServer(pred: (type: string, ev: Record<string, unknown> | undefined) => boolean, timeoutMs?: number): Promise<string>;
}

export interface FaultModelOptions {
  /**
   * Proxy each accepted session to this realtime URL (the sim model's), passing every frame both
   * ways; without it the fake answers session.update and response.create itself.
   */
  upstream?: string;
  /** How upgrade attempt `n` (0-based, every attempt counted) is answered. Default: accept. */
  upgrade?: (attempt: number) => UpgradeFault;
  /** Run once per accepted session, as soon as it opens. */
  script?: (conn: FaultConnection) => void;
  /**
   * Proxy mode: sees each upstream server event before it is forwarded (already JSON-parsed);
   * return false to swallow it. Called after forwarding decisions of earlier events.
   */
  onServerEvent?: (conn: FaultConnection, ev: Record<string, unknown>) => boolean | void;
  /** Minimal mode: answer response.create automatically (default true). */
  autoRespond?: boolean;
}

export interface FaultModel {
  /** ws://127.0.0.1:PORT/v1/realtime */
  readonly url: string;
  /** Upgrade requests seen, accepted or not. */
  readonly attempts: number;
  readonly connections: readonly FaultConnection[];
  /** Resolves with accepted session `index` once it exists. */
  waitForConnection(index: number, timeoutMs?: number): Promise<FaultConnection>;
  /** Sessions whose relay-side socket is still open. */
  openConnections(): number;
  close(): Promise<void>;
}

const DEFAULT_WAIT_MS = 5000;
const APPEND = '"type":"input_audio_buffer.append"';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function text(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

/** Waiters over a growing list, settled when an item matches or the bounded wait runs out. */
class Waiters<T> {
  private readonly list = new Set<{ pred: (v: T) => boolean; resolve: (v: T) => void }>();
  wait(pred: (v: T) => boolean, timeoutMs: number, what: string, existing: readonly T[] = []): Promise<T> {
    const hit = existing.find(pred);
    if (hit !== undefined) return Promise.resolve(hit);
    return new Promise<T>((resolve, reject) => {
      const w = {
        pred,
        resolve: (v: T) => {
          clearTimeout(timer);
          resolve(v);
        },
      };
      const timer = setTimeout(() => {
        this.list.delete(w);
        reject(new Error(`fault model: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.list.add(w);
    });
  }
  offer(v: T): void {
    for (const w of this.list) {
      if (w.pred(v)) {
        this.list.delete(w);
        w.resolve(v);
      }
    }
  }
}

class Connection implements FaultConnection {
  readonly received: ClientEvent[] = [];
  readonly sentTypes: string[] = [];
  appends = 0;
  appendedBytes = 0;
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly clientWaiters = new Waiters<ClientEvent>();
  private readonly serverWaiters = new Waiters<{ type: string; ev: Record<string, unknown> | undefined }>();
  private upstream: WebSocket | undefined;
  private pendingUp: string[] | undefined;
  private eventN = 0;
  private respN = 0;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    readonly index: number,
    private readonly ws: WebSocket,
    private readonly o: FaultModelOptions,
    path: string,
    headers: IncomingMessage['headers'],
  ) {
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        for (const t of this.timers) clearTimeout(t);
        this.timers.clear();
        this.upstream?.terminate();
        resolve({ code, reason: reason.toString() });
      }),
    );
    ws.on('error', () => undefined);
    ws.on('message', (data, isBinary) => this.onClient(data, isBinary));
    if (o.upstream) {
      const u = new URL(o.upstream);
      const mine = new URL(path, 'ws://x');
      u.search = mine.search;
      this.pendingUp = [];
      const auth = headers.authorization;
      const up = new WebSocket(u.toString(), { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024, ...(auth ? { headers: { authorization: auth } } : {}) });
      this.upstream = up;
      up.on('open', () => {
        const q = this.pendingUp ?? [];
        this.pendingUp = undefined;
        for (const m of q) up.send(m);
      });
      up.on('message', (data) => this.onUpstream(text(data)));
      up.on('error', () => undefined);
      up.on('close', () => {
        if (ws.readyState === WebSocket.OPEN) ws.terminate();
      });
    } else {
      this.send({ type: 'session.created', session: { type: 'realtime', object: 'realtime.session', audio: { input: { format: { type: 'audio/pcm', rate: 24000 } }, output: { format: { type: 'audio/pcm', rate: 24000 } } } } });
    }
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  private onClient(data: RawData, isBinary: boolean): void {
    const s = text(data);
    if (this.upstream) {
      if (this.pendingUp) this.pendingUp.push(s);
      else if (this.upstream.readyState === WebSocket.OPEN) this.upstream.send(s);
    }
    if (!isBinary && s.includes(APPEND)) {
      this.appends++;
      const from = s.indexOf('"audio":"') + 9;
      if (from > 8) this.appendedBytes += Buffer.byteLength(s.slice(from, s.indexOf('"', from)), 'base64');
      return;
    }
    let ev: unknown;
    try {
      ev = JSON.parse(s);
    } catch {
      ev = { type: '(unparseable)' };
    }
    const e: ClientEvent = isObject(ev) && typeof ev.type === 'string' ? (ev as ClientEvent) : { type: '(no type)' };
    this.received.push(e);
    this.clientWaiters.offer(e);
    if (!this.upstream) this.answer(e);
  }

  private onUpstream(s: string): void {
    let ev: Record<string, unknown> | undefined;
    // Deltas are most of the traffic: parsed only when a hook wants to judge them.
    const type = /^\{"type":"([^"]+)"/.exec(s)?.[1] ?? '(unknown)';
    if (this.o.onServerEvent || !type.endsWith('audio.delta')) {
      try {
        const parsed: unknown = JSON.parse(s);
        ev = isObject(parsed) ? parsed : undefined;
      } catch {
        ev = undefined;
      }
      if (ev && this.o.onServerEvent?.(this, ev) === false) return;
    }
    this.forward(s, type, ev);
  }

  private forward(s: string, type: string, ev: Record<string, unknown> | undefined): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(s);
    this.sentTypes.push(type);
    this.serverWaiters.offer({ type, ev });
  }

  /** Minimal mode: enough of the GA server to configure μ-law and answer response.create. */
  private answer(e: ClientEvent): void {
    if (e.type === 'session.update') {
      const session = isObject(e.session) ? e.session : {};
      const audio = isObject(session.audio) ? session.audio : {};
      const inFmt = isObject(audio.input) && isObject(audio.input.format) ? audio.input.format : { type: 'audio/pcm', rate: 24000 };
      const outFmt = isObject(audio.output) && isObject(audio.output.format) ? audio.output.format : { type: 'audio/pcm', rate: 24000 };
      this.send({ type: 'session.updated', session: { ...session, type: 'realtime', audio: { input: { format: inFmt }, output: { format: outFmt } } } });
    } else if (e.type === 'response.create' && this.o.autoRespond !== false) {
      this.speak('fault model reply');
    }
  }

  send(ev: Record<string, unknown>): void {
    const out = { ...ev, event_id: `evt_f${this.index}_${this.eventN++}` };
    this.forward(JSON.stringify(out), String(ev.type), out);
  }

  sendRaw(data: string | Buffer, binary = false): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(data, { binary });
    this.sentTypes.push('(raw)');
  }

  close(code: number, reason = ''): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
  }

  drop(): void {
    this.ws.terminate();
  }

  speak(spoken: string, o: { deltaBytes?: number; totalBytes?: number } = {}): string {
    const id = `resp_f${this.index}_${this.respN++}`;
    const itemId = `item_${id}`;
    const deltaBytes = o.deltaBytes ?? 800;
    const frames = speechFrames(spoken, { minFrames: Math.ceil((o.totalBytes ?? 4000) / FRAME_BYTES), hz: 440 });
    const audio = Buffer.concat(frames);
    const ids = { response_id: id, item_id: itemId, output_index: 0, content_index: 0 };
    this.send({ type: 'response.created', response: { object: 'realtime.response', id, status: 'in_progress', output: [] } });
    for (let off = 0; off < audio.length; off += deltaBytes) {
      this.send({ type: 'response.output_audio.delta', ...ids, delta: audio.subarray(off, off + deltaBytes).toString('base64') });
    }
    this.send({ type: 'response.output_audio.done', ...ids });
    this.send({ type: 'response.output_audio_transcript.done', ...ids, transcript: spoken });
    this.send({ type: 'response.done', response: { object: 'realtime.response', id, status: 'completed', output: [] } });
    return id;
  }

  waitForClient(pred: (e: ClientEvent) => boolean, timeoutMs = DEFAULT_WAIT_MS): Promise<ClientEvent> {
    return this.clientWaiters.wait(pred, timeoutMs, `a client event on session ${this.index}`, this.received);
  }

  async waitForServer(pred: (type: string, ev: Record<string, unknown> | undefined) => boolean, timeoutMs = DEFAULT_WAIT_MS): Promise<string> {
    const hit = await this.serverWaiters.wait((v) => pred(v.type, v.ev), timeoutMs, `a server event on session ${this.index}`);
    return hit.type;
  }
}

/**
 * Proxy mode: on session `session` (default the first), the response in which the model calls
 * `tool` is never done there as the model says: its `response.done` is held back and, once the relay
 * has answered the call (`function_call_output`), `act` decides what the relay gets instead (the
 * held event is passed to it). The tool ran and its effect stands.
 */
export function atToolOutput(
  tool: string,
  act: (conn: FaultConnection, heldDone: Record<string, unknown>) => void,
  session = 0,
): NonNullable<FaultModelOptions['onServerEvent']> {
  const calls = new Map<string, string>(); // response id -> call_id of its `tool` call
  return (conn, ev) => {
    if (conn.index !== session) return;
    const item = isObject(ev.item) ? ev.item : undefined;
    if (ev.type === 'response.output_item.done' && item?.type === 'function_call' && item.name === tool) {
      calls.set(String(ev.response_id), String(item.call_id));
    }
    const response = isObject(ev.response) ? ev.response : undefined;
    const callId = ev.type === 'response.done' ? calls.get(String(response?.id)) : undefined;
    if (callId === undefined) return;
    const answered = (e: ClientEvent): boolean => e.type === 'conversation.item.create' && isObject(e.item) && e.item.type === 'function_call_output' && e.item.call_id === callId;
    conn.waitForClient(answered).then(
      () => act(conn, ev),
      () => undefined,
    );
    return false;
  };
}

/** The session drops with no close frame once the relay answered `tool`: the session that would speak its answer is gone. */
export function dropBetweenToolOutputAndDone(tool: string, session = 0): NonNullable<FaultModelOptions['onServerEvent']> {
  return atToolOutput(tool, (conn) => conn.drop(), session);
}

/**
 * Once the relay answered `tool`, the response that called it ends `failed` for `code` (as the API
 * says it: status_details.error), a code that ends a call (quota, keys): the model cannot go on.
 */
export function failAfterToolOutput(tool: string, code = 'insufficient_quota'): NonNullable<FaultModelOptions['onServerEvent']> {
  return atToolOutput(tool, (conn, done) => {
    const response = isObject(done.response) ? done.response : {};
    conn.send({ type: 'response.done', response: { ...response, status: 'failed', status_details: { type: 'failed', error: { type: code, code } } } });
  });
}

/** Start a fault model on 127.0.0.1, port 0. */
export async function startFaultModel(o: FaultModelOptions = {}): Promise<FaultModel> {
  const sockets = new Set<Socket>();
  const connections: Connection[] = [];
  const connWaiters = new Waiters<Connection>();
  let attempts = 0;
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  const server: Server = createServer((_req, res) => {
    res.writeHead(426).end();
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const fault = o.upgrade?.(attempts++) ?? { kind: 'accept' };
    switch (fault.kind) {
      case 'hang':
        return;
      case 'reset':
        (socket as Socket).resetAndDestroy();
        return;
      case 'status': {
        const body = JSON.stringify({ error: { type: 'invalid_request_error', code: 'fault_injected', message: 'injected' } });
        socket.end(
          `HTTP/1.1 ${fault.status} ${STATUS_CODES[fault.status] ?? 'Error'}\r\nConnection: close\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
        return;
      }
      case 'accept':
        wss.handleUpgrade(req, socket, head, (ws) => {
          const conn = new Connection(connections.length, ws, o, req.url ?? '/', req.headers);
          connections.push(conn);
          o.script?.(conn);
          connWaiters.offer(conn);
        });
        return;
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}/v1/realtime`,
    get attempts() {
      return attempts;
    },
    connections,
    waitForConnection: (index, timeoutMs = DEFAULT_WAIT_MS) =>
      connWaiters.wait((c) => c.index === index, timeoutMs, `session ${index}`, connections),
    openConnections: () => connections.filter((c) => c.isOpen).length,
    async close() {
      for (const c of connections) c.drop();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
