/**
 * A relay as its own process (`node --import tsx src/main.ts`), for tests that crash it with SIGKILL
 * or stop it with SIGTERM: nothing of it can run after the kill, unlike an in-process relay.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnRelay } from './local-cluster.js';
import { onFreshPort } from './redis-server.js';
import { TEST_SECRET, testTenantEnv } from './relay.js';

export interface ProcessRelay {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly child: ChildProcess;
}

/**
 * Start a relay process on a free loopback port, as a pod: the test tenant and stream-token secret,
 * the simulated model in loadtest mode, its own URL as PUBLIC_URL and logs at info (start-up waits
 * for its "relay listening" line), with `env` on top. Resolves once it listens. The port is picked
 * before the relay listens, so another test worker can take it in between: that start is retried on
 * a fresh port (bounded), as startTestRelay does.
 */
export async function startRelayProcess(env: Record<string, string> = {}): Promise<ProcessRelay> {
  return onFreshPort(async (port) => {
    const url = `http://127.0.0.1:${port}`;
    const child = await spawnRelay(
      {
        ...testTenantEnv(),
        HOST: '127.0.0.1',
        PUBLIC_URL: url,
        STREAM_TOKEN_SECRET: TEST_SECRET,
        SIM_MODEL_MODE: 'loadtest',
        LOG_LEVEL: 'info',
        ...env,
        PORT: String(port),
      },
      20_000,
    );
    return { url, child };
  });
}

/** SIGKILL the process and wait until it is gone. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}
