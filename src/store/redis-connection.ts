/**
 * The one way the relay opens Redis: bounded command timeouts, a capped reconnect policy, offline
 * queueing limited so a dead Redis fails fast instead of piling up commands in memory.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';

export interface RedisConnectOptions {
  /** Per-command timeout; a hanging Redis fails the command instead of the call. */
  commandTimeoutMs?: number;
  /** Key prefix for everything this relay writes (lets several deployments share one Redis). */
  keyPrefix?: string;
  log?: Logger;
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
