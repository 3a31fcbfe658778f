import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import { pino } from 'pino';
import {
  connectRealtime,
  modelEndpoint,
  type ModelEndpoint,
  type RealtimeSocket,
} from '../../src/model/index.js';
import { SwitchboardError } from '../../src/errors.js';
import { silentLogger } from '../../src/telemetry/index.js';

const log = silentLogger();
const noBackoff = (): number => 1;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function port(server: net.Server | Server): number {
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no port');
  return a.port;
}

async function listen<S extends net.Server>(server: S): Promise<S> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return server;
}

/** An HTTP server whose upgrades are answered by `answer` (a status, or 'accept' for a WebSocket). */
async function upgradeServer(answer: (n: number, req: IncomingMessage) => number | 'accept') {
  const wss = new WebSocketServer({ noServer: true });
  const seen: IncomingMessage[] = [];
  const accepted: WebSocket[] = [];
  const http = createServer();
  http.on('upgrade', (req: IncomingMessage, socket: net.Socket, head: Buffer) => {
    seen.push(req);
    const a = answer(seen.length, req);
    if (a === 'accept') {
      wss.handleUpgrade(req, socket, head, (ws) => {
        accepted.push(ws);
        wss.emit('connection', ws, req);
      });
    } else {
      socket.end(
        `HTTP/1.1 ${a} Nope\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
      );
    }
  });
  await listen(http);
  cleanups.push(() => {
    for (const ws of accepted) ws.terminate();
    wss.close();
  });
  return { url: `ws://127.0.0.1:${port(http)}/v1/realtime`, seen, accepted, wss };
}

function ep(url: string, headers: Record<string, string> = { Authorization: 'Bearer k' }): ModelEndpoint {
  return { url, headers, shape: 'ga', provider: 'openai' };
}

async function rejection(p: Promise<unknown>): Promise<SwitchboardError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchboardError);
    return err as SwitchboardError;
  }
  throw new Error('expected a rejection');
}

function track(s: RealtimeSocket): RealtimeSocket {
  cleanups.push(() => s.close());
  return s;
}

describe('modelEndpoint', () => {
  it('openai: model in the query, Bearer, no OpenAI-Beta', () => {
    const e = modelEndpoint({
      provider: 'openai',
      url: 'wss://api.openai.com/v1/realtime',
      apiKey: 'sk-1',
      model: 'gpt-realtime',
    });
    expect(e).toEqual({
      url: 'wss://api.openai.com/v1/realtime?model=gpt-realtime',
      headers: { Authorization: 'Bearer sk-1' },
      shape: 'ga',
      provider: 'openai',
    });
    const q = modelEndpoint({
      provider: 'openai',
      url: 'wss://gw.example/v1/realtime?x=1',
      apiKey: 'k',
      model: 'm',
    });
    expect(q.url).toBe('wss://gw.example/v1/realtime?x=1&model=m');
    const keep = modelEndpoint({
      provider: 'openai',
      url: 'wss://gw.example/v1/realtime?model=pinned',
      apiKey: 'k',
      model: 'm',
    });
    expect(keep.url).toBe('wss://gw.example/v1/realtime?model=pinned');
  });

  it('azure: URL as configured, api-key header, shape from config', () => {
    const url = 'wss://r.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=d';
    expect(modelEndpoint({ provider: 'azure', url, apiKey: 'az', deployment: 'd', shape: 'beta' })).toEqual({
      url,
      headers: { 'api-key': 'az' },
      shape: 'beta',
      provider: 'azure',
    });
    expect(modelEndpoint({ provider: 'azure', url, apiKey: 'az', deployment: 'd', shape: 'ga' }).shape).toBe(
      'ga',
    );
  });

  it('sim: the sim URL with model=sim', () => {
    expect(modelEndpoint({ provider: 'sim', mode: 'loadtest' }, 'ws://127.0.0.1:9/model')).toEqual({
      url: 'ws://127.0.0.1:9/model?model=sim',
      headers: { Authorization: 'Bearer sim' },
      shape: 'ga',
      provider: 'sim',
    });
    expect(() => modelEndpoint({ provider: 'sim', mode: 'loadtest' })).toThrow(SwitchboardError);
  });
});

describe('connectRealtime', () => {
  it('opens with the right URL and headers and relays Buffers both ways', async () => {
    const srv = await upgradeServer(() => 'accept');
    const serverSide = once(srv.wss, 'connection') as Promise<[WebSocket, IncomingMessage]>;
    const e = modelEndpoint({ provider: 'openai', url: srv.url, apiKey: 'sk-test', model: 'gpt-realtime' });
    const sock = track(await connectRealtime(e, { timeoutMs: 2000, attempts: 1, log }));
    expect(sock.isOpen).toBe(true);
    const [ws, req] = await serverSide;
    expect(req.url).toBe('/v1/realtime?model=gpt-realtime');
    expect(req.headers.authorization).toBe('Bearer sk-test');
    expect(req.headers['openai-beta']).toBeUndefined();
    expect(req.headers['sec-websocket-extensions']).toBeUndefined(); // perMessageDeflate off

    const got = new Promise<Buffer>((resolve) => sock.onMessage(resolve));
    ws.send('{"type":"session.created"}');
    const data = await got;
    expect(Buffer.isBuffer(data)).toBe(true);
    expect(data.toString()).toBe('{"type":"session.created"}');

    const echoed = once(ws, 'message') as Promise<[Buffer, boolean]>;
    sock.send('{"type":"session.update"}');
    const [msg, isBinary] = await echoed;
    expect(isBinary).toBe(false); // text frame
    // Every client event but an audio append gets an event_id, remembered for error correlation.
    const sent = JSON.parse(msg.toString()) as { type: string; event_id: string };
    expect(sent.type).toBe('session.update');
    expect(sock.clientEventType?.(sent.event_id)).toBe('session.update');
    const append = once(ws, 'message') as Promise<[Buffer, boolean]>;
    sock.send('{"type":"input_audio_buffer.append","audio":"//8="}');
    expect((await append)[0].toString()).toBe('{"type":"input_audio_buffer.append","audio":"//8="}');
    expect(sock.bufferedAmount).toBe(0);
  });

  it('Azure sends api-key and no Authorization', async () => {
    const srv = await upgradeServer(() => 'accept');
    const serverSide = once(srv.wss, 'connection') as Promise<[WebSocket, IncomingMessage]>;
    const url = `${srv.url.replace('/v1/realtime', '/openai/realtime')}?api-version=2025-04-01-preview&deployment=dep`;
    const e = modelEndpoint({ provider: 'azure', url, apiKey: 'az-key', deployment: 'dep', shape: 'beta' });
    track(await connectRealtime(e, { timeoutMs: 2000, attempts: 1, log }));
    const [, req] = await serverSide;
    expect(req.headers['api-key']).toBe('az-key');
    expect(req.headers.authorization).toBeUndefined();
    expect(req.url).toBe('/openai/realtime?api-version=2025-04-01-preview&deployment=dep');
  });

  it('keeps messages sent before onMessage (session.created races the open)', async () => {
    const srv = await upgradeServer(() => 'accept');
    srv.wss.on('connection', (ws: WebSocket) => {
      ws.send('one');
      ws.send('two');
    });
    const sock = track(await connectRealtime(ep(srv.url), { timeoutMs: 2000, attempts: 1, log }));
    // Let the server's frames land before listening (no event exists for "arrived, unheard").
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const got: string[] = [];
    await new Promise<void>((resolve) =>
      sock.onMessage((d) => {
        got.push(d.toString());
        if (got.length === 2) resolve();
      }),
    );
    expect(got).toEqual(['one', 'two']);
  });

  it('times out when the server accepts TCP but never answers the upgrade, per attempt', async () => {
    let connections = 0;
    const srv = await listen(net.createServer(() => connections++));
    const t0 = performance.now();
    const err = await rejection(
      connectRealtime(ep(`ws://127.0.0.1:${port(srv)}/`), {
        timeoutMs: 150,
        attempts: 2,
        backoffMs: noBackoff,
        log,
      }),
    );
    expect(err.code).toBe('model_unreachable');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/after 2 attempts: connect timed out/);
    expect(connections).toBe(2);
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('retries a refused port `attempts` times, then model_unreachable with the cause', async () => {
    const probe = await listen(net.createServer());
    const free = port(probe);
    await new Promise<void>((r) => probe.close(() => r()));
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const captured = pino({ level: 'warn' }, sink);
    const err = await rejection(
      connectRealtime(ep(`ws://127.0.0.1:${free}/`, { Authorization: 'Bearer sk-secret' }), {
        timeoutMs: 1000,
        attempts: 3,
        backoffMs: noBackoff,
        log: captured,
      }),
    );
    expect(err.code).toBe('model_unreachable');
    expect(err.message).toContain('ECONNREFUSED');
    expect(err.cause).toBeInstanceOf(Error);
    const attempts = lines.map((l) => JSON.parse(l) as { msg: string; attempt: number });
    expect(attempts.map((a) => [a.msg, a.attempt])).toEqual([
      ['model connect attempt failed', 1],
      ['model connect attempt failed', 2],
      ['model connect attempt failed', 3],
    ]);
    expect(lines.join('')).not.toContain('sk-secret');
  });

  it('does not retry 401 or 403', async () => {
    for (const status of [401, 403]) {
      const srv = await upgradeServer(() => status);
      const err = await rejection(
        connectRealtime(ep(srv.url), { timeoutMs: 2000, attempts: 3, backoffMs: noBackoff, log }),
      );
      expect(err.code).toBe('model_auth');
      expect(err.retryable).toBe(false);
      expect(srv.seen).toHaveLength(1);
    }
  });

  it('does not retry other 4xx', async () => {
    const srv = await upgradeServer(() => 404);
    const err = await rejection(
      connectRealtime(ep(srv.url), { timeoutMs: 2000, attempts: 3, backoffMs: noBackoff, log }),
    );
    expect(err.code).toBe('model_unreachable');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('HTTP 404');
    expect(srv.seen).toHaveLength(1);
  });

  it('retries 503 and 429, then succeeds', async () => {
    const srv = await upgradeServer((n) => (n === 1 ? 503 : n === 2 ? 429 : 'accept'));
    const waits: number[] = [];
    const sock = track(
      await connectRealtime(ep(srv.url), {
        timeoutMs: 2000,
        attempts: 3,
        backoffMs: (n) => {
          waits.push(n);
          return 1;
        },
        log,
      }),
    );
    expect(sock.isOpen).toBe(true);
    expect(srv.seen).toHaveLength(3);
    expect(waits).toEqual([0, 1]);
  });

  it('gives up after attempts on repeated 5xx, retryable', async () => {
    const srv = await upgradeServer(() => 502);
    const err = await rejection(
      connectRealtime(ep(srv.url), { timeoutMs: 2000, attempts: 2, backoffMs: noBackoff, log }),
    );
    expect(err.code).toBe('model_unreachable');
    expect(err.retryable).toBe(true);
    expect(srv.seen).toHaveLength(2);
  });

  it('abort during connect rejects at once and closes the half-open socket', async () => {
    const srv = net.createServer();
    const serverSockets: net.Socket[] = [];
    srv.on('connection', (s: net.Socket) => serverSockets.push(s));
    await listen(srv);
    const ac = new AbortController();
    const p = connectRealtime(ep(`ws://127.0.0.1:${port(srv)}/`), {
      timeoutMs: 10_000,
      attempts: 3,
      signal: ac.signal,
      log,
    });
    const [s] = (await once(srv, 'connection')) as [net.Socket];
    const closed = once(s, 'close');
    ac.abort(new Error('caller hung up'));
    const err = await rejection(p);
    expect(err.code).toBe('model_unreachable');
    expect(err.retryable).toBe(false);
    expect((err.cause as Error).message).toBe('caller hung up');
    await closed;
    expect(serverSockets).toHaveLength(1);
  });

  it('abort during backoff stops the retries', async () => {
    const srv = await upgradeServer(() => 503);
    const ac = new AbortController();
    const err = await rejection(
      connectRealtime(ep(srv.url), {
        timeoutMs: 2000,
        attempts: 5,
        signal: ac.signal,
        backoffMs: () => {
          ac.abort();
          return 60_000;
        },
        log,
      }),
    );
    expect(err.message).toBe('model connect aborted');
    expect(srv.seen).toHaveLength(1);
  });

  it('a URL ws cannot use is model_unreachable, not a raw throw', async () => {
    const err = await rejection(
      connectRealtime(ep('ftp://127.0.0.1/x'), { timeoutMs: 2000, attempts: 3, log }),
    );
    expect(err.code).toBe('model_unreachable');
    expect(err.retryable).toBe(false);
  });

  it('an already-aborted signal connects nowhere', async () => {
    const srv = await upgradeServer(() => 'accept');
    const err = await rejection(
      connectRealtime(ep(srv.url), { timeoutMs: 2000, attempts: 1, signal: AbortSignal.abort(), log }),
    );
    expect(err.message).toBe('model connect aborted');
    expect(srv.seen).toHaveLength(0);
  });
});

describe('RealtimeSocket', () => {
  it('close() is idempotent: one close frame, one onClose', async () => {
    const srv = await upgradeServer(() => 'accept');
    const serverSide = once(srv.wss, 'connection') as Promise<[WebSocket]>;
    const sock = await connectRealtime(ep(srv.url), { timeoutMs: 2000, attempts: 1, log });
    const [ws] = await serverSide;
    const serverClosed = once(ws, 'close') as Promise<[number, Buffer]>;
    const closes: [number, string][] = [];
    const closedOnce = new Promise<void>((resolve) =>
      sock.onClose((code, reason) => {
        closes.push([code, reason]);
        resolve();
      }),
    );
    sock.close(4010, 'call over');
    sock.close(1000, 'again');
    sock.close();
    const [code, reason] = await serverClosed;
    expect([code, reason.toString()]).toEqual([4010, 'call over']);
    await closedOnce;
    sock.close();
    expect(closes).toEqual([[4010, 'call over']]);
    expect(sock.isOpen).toBe(false);
    sock.send('late');
    sock.send('later');
    expect(sock.droppedSends).toBe(2);
    expect(() => sock.onClose(() => undefined)).toThrow(SwitchboardError);
  });

  it('terminates when the peer never answers the close frame (bounded)', async () => {
    // A raw server that completes the upgrade by hand and then ignores everything.
    const srv = net.createServer((s) => {
      s.once('data', (buf: Buffer) => {
        const key = /sec-websocket-key: (.+)\r\n/i.exec(buf.toString())?.[1] ?? '';
        const accept = createHash('sha1')
          .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
          .digest('base64');
        s.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
        );
      });
    });
    await listen(srv);
    const sock = await connectRealtime(ep(`ws://127.0.0.1:${port(srv)}/`), {
      timeoutMs: 2000,
      attempts: 1,
      closeTimeoutMs: 100,
      log,
    });
    const t0 = performance.now();
    const closed = new Promise<number>((resolve) => sock.onClose((code) => resolve(code)));
    sock.close(1000);
    expect(await closed).toBe(1006);
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('reports a server-side close with its code and reason', async () => {
    const srv = await upgradeServer(() => 'accept');
    srv.wss.on('connection', (ws: WebSocket) => ws.close(1001, 'session_expired'));
    const sock = await connectRealtime(ep(srv.url), { timeoutMs: 2000, attempts: 1, log });
    const [code, reason] = await new Promise<[number, string]>((resolve) =>
      sock.onClose((c, r) => resolve([c, r])),
    );
    expect([code, reason]).toEqual([1001, 'session_expired']);
  });
});
