/**
 * A Kubernetes-like deployment on loopback, for `npm run load -- --scenario rolling-restart` and
 * multi-pod tests: one real redis-server, N relay processes (`node --import tsx src/main.ts`, each
 * its own pod) sharing it and one STREAM_TOKEN_SECRET, the loopback service in front of them (their
 * common PUBLIC_URL; endpoints follow /readyz), and the simulated Twilio REST API as their
 * TWILIO_API_BASE_URL. Relays are stopped as Kubernetes stops pods: SIGTERM, then SIGKILL after the
 * grace period. Loopback only; every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { processEnvironment } from '../../src/config.js';
import { startFakeTwilioApi, type FakeTwilioApi } from './fake-twilio-api.js';
import { startLoopbackService, type LoopbackService } from './loopback-service.js';
import { exited, freePort, launchRedis, onFreshPort, redisServerOnPath } from './redis-process.js';

const ROOT = join(import.meta.dirname, '../..');

/** Start a relay process with `env` on top of this one's; resolves once it logs that it listens. */
export async function spawnRelay(env: Record<string, string>, startTimeoutMs = 90_000): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...processEnvironment(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let onData: ((d: Buffer) => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`relay process did not start: ${out.slice(-1000)}`)), startTimeoutMs);
      onData = (d: Buffer): void => {
        out += d.toString();
        if (out.length > 64_000) out = out.slice(-16_000);
        if (out.includes('"relay listening"')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`relay process exited with ${code}: ${out.slice(-1000)}`));
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    if (onData) {
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
    }
  }
  // Output past start-up is not read here: keep the pipes flowing so the relay never blocks on them.
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

export interface ClusterRelay {
  url: string;
  child: ChildProcess;
  startedAt: number;
}

export interface RelayStop {
  url: string;
  signal: 'SIGTERM' | 'SIGKILL';
  /** Live calls on the relay (its switchboard_active_calls) just before the signal; null if unreadable. */
  callsAtSignal: number | null;
  /** Signal -> no connection left through the service to it (its calls gone: moved or ended). */
  emptyMs: number | null;
  /** Signal -> process exit. */
  exitMs: number;
  exitCode: number | null;
  /** It outlived the grace period and was SIGKILLed. */
  killed: boolean;
}

export interface LocalClusterOptions {
  relays: number;
  /** More environment for every relay (e.g. DRAIN_MODE, DRAIN_TIMEOUT_SECONDS, TENANTS_FILE). */
  env?: Record<string, string>;
  /** Accounts the simulated Twilio API accepts (AccountSid -> auth token). */
  accounts: Record<string, string>;
  /** Readiness poll of the service (default 200 ms). */
  pollMs?: number;
}

export interface LocalCluster {
  service: LoopbackService;
  api: FakeTwilioApi;
  redisUrl: string;
  /** The relays running now, oldest first. */
  relays: ClusterRelay[];
  /** Start one more relay and wait until the service routes to it. */
  startRelay(): Promise<ClusterRelay>;
  /** Stop it as Kubernetes would: the signal, then SIGKILL after `graceMs`; removed from the service. */
  stopRelay(r: ClusterRelay, o?: { signal?: 'SIGTERM' | 'SIGKILL'; graceMs?: number }): Promise<RelayStop>;
  close(): Promise<void>;
}

async function activeCalls(url: string): Promise<number | null> {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
    const m = /^switchboard_active_calls(?:\{[^}]*\})? (\d+(?:\.\d+)?)$/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export async function startLocalCluster(o: LocalClusterOptions): Promise<LocalCluster> {
  if (!redisServerOnPath()) {
    throw new Error('needs redis-server on PATH (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)');
  }
  const redisPort = await freePort();
  const redis = await launchRedis(redisPort);
  const service = await startLoopbackService(o.pollMs !== undefined ? { pollMs: o.pollMs } : {});
  const api = await startFakeTwilioApi({ accounts: o.accounts });
  const secret = randomBytes(24).toString('hex');
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const relays: ClusterRelay[] = [];
  // Never leave processes behind, even when the driver exits without close() (a killed test worker).
  const orphans = (): void => {
    for (const r of relays) r.child.kill('SIGKILL');
    redis.kill('SIGKILL');
  };
  process.once('exit', orphans);

  async function startRelay(): Promise<ClusterRelay> {
    // The port is picked before the relay listens: lose it to another process, try a fresh one.
    const env = (port: number): Record<string, string> => ({
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: service.url,
      REDIS_URL: redisUrl,
      STREAM_TOKEN_SECRET: secret,
      TWILIO_API_BASE_URL: api.url,
      SIM_MODEL_MODE: 'loadtest',
      // Start-up is read from the "relay listening" line (info); later output is discarded.
      LOG_LEVEL: 'info',
      ...o.env,
    });
    const { port, child } = await onFreshPort(async (port) => ({ port, child: await spawnRelay(env(port)) }));
    const r: ClusterRelay = { url: `http://127.0.0.1:${port}`, child, startedAt: Date.now() };
    relays.push(r);
    service.add(r.url);
    await service.waitFor((b) => b.some((x) => x.url === r.url && x.ready), 30_000, `${r.url} ready`);
    return r;
  }

  async function stopRelay(r: ClusterRelay, s: { signal?: 'SIGTERM' | 'SIGKILL'; graceMs?: number } = {}): Promise<RelayStop> {
    const signal = s.signal ?? 'SIGTERM';
    const callsAtSignal = await activeCalls(r.url);
    const t0 = Date.now();
    let exitedMs: number | undefined;
    const gone = exited(r.child).then(() => {
      exitedMs = Date.now() - t0;
    });
    let killed = false;
    const grace = setTimeout(() => {
      killed = true;
      r.child.kill('SIGKILL');
    }, s.graceMs ?? 120_000);
    r.child.kill(signal);
    let emptyMs: number | null = null;
    const empty = (async () => {
      for (let i = 0; i < 10_000; i++) {
        const b = service.backends().find((x) => x.url === r.url);
        if (!b || b.open === 0) {
          emptyMs = Date.now() - t0;
          return;
        }
        await new Promise((res) => setTimeout(res, 50));
        if (r.child.exitCode !== null || r.child.signalCode !== null) {
          // Seen empty only after the exit: it was empty by the exit at the latest (this poll wakes
          // up to 50 ms after it), never later than the exit it is reported beside.
          if ((service.backends().find((x) => x.url === r.url)?.open ?? 0) === 0) emptyMs = Math.min(Date.now() - t0, exitedMs ?? Infinity);
          return;
        }
      }
    })();
    await gone;
    clearTimeout(grace);
    const exitMs = exitedMs!;
    await empty;
    service.remove(r.url);
    relays.splice(relays.indexOf(r), 1);
    return { url: r.url, signal, callsAtSignal, emptyMs, exitMs, exitCode: r.child.exitCode, killed };
  }

  try {
    await Promise.all(Array.from({ length: o.relays }, () => startRelay()));
  } catch (err) {
    process.off('exit', orphans);
    orphans();
    await Promise.all([service.close(), api.close()]);
    throw err;
  }

  return {
    service,
    api,
    redisUrl,
    relays,
    startRelay,
    stopRelay,
    async close() {
      process.off('exit', orphans);
      for (const r of relays) r.child.kill('SIGKILL');
      await Promise.all(relays.map((r) => exited(r.child)));
      relays.length = 0;
      await Promise.all([service.close(), api.close()]);
      redis.kill('SIGKILL');
      await exited(redis);
    },
  };
}
