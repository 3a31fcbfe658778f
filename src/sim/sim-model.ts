/**
 * The simulated realtime model: a real `ws` WebSocket server speaking the OpenAI Realtime GA protocol
 * (and Azure's preview beta shape) with energy VAD, barge-in, tool calls and μ-law replies whose
 * first frames carry the reply text. This file is the server (endpoints, API keys, upgrade faults,
 * the tests' waiters); one session is sim-connection.ts (the client events it serves:
 * sim-client-events.ts); what to say lives in sim-model-script.ts.
 */
import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocketServer } from 'ws';
import type { SimMode } from './sim-model-script.js';
import { SimConnection, type SimConnectionHost } from './sim-connection.js';
import type { SimModelOptions, SimSession } from './sim-options.js';

export type { SimMode } from './sim-model-script.js';
export type { SimModelOptions, SimSession } from './sim-options.js';

export interface SimModel {
  /** ws://127.0.0.1:PORT/v1/realtime (wss:// with `tls`) */
  readonly url: string;
  readonly port: number;
  /** Upgrades that arrived over TLS (proves a client spoke wss, not ws). */
  readonly tlsUpgrades: number;
  /** Sessions in arrival order; beyond 1000, the oldest closed ones are forgotten (long load runs). */
  readonly sessions: readonly SimSession[];
  /** Resolves when a session satisfying `pred` exists (bounded by timeoutMs, rejects after). */
  waitForSession(pred?: (s: SimSession) => boolean, timeoutMs?: number): Promise<SimSession>;
  /** Resolves when session `s` has received an event matching pred. */
  waitForEvent(
    s: SimSession,
    pred: (e: SimSession['received'][number]) => boolean,
    timeoutMs?: number,
  ): Promise<SimSession['received'][number]>;
  /** Open sessions and pending timers: lets tests prove close() leaves nothing behind. */
  stats(): { openSessions: number; timers: number; sockets: number };
  /** Kill session `id`'s TCP connection with no close frame (a network drop). */
  dropSession(id: string): void;
  close(): Promise<void>;
}

const RETAINED_SESSIONS = 1000;
const DEFAULT_WAIT_MS = 5000;

/** Start a simulated realtime model on 127.0.0.1 (port 0 unless given). */
export async function startSimModel(o: SimModelOptions = {}): Promise<SimModel> {
  const model = new SimModelServer(o);
  await model.listen();
  return model;
}

class SimModelServer implements SimModel, SimConnectionHost {
  readonly mode: SimMode;
  readonly opts: SimModelOptions;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly sockets = new Set<Socket>();
  readonly conns = new Set<SimConnection>();
  private readonly list: SimSession[] = [];
  private readonly waiters = new Set<{ check(): boolean; fail(err: Error): void }>();
  private readonly idPrefix = randomBytes(4).toString('hex');
  private idCounter = 0;
  private closing = false;
  port = 0;
  tlsUpgrades = 0;

  constructor(o: SimModelOptions) {
    if (o.deltaMs !== undefined && !(Number.isInteger(o.deltaMs) && o.deltaMs >= 1)) {
      throw new RangeError(`deltaMs must be a positive whole number of milliseconds, got ${o.deltaMs}`);
    }
    if (o.gapMs !== undefined && !(Number.isInteger(o.gapMs) && o.gapMs >= 0)) {
      throw new RangeError(`gapMs must be a whole number of milliseconds >= 0, got ${o.gapMs}`);
    }
    this.opts = o;
    this.mode = o.mode ?? 'realistic';
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
    const notUpgrade = (_req: IncomingMessage, res: ServerResponse): void => {
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
      res.end('WebSocket upgrade required\n');
    };
    this.server = o.tls ? createTlsServer({ key: o.tls.key, cert: o.tls.cert }, notUpgrade) : createServer(notUpgrade);
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
  }

  get url(): string {
    return `${this.opts.tls ? 'wss' : 'ws'}://127.0.0.1:${this.port}/v1/realtime`;
  }

  get sessions(): readonly SimSession[] {
    return this.list;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private failuresLeft: number | undefined;
  private stalledSessions = 0;

  /** Whether a session that has finished its `afterResponses` responses must fall silent now. */
  takeStall(): 'dead' | 'deaf' | undefined {
    const f = this.opts.faults?.stall;
    if (!f || this.stalledSessions >= (f.sessions ?? 1)) return undefined;
    this.stalledSessions++;
    return f.mode;
  }

  /** The error of the next response that must fail (faults.failResponses), or undefined. */
  takeResponseFailure(): Record<string, unknown> | undefined {
    const f = this.opts.faults?.failResponses;
    if (!f) return undefined;
    this.failuresLeft ??= f.count;
    if (this.failuresLeft <= 0) return undefined;
    this.failuresLeft--;
    return f.error ?? { type: 'server_error', code: null, message: 'The server had an error while processing your request. Sorry about that!' };
  }

  newId(prefix: string): string {
    return `${prefix}_${this.idPrefix}${(this.idCounter++).toString(36)}`;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    if ((req.socket as { encrypted?: boolean }).encrypted === true) this.tlsUpgrades++;
    const faults = this.opts.faults;
    if (this.closing) return void socket.destroy();
    if (faults?.acceptButNeverUpgrade) return;
    if (faults?.upgradeStatus !== undefined) return reject(socket, faults.upgradeStatus, 'fault_injected', 'Injected fault');
    const url = new URL(req.url ?? '/', 'http://sim');
    const path = url.pathname.replace(/\/+$/, '');
    let shape: 'ga' | 'beta';
    if (path === '/v1/realtime' || path === '/openai/v1/realtime') shape = 'ga';
    else if (path === '/openai/realtime') shape = 'beta';
    else return reject(socket, 404, 'not_found', `No realtime endpoint at ${url.pathname}`);
    if (this.opts.apiKey !== undefined) {
      const auth = req.headers.authorization;
      const bearer = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
      const apiKeyHeader = req.headers['api-key'];
      const key = bearer ?? (typeof apiKeyHeader === 'string' ? apiKeyHeader : undefined) ?? url.searchParams.get('api-key');
      if (key !== this.opts.apiKey) {
        return reject(socket, 401, 'invalid_api_key', 'Incorrect API key provided.');
      }
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const model = url.searchParams.get('model') ?? url.searchParams.get('deployment') ?? 'gpt-realtime';
      const conn = new SimConnection(this, ws, url.pathname + url.search, shape, model);
      this.conns.add(conn);
      this.list.push(conn.info);
      this.prune();
      this.opts.log?.debug({ session: conn.info.id, path: conn.info.path, shape }, 'sim model session opened');
      this.notify();
    });
  }

  private prune(): void {
    if (this.list.length <= RETAINED_SESSIONS) return;
    for (let i = 0; i < this.list.length && this.list.length > RETAINED_SESSIONS; ) {
      if (this.list[i]?.closed) this.list.splice(i, 1);
      else i++;
    }
  }

  connectionClosed(conn: SimConnection): void {
    this.conns.delete(conn);
    this.notify();
  }

  notify(): void {
    if (this.waiters.size === 0) return;
    for (const w of this.waiters) if (w.check()) this.waiters.delete(w);
  }

  private waitFor<T>(find: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const found = find();
    if (found !== undefined) return Promise.resolve(found);
    if (this.closing) return Promise.reject(new Error(`sim model closed while waiting for ${what}`));
    return new Promise<T>((resolve, rejectP) => {
      const waiter = {
        check: (): boolean => {
          const v = find();
          if (v === undefined) return false;
          clearTimeout(timer);
          resolve(v);
          return true;
        },
        fail: (err: Error): void => {
          clearTimeout(timer);
          rejectP(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        rejectP(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  waitForSession(pred: (s: SimSession) => boolean = () => true, timeoutMs = DEFAULT_WAIT_MS): Promise<SimSession> {
    return this.waitFor(() => this.list.find(pred), timeoutMs, 'a sim model session');
  }

  waitForEvent(
    s: SimSession,
    pred: (e: SimSession['received'][number]) => boolean,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<SimSession['received'][number]> {
    return this.waitFor(() => s.received.find(pred), timeoutMs, `an event on sim session ${s.id}`);
  }

  dropSession(id: string): void {
    for (const c of this.conns) if (c.info.id === id) c.terminate();
  }

  stats(): { openSessions: number; timers: number; sockets: number } {
    let timers = 0;
    for (const c of this.conns) timers += c.timerCount();
    return { openSessions: this.conns.size, timers, sockets: this.sockets.size };
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const c of [...this.conns]) c.terminate();
    for (const s of this.sockets) s.destroy();
    const err = new Error('sim model closed');
    for (const w of this.waiters) w.fail(err);
    this.waiters.clear();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function reject(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { type: 'invalid_request_error', code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
