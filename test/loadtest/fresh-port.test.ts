/**
 * The test relays (in-process, as a process, in the local cluster) pick a free port before they
 * listen, and another test worker can take it in between: the start is retried on a fresh port,
 * bounded, and any other failure is thrown at once.
 */
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { onFreshPort } from '../helpers/redis-process.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

/** Listen on 127.0.0.1:port as the relay does, failing as it does when the port is taken. */
function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', (err) => reject(new Error(`cannot listen on 127.0.0.1:${port}: ${err.message}`)));
    s.listen(port, '127.0.0.1', () => {
      servers.push(s);
      resolve(s);
    });
  });
}

describe('onFreshPort', () => {
  it('starts on a fresh port when another process took the first one in between', async () => {
    const tried: number[] = [];
    const s = await onFreshPort(async (port) => {
      tried.push(port);
      if (tried.length === 1) await listen(port); // the other worker wins the race for this port
      return listen(port);
    });
    expect(tried).toHaveLength(2);
    expect(tried[1]).not.toBe(tried[0]);
    expect(s.listening).toBe(true);
  });

  it('gives up after the bounded attempts, and throws any other failure at once', async () => {
    let n = 0;
    await expect(onFreshPort(() => Promise.reject(new Error(`cannot listen on 127.0.0.1:${++n}: taken`)), 3)).rejects.toThrow(/cannot listen on/);
    expect(n).toBe(3);
    n = 0;
    await expect(onFreshPort(() => Promise.reject(new Error(`config invalid ${++n}`)))).rejects.toThrow('config invalid 1');
    expect(n).toBe(1);
  });
});
