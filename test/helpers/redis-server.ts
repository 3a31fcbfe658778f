/**
 * Spawns a real redis-server on a free loopback port for a test file, and kills it after.
 * No persistence, no config file: a clean server per call. Restart support for fault tests.
 */
import { exited, freePort, launchRedis as launch, onFreshPort, type RedisServerOptions } from './redis-process.js';

export { freePort, onFreshPort, type RedisServerOptions };

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Kill (SIGKILL) the server: simulates a crash. */
  kill(): Promise<void>;
  /** Start it again on the same port (empty: no persistence). */
  restart(): Promise<void>;
  /** Freeze it (SIGSTOP): commands hang until resume(). */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

export async function startRedisServer(o: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  let child = await launch(port, o);
  return {
    port,
    url: `${o.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    async kill() {
      child.kill('SIGKILL');
      await exited(child);
    },
    async restart() {
      child = await launch(port, o);
    },
    pause() {
      child.kill('SIGSTOP');
    },
    resume() {
      child.kill('SIGCONT');
    },
    async stop() {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
      await exited(child);
    },
  };
}
