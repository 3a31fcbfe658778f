/**
 * A real redis-server child process on a loopback port (no persistence, no config file), for
 * `npm run load`'s rolling-restart scenario and the tests. Needs `redis-server` on PATH.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** A port free on 127.0.0.1 right now (another process may take it before it is used). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Start a server on a port from freePort. The port is picked before the server listens (a relay's
 * PUBLIC_URL must name it first), so another process can take it in between: a start that fails
 * with "cannot listen on" (the relay's listen_failed) is tried again on a fresh port, up to
 * `attempts` times; any other failure is thrown at once.
 */
export async function onFreshPort<T>(start: (port: number) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (err) {
      if (attempt >= attempts || !(err instanceof Error) || !err.message.includes('cannot listen on')) throw err;
    }
  }
}

export interface RedisServerOptions {
  /** More redis-server arguments, e.g. ['--requirepass', 'pw']. */
  args?: readonly string[];
  /** Serve TLS only (rediss://) with this PEM certificate and key; clients need not present one. */
  tls?: { certFile: string; keyFile: string; caFile: string };
}

/** Whether `redis-server` can be run from PATH. */
export function redisServerOnPath(): boolean {
  const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

function serverArgs(port: number, o: RedisServerOptions): string[] {
  const listen = o.tls
    ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', o.tls.certFile, '--tls-key-file', o.tls.keyFile,
       '--tls-ca-cert-file', o.tls.caFile, '--tls-auth-clients', 'no']
    : ['--port', String(port)];
  return [...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', ...(o.args ?? [])];
}

/** Start redis-server on `port`; resolves once it accepts connections. */
export function launchRedis(port: number, o: RedisServerOptions = {}): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-server', serverArgs(port, o), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server did not start on port ${port}: ${out.slice(-500)}`));
    }, 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${out.slice(-500)}`));
    });
  });
}

/** Resolves once the child has exited. */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

