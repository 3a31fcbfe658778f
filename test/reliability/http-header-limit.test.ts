/**
 * The request-head limit. uWebSockets.js v20.57 (the production build) answers 431 to a request head
 * over UWS_HTTP_MAX_HEADERS_SIZE, which it reads when its addon loads, 4 KiB unless set: a 4 KiB token
 * or a long X-Forwarded-For chain would never reach the routes. The relay sets it (16 KiB by default,
 * Node's http limit) before loading the addon. The legacy build does not enforce a limit this way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { DEFAULT_MAX_HEADER_BYTES, loadUws, type Relay } from '../../src/server/index.js';
import { startTestRelay } from '../helpers/relay.js';

let relay: Relay;
beforeAll(async () => {
  relay = await startTestRelay({ ADMIN_TOKEN: 'admin-token-0123456789abcdef' });
});
afterAll(async () => {
  await relay.close();
});

const status = async (headerBytes: number): Promise<number> =>
  (await fetch(`${relay.url}/v1/tenants`, { headers: { authorization: 'Bearer ' + 'a'.repeat(headerBytes) } })).status;

describe('request heads', () => {
  it('defaults to 16 KiB, bounded', () => {
    expect(loadConfig({}).httpMaxHeaderBytes).toBe(DEFAULT_MAX_HEADER_BYTES);
    expect(DEFAULT_MAX_HEADER_BYTES).toBe(16 * 1024);
    expect(loadConfig({ UWS_HTTP_MAX_HEADERS_SIZE: '65536' }).httpMaxHeaderBytes).toBe(65536);
    expect(() => loadConfig({ UWS_HTTP_MAX_HEADERS_SIZE: '1024' })).toThrow(/UWS_HTTP_MAX_HEADERS_SIZE: must be at least 4096/);
  });

  it('a head of 4 to 15 KiB reaches the routes (a wrong token is 401, not 431)', async () => {
    for (const n of [4_500, 10_000, 15_000]) expect(await status(n), `${n}-byte header`).toBe(401);
  });

  it('past the limit the production build answers 431 and keeps serving', async () => {
    const { build } = loadUws({ allowFallback: false });
    const over = await status(DEFAULT_MAX_HEADER_BYTES + 1024);
    if (build === 'uWebSockets.js') expect(over).toBe(431);
    else expect([401, 431]).toContain(over);
    expect(await status(100)).toBe(401);
  });
});
