/**
 * A relay as its own process (`node --import tsx src/main.ts`), for tests that crash it with SIGKILL:
 * nothing of it can run after the kill, unlike an in-process relay.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnRelay } from '../../src/sim/local-cluster.js';

/** Start the relay process with `env` on top of this one's and resolve once it logs that it listens. */
export async function startProcessRelay(env: Record<string, string>): Promise<ChildProcess> {
  return spawnRelay(env, 20_000);
}

/** SIGKILL the process and wait until it is gone. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}
