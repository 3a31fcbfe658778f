/**
 * A GC'd heap reading from a child started with `--inspect=127.0.0.1:0`: finds the inspector URL on
 * its stderr, then sends exactly two DevTools calls (collectGarbage, memoryUsage). Spawning is run.ts's.
 */
import type { Readable } from 'node:stream';
import WebSocket from 'ws';

/** `process.memoryUsage()` of the child after a full GC, in bytes. */
export interface GcMemory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

const LISTENING = /Debugger listening on (ws:\/\/\S+)/;

/** The inspector URL in one chunk of stderr text, if it is there and on a loopback host. */
export function parseInspectorUrl(text: string): string | undefined {
  const m = LISTENING.exec(text);
  if (!m?.[1]) return undefined;
  const url = new URL(m[1]);
  // --inspect=127.0.0.1:0 binds loopback; anything else means the flag was changed, refuse it.
  if (url.hostname !== '127.0.0.1' && url.hostname !== '[::1]' && url.hostname !== 'localhost') return undefined;
  return m[1];
}

/**
 * Watches a child's stderr for "Debugger listening on ws://…" (Node prints it before running any of
 * the script) and resolves with the URL. Every chunk is also handed to `tee` (the run's log file).
 */
export function watchInspectorUrl(stderr: Readable, tee?: (chunk: Buffer) => void, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    let found = false;
    const timer = setTimeout(() => {
      if (!found) reject(new Error(`no "Debugger listening" line on stderr within ${timeoutMs} ms`));
    }, timeoutMs);
    const onEnd = (): void => {
      clearTimeout(timer);
      if (!found) reject(new Error('stderr ended before the inspector announced its URL'));
    };
    stderr.on('data', (chunk: Buffer) => {
      tee?.(chunk);
      if (found) return;
      // The line may be split across chunks; keep a bounded tail.
      seen = (seen + chunk.toString('utf8')).slice(-4096);
      const url = parseInspectorUrl(seen);
      if (url) {
        found = true;
        clearTimeout(timer);
        resolve(url);
      }
    });
    stderr.once('end', onEnd);
    stderr.once('close', onEnd);
  });
}

/**
 * Connects, forces a full GC (`HeapProfiler.collectGarbage`), reads `process.memoryUsage()` with
 * `Runtime.evaluate`, disconnects. No domain is enabled: no profiler, no debugger, no events, so the
 * child pays only for the GC itself. The connection is closed before returning because a Node process
 * with a session attached waits for the debugger to detach when it exits.
 */
export async function gcMemoryUsage(inspectorUrl: string, timeoutMs = 10_000): Promise<GcMemory> {
  const ws = new WebSocket(inspectorUrl, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  ws.on('message', (data: Buffer) => {
    const msg = JSON.parse(data.toString('utf8')) as { id?: number; result?: unknown; error?: { message?: string } };
    if (msg.id === undefined) return;
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(`inspector: ${msg.error.message ?? 'error'}`));
    else p.resolve(msg.result);
  });
  const failAll = (err: Error): void => {
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  ws.on('close', () => failAll(new Error('inspector connection closed')));
  ws.on('error', (err) => failAll(err));
  const call = (method: string, params: Record<string, unknown> = {}): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  const timer = setTimeout(() => {
    failAll(new Error(`inspector did not answer within ${timeoutMs} ms`));
    ws.terminate();
  }, timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await call('HeapProfiler.collectGarbage');
    const r = (await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true })) as {
      result?: { value?: unknown };
      exceptionDetails?: { text?: string };
    };
    if (r.exceptionDetails || typeof r.result?.value !== 'string') throw new Error(`inspector evaluate failed: ${r.exceptionDetails?.text ?? 'no value'}`);
    return JSON.parse(r.result.value) as GcMemory;
  } finally {
    clearTimeout(timer);
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
      const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      ws.close();
      await Promise.race([closed, new Promise<void>((resolve) => setTimeout(resolve, 1000).unref())]);
    }
  }
}
