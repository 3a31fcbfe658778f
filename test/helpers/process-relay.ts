/**
 * A relay as its own process (`node --import tsx src/main.ts`), for tests that crash it with SIGKILL:
 * nothing of it can run after the kill, unlike an in-process relay.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

/** Start the relay process with `env` on top of this one's and resolve once it logs that it listens. */
export async function startProcessRelay(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: join(import.meta.dirname, '../..'),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Never leave a relay behind that a test cannot stop (it holds its port and Redis).
      child.kill('SIGKILL');
      reject(new Error(`relay process did not start: ${out.slice(-1000)}`));
    }, 20_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
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
  return child;
}

/** SIGKILL the process and wait until it is gone. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}
