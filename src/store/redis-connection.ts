/**
 * The one way the relay opens Redis: bounded command timeouts, a capped reconnect policy, offline
 * queueing limited so a dead Redis fails fast instead of piling up commands in memory; AUTH and a
 * private TLS CA given beside the URL.
 */
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { errorMessage, SwitchboardError } from '../errors.js';

export interface RedisConnectOptions {
  /** Per-command timeout; a hanging Redis fails the command instead of the call. */
  commandTimeoutMs?: number;
  /** Key prefix for everything this relay writes (lets several deployments share one Redis). */
  keyPrefix?: string;
  log?: Logger;
  /** ACL user and password (REDIS_USERNAME, REDIS_PASSWORD) when the URL carries none. */
  username?: string | undefined;
  password?: string | undefined;
  /** PEM CA bundle that signed a rediss:// server's certificate (REDIS_TLS_CA_FILE). */
  tlsCaFile?: string | undefined;
}

function readCa(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new SwitchboardError('config_invalid', `REDIS_TLS_CA_FILE: cannot read ${file}: ${(err as Error).message}`);
  }
}

export function createRedis(url: string, o: RedisConnectOptions = {}): Redis {
  const redis = new Redis(url, {
    commandTimeout: o.commandTimeoutMs ?? 500,
    connectTimeout: 2000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    lazyConnect: false,
    // Reconnect forever with a capped backoff: Redis may come back, and readiness reports it meanwhile.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    keyPrefix: o.keyPrefix ?? 'sb:',
    // ioredis lets the URL's own user/password win over these.
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
    // rediss:// turns TLS on; this adds the CA the server's certificate chains to.
    ...(o.tlsCaFile !== undefined ? { tls: { ca: readCa(o.tlsCaFile) } } : {}),
  });
  let down = false;
  redis.on('error', (err: Error) => {
    if (!down) o.log?.warn({ code: 'store_unavailable', err: err.message }, 'redis error');
    down = true;
  });
  redis.on('ready', () => {
    if (down) o.log?.info('redis reconnected');
    down = false;
  });
  return redis;
}

/**
 * A failure of a Redis command as the stores report it: `store_unavailable` (retryable), whatever
 * ioredis said (connection lost, timeout, a reply error such as OOM). SwitchboardErrors pass through.
 */
export function storeUnavailable(err: unknown): SwitchboardError {
  if (err instanceof SwitchboardError) return err;
  return new SwitchboardError('store_unavailable', `redis: ${errorMessage(err)}`, true, { cause: err });
}
