/** GET /v1/calls and /v1/calls/{callSid} over real HTTP on uWS: views, masking, filters, errors. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { us_listen_socket } from 'uWebSockets.js';
import { loadConfig } from '../../src/config.js';
import type { RelayContext } from '../../src/server/context.js';
import { loadUws } from '../../src/server/index.js';
import { registerAdminCallRoutes } from '../../src/server/routes/admin-calls.js';
import { MemoryCallStore, type CallPage, type CallStore } from '../../src/store/index.js';
import { silentLogger } from '../../src/telemetry/index.js';

const TOKEN = 'admin-token-for-admin-tests-0123';
const sid = (n: number): string => `CA${String(n).padStart(32, '0')}`;

class DownStore extends MemoryCallStore {
  override listCalls(): Promise<CallPage> {
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
  it('lists live calls across pods, newest first, with a tenant filter and a limit', async () => {
    const all = await get(srv.url, '/v1/calls');
    expect(all.status).toBe(200);
    expect(all.body).toMatchObject({ count: 3, truncated: false, nextCursor: null });
    expect((all.body['calls'] as { callSid: string }[]).map((c) => c.callSid)).toEqual([sid(3), sid(2), sid(1)]);
    expect((all.body['calls'] as unknown[])[2]).toEqual({
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
    expect(demoOnly.body).toMatchObject({ count: 1, truncated: true, calls: [{ callSid: sid(3) }] });
    const rest = await get(srv.url, `/v1/calls?tenant=demo&limit=1&cursor=${String(demoOnly.body['nextCursor'])}`);
    expect(rest.body).toMatchObject({ count: 1, truncated: false, nextCursor: null, calls: [{ callSid: sid(1) }] });
  });

  it('lists ended calls with their outcome, filtered by outcome, caller, number and start time, page by page', async () => {
    const s = new MemoryCallStore();
    const t0 = Date.parse('2026-12-01T10:00:00Z');
    for (let n = 10; n < 16; n++) {
      await s.startCall({ callSid: sid(n), tenantId: n % 2 ? 'acme' : 'demo', pod: 'pod-a', startedAt: t0 + n * 60_000, fromMasked: `+*******01${n}`, to: '+15005550006' });
      if (n !== 15) await s.endCall(sid(n), n === 12 ? 'transferred' : 'completed', 3600);
    }
    const one = await serve(s);
    try {
      const page = async (q: string): Promise<string[]> => {
        const r = await get(one.url, `/v1/calls?${q}`);
        expect(r.status, q).toBe(200);
        return (r.body['calls'] as { callSid: string }[]).map((c) => c.callSid);
      };
      const ended = await get(one.url, '/v1/calls?state=ended&limit=2');
      expect(ended.body).toMatchObject({ count: 2, truncated: true });
      expect((ended.body['calls'] as unknown[])[0]).toMatchObject({ callSid: sid(14), phase: 'ended', outcome: 'completed', endedAt: expect.any(String) as unknown });
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 10; i++) {
        const r = await get(one.url, `/v1/calls?state=all&limit=4${cursor !== null ? `&cursor=${cursor}` : ''}`);
        seen.push(...(r.body['calls'] as { callSid: string }[]).map((c) => c.callSid));
        cursor = r.body['nextCursor'] as string | null;
        if (cursor === null) break;
      }
      expect(seen).toEqual([15, 14, 13, 12, 11, 10].map(sid));
      expect(await page('state=ended&outcome=transferred')).toEqual([sid(12)]);
      expect(await page('state=all&tenant=acme')).toEqual([sid(15), sid(13), sid(11)]);
      expect(await page('state=all&from=0113')).toEqual([sid(13)]);
      expect(await page('state=all&to=%2B15005550006&since=2026-12-01T10:12:00Z&until=2026-12-01T10:14:00Z')).toEqual([sid(13), sid(12)]);
      expect(await page('state=all&since=2026-12-02')).toEqual([]);
    } finally {
      one.close();
    }
  });

  it('refuses a bad listing query with 400 bad_request naming the parameter', async () => {
    for (const [q, word] of [
      ['state=gone', 'state'],
      ['limit=1001', 'limit'],
      ['outcome=won', 'outcome'],
      ['from=12', 'from'],
      ['to=5550006', 'to'],
      ['since=yesterday', 'since'],
      ['since=2026-12-02&until=2026-12-01', 'since'],
      ['cursor=bm9wZQ', 'cursor'],
      ['tenant=A!', 'tenant'],
    ] as const) {
      const r = await get(srv.url, `/v1/calls?${q}`);
      expect(r, q).toMatchObject({ status: 400, body: { error: { code: 'bad_request' } } });
      expect((r.body['error'] as { message: string }).message, q).toContain(word);
    }
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
