/** GET /v1/calls and /v1/calls/{callSid} over real HTTP on uWS: views, masking, filters, errors. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { us_listen_socket } from 'uWebSockets.js';
import { loadConfig } from '../../src/config.js';
import type { RelayContext } from '../../src/server/context.js';
import { loadUws } from '../../src/server/index.js';
import { registerAdminCallRoutes } from '../../src/server/routes/admin-calls.js';
import { MemoryCallStore, type CallRecord, type CallStore } from '../../src/store/index.js';
import { silentLogger } from '../../src/telemetry/index.js';

const TOKEN = 'admin-token-for-admin-tests-0123';
const sid = (n: number): string => `CA${String(n).padStart(32, '0')}`;

class DownStore extends MemoryCallStore {
  override listActive(): Promise<CallRecord[]> {
    return Promise.reject(new Error('connection refused'));
  }
}

async function serve(store: CallStore, adminToken: string | null = TOKEN): Promise<{ url: string; close(): void }> {
  const { uws } = loadUws({ allowFallback: false });
  const app = uws.App();
  const config = loadConfig({ LOG_LEVEL: 'silent', ...(adminToken ? { ADMIN_TOKEN: adminToken } : {}) });
  registerAdminCallRoutes({ app, config, log: silentLogger(), store } as unknown as RelayContext, (h) => h === `Bearer ${TOKEN}`);
  app.any('/*', (res) => void res.writeStatus('404 Not Found').end('{"error":{"code":"not_found","message":"no such route"}}'));
  return new Promise((resolve, reject) => {
    app.listen('127.0.0.1', 0, (s: us_listen_socket | false) => {
      if (!s) return reject(new Error('listen failed'));
      resolve({ url: `http://127.0.0.1:${uws.us_socket_local_port(s)}`, close: () => uws.us_listen_socket_close(s) });
    });
  });
}

async function get(base: string, path: string, token = TOKEN): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(base + path, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const store = new MemoryCallStore();
let srv: { url: string; close(): void };
beforeAll(async () => {
  await store.startCall({ callSid: sid(1), tenantId: 'demo', pod: 'pod-a', startedAt: 1_000, fromMasked: '+*******0100', to: '+15005550006' });
  await store.startCall({ callSid: sid(2), tenantId: 'acme', pod: 'pod-b', startedAt: 2_000 });
  await store.startCall({ callSid: sid(3), tenantId: 'demo', pod: 'pod-b', startedAt: 3_000 });
  await store.appendTranscript(sid(1), { role: 'caller', text: 'Call me back on 415 555 0123 please', at: 1_500 });
  await store.recordToolCall(sid(1), {
    callId: 'c1',
    name: 'book_appointment',
    arguments: '{"customerPhone":"+14155550123","slot":"2030-01-07T09:00"}',
    output: '{"ok":true,"confirmationId":"BK-1234ABCD"}',
    outcome: 'ok',
    startedAt: 1_600,
    durationMs: 4,
  });
  srv = await serve(store);
});
afterAll(() => srv.close());

describe('admin call routes', () => {
  it('lists active calls across pods, oldest first, with a tenant filter and a limit', async () => {
    const all = await get(srv.url, '/v1/calls');
    expect(all.status).toBe(200);
    expect(all.body).toMatchObject({ count: 3, truncated: false });
    expect((all.body['calls'] as { callSid: string }[]).map((c) => c.callSid)).toEqual([sid(1), sid(2), sid(3)]);
    expect((all.body['calls'] as unknown[])[0]).toEqual({
      callSid: sid(1),
      tenantId: 'demo',
      pod: 'pod-a',
      phase: 'connecting',
      startedAt: '1970-01-01T00:00:01.000Z',
      updatedAt: expect.any(String) as unknown,
      from: '+*******0100',
      to: '+15005550006',
      turns: 1,
      toolCalls: 1,
    });
    const demoOnly = await get(srv.url, '/v1/calls?tenant=demo&limit=1');
    expect(demoOnly.body).toMatchObject({ count: 2, truncated: true });
    expect((demoOnly.body['calls'] as unknown[]).length).toBe(1);
  });

  it('shows one call with transcript and tool calls, numbers masked', async () => {
    const r = await get(srv.url, `/v1/calls/${sid(1)}`);
    expect(r.status).toBe(200);
    expect(r.body['transcript']).toEqual([{ role: 'caller', text: 'Call me back on ******0123 please', at: '1970-01-01T00:00:01.500Z' }]);
    expect(r.body['tools']).toEqual([
      {
        callId: 'c1',
        name: 'book_appointment',
        arguments: { customerPhone: '+*******0123', slot: '2030-01-07T09:00' },
        result: { ok: true, confirmationId: 'BK-1234ABCD' },
        outcome: 'ok',
        startedAt: '1970-01-01T00:00:01.600Z',
        durationMs: 4,
      },
    ]);
    expect(r.body['summary']).toBeNull();
    expect(JSON.stringify(r.body)).not.toMatch(/4155550123|415 555 0123/);
  });

  it('refuses without the bearer token and reports store trouble as 503', async () => {
    expect(await get(srv.url, '/v1/calls', 'nope')).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    const down = await serve(new DownStore());
    try {
      expect(await get(down.url, '/v1/calls')).toMatchObject({ status: 503, body: { error: { code: 'store_unavailable' } } });
    } finally {
      down.close();
    }
  });

  it('registers nothing when ADMIN_TOKEN is unset', async () => {
    const off = await serve(store, null);
    try {
      expect((await get(off.url, '/v1/calls')).status).toBe(404);
    } finally {
      off.close();
    }
  });
});
