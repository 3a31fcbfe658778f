/**
 * A Kubernetes Service on loopback: a TCP proxy on 127.0.0.1 that hands each new connection to one
 * of several relays whose `GET /readyz` answers 200, polled every `pollMs` (endpoints follow
 * readiness). A relay that answers anything else, or does not answer, gets no new connections;
 * connections already proxied to it stay up until either side closes them, as with kube-proxy. A
 * connect it refuses (killed, not yet polled) is retried on another ready relay, as an ingress would.
 * Relays behind it share one PUBLIC_URL, the service's URL, so signatures and stream URLs are the
 * ones Twilio would use. Used by the rolling-restart load scenario and multi-relay tests.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface LoopbackServiceOptions {
  /** Relay base URLs (http://127.0.0.1:PORT) to start with. */
  backends?: readonly string[];
  /** Readiness poll period (default 200 ms). */
  pollMs?: number;
  /** Listen on this port (default: a free one). */
  port?: number;
}

export interface BackendState {
  url: string;
  ready: boolean;
  /** Connections handed to it in all, and still open. */
  total: number;
  open: number;
}

export interface LoopbackService {
  /** http://127.0.0.1:PORT: every relay's PUBLIC_URL. */
  url: string;
  port: number;
  add(backendUrl: string): void;
  /** Stop routing to it at once (its open connections stay). */
  remove(backendUrl: string): void;
  backends(): BackendState[];
  /** Resolves once `check` holds for the backends (polled every 20 ms, bounded by `timeoutMs`). */
  waitFor(check: (b: BackendState[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Cut every open connection to this backend without a goodbye (TCP reset): a node lost. */
  sever(backendUrl: string): void;
  /** Connections refused because no backend was ready. */
  readonly refused: number;
  close(): Promise<void>;
}

interface Backend extends BackendState {
  host: string;
  port: number;
  conns: Set<Conn>;
  polling: boolean;
  /** Out of the service (remove()): never routed to or polled again, its connections still tracked. */
  removed: boolean;
}

interface Conn {
  client: Socket;
  upstream: Socket;
  lastActivity: number;
}

/** A keep-alive connection idle this long to a backend out of rotation is closed (a media stream never is). */
const IDLE_CLOSE_MS = 500;

function parseBackend(url: string): { host: string; port: number } {
  const u = new URL(url);
  if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') throw new Error(`loopback service: backends must be on loopback (got ${url})`);
  const port = Number(u.port);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`loopback service: backend URL needs a port (got ${url})`);
  return { host: '127.0.0.1', port };
}

export async function startLoopbackService(opts: LoopbackServiceOptions = {}): Promise<LoopbackService> {
  const pollMs = opts.pollMs ?? 200;
  const backends = new Map<string, Backend>();
  let next = 0;
  let refused = 0;
  let closed = false;

  const key = (url: string): string => url.replace(/\/+$/, '');

  async function poll(b: Backend): Promise<void> {
    if (b.polling) return;
    b.polling = true;
    try {
      const res = await fetch(`${b.url}/readyz`, { signal: AbortSignal.timeout(Math.max(100, pollMs * 2)) });
      await res.arrayBuffer();
      b.ready = res.status === 200 && !b.removed;
    } catch {
      b.ready = false;
    } finally {
      b.polling = false;
    }
    if (!b.ready) {
      // Out of rotation: idle keep-alive connections are not reused for new requests.
      const now = Date.now();
      for (const c of b.conns) if (now - c.lastActivity >= IDLE_CLOSE_MS) c.client.destroy();
    }
  }
  const timer = setInterval(() => {
    for (const b of backends.values()) if (!b.removed) void poll(b);
  }, pollMs);

  function pick(skip: ReadonlySet<Backend>): Backend | undefined {
    const ready = [...backends.values()].filter((b) => b.ready && !b.removed && !skip.has(b));
    if (ready.length === 0) return undefined;
    next = (next + 1) % ready.length;
    return ready[next];
  }

  /**
   * Hand `client` to a ready backend. A refused or failed connect (a killed relay still in rotation
   * until the next poll) takes that backend out of rotation and tries the next ready one, as an
   * ingress does (nginx `proxy_next_upstream error`): nothing was sent upstream yet, so nothing is
   * lost. The client is read only once the upstream connection is up.
   */
  function route(client: Socket, tried: Set<Backend>): void {
    const b = pick(tried);
    if (!b) {
      refused++;
      client.destroy();
      return;
    }
    tried.add(b);
    const upstream = connect({ host: b.host, port: b.port });
    const early = (): void => {
      upstream.destroy();
      b.ready = false;
      if (!client.destroyed) route(client, tried);
    };
    upstream.once('error', early);
    upstream.once('connect', () => {
      upstream.off('error', early);
      if (client.destroyed) {
        upstream.destroy();
        return;
      }
      relay(client, upstream, b);
    });
  }

  function relay(client: Socket, upstream: Socket, b: Backend): void {
    const conn: Conn = { client, upstream, lastActivity: Date.now() };
    b.conns.add(conn);
    b.total++;
    b.open++;
    const touch = (): void => {
      conn.lastActivity = Date.now();
    };
    client.on('data', touch);
    upstream.on('data', touch);
    client.pipe(upstream);
    upstream.pipe(client);
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      b.conns.delete(conn);
      b.open--;
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }

  const server: Server = createServer((client) => {
    // A client gone before its upstream connected: nothing to clean up but the socket.
    client.on('error', () => client.destroy());
    route(client, new Set());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  const svc: LoopbackService = {
    url: `http://127.0.0.1:${port}`,
    port,
    add(backendUrl) {
      const url = key(backendUrl);
      const known = backends.get(url);
      if (known) {
        known.removed = false;
        void poll(known);
        return;
      }
      const b: Backend = { url, ...parseBackend(url), ready: false, total: 0, open: 0, conns: new Set(), polling: false, removed: false };
      backends.set(url, b);
      void poll(b);
    },
    remove(backendUrl) {
      const b = backends.get(key(backendUrl));
      if (!b) return;
      b.ready = false;
      b.removed = true;
    },
    backends: () => [...backends.values()].filter((b) => !b.removed).map(({ url, ready, total, open }) => ({ url, ready, total, open })),
    async waitFor(check, timeoutMs = 5000, what = 'backends') {
      const deadline = Date.now() + timeoutMs;
      while (!check(svc.backends())) {
        if (Date.now() > deadline || closed) throw new Error(`loopback service: timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(svc.backends())}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    sever(backendUrl) {
      const b = backends.get(key(backendUrl));
      for (const c of b ? [...b.conns] : []) c.client.resetAndDestroy();
    },
    get refused() {
      return refused;
    },
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        clearInterval(timer);
        for (const b of backends.values()) for (const c of [...b.conns]) c.client.destroy();
        server.close(() => resolve());
      }),
  };
  for (const u of opts.backends ?? []) svc.add(u);
  return svc;
}
