/**
 * The relay as `npm start` composes it from configuration alone: the tenant registry with its admin
 * API, concurrency leases and the media-socket rate limit are wired in without test-only options.
 */
import { createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Relay } from '../../src/server/index.js';
import { randomSid } from '../../src/sim/sim-caller.js';
import { DEMO_AUTH_TOKEN } from '../../src/tenants/index.js';
import { loadConfig } from '../../src/config.js';
import { startRelay } from '../../src/server/index.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { demo, eventually, metricValue, rawStream, scrape, signedPost, startTestRelay, TEST_SECRET } from '../helpers/relay.js';

let relay: Relay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

const ADMIN = 'admin-token-0123456789';

/** The HTTP status a media-socket upgrade gets: 101 when it opens, the refusal's status otherwise. */
const upgradeStatus = (url: string, headers: Record<string, string> = {}) =>
  new Promise<number>((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('error', () => resolve(0));
  });

describe('composition from configuration', () => {
  it('serves /v1/tenants with ADMIN_TOKEN, never showing secrets', async () => {
    relay = await startTestRelay({ ADMIN_TOKEN: ADMIN });
    expect((await fetch(`${relay.url}/v1/tenants`)).status).toBe(401);
    const res = await fetch(`${relay.url}/v1/tenants`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('"demo"');
    expect(text).not.toContain(DEMO_AUTH_TOKEN);
  });

  it("records the caller's number masked and the number called, as the voice webhook saw them", async () => {
    relay = await startTestRelay({ ADMIN_TOKEN: ADMIN });
    const callSid = randomSid('CA');
    const s = await rawStream(relay, callSid); // From +15550001111, To the tenant's number
    expect(Object.values(s.params).join(' ')).not.toContain('5550001111');
    s.start();
    const r = relay;
    await eventually(() => r.activeCalls() === 1, 5000, 'call live');
    const view = async () =>
      (await (await fetch(`${r.url}/v1/calls/${callSid}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as Record<string, unknown>;
    await eventually(async () => (await view())['from'] !== undefined, 5000, 'call record written');
    expect(await view()).toMatchObject({ callSid, from: '+*******1111', to: demo.to });
    s.ws.close();
  });

  it('has no admin API without ADMIN_TOKEN', async () => {
    relay = await startTestRelay();
    expect((await fetch(`${relay.url}/v1/tenants`, { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(404);
  });

  it('refuses media-socket upgrades past the per-address limit with 429', async () => {
    relay = await startTestRelay({ MEDIA_CONNECT_PER_MINUTE: '1', MEDIA_CONNECT_BURST: '2' });
    const url = relay.url.replace('http', 'ws') + '/twilio/media';
    const attempt = () => upgradeStatus(url);
    expect(await attempt()).toBe(101);
    expect(await attempt()).toBe(101);
    expect(await attempt()).toBe(429);
  });

  it('behind a trusted proxy, buckets forwarded addresses by address, not by their text', async () => {
    relay = await startTestRelay({ MEDIA_CONNECT_PER_MINUTE: '1', MEDIA_CONNECT_BURST: '2', TRUSTED_PROXY_HOPS: '1' });
    const url = relay.url.replace('http', 'ws') + '/twilio/media';
    const attempt = (forwarded: string) => upgradeStatus(url, { 'x-forwarded-for': forwarded });
    const series = async (entries: string[]) => {
      const out: number[] = [];
      for (const e of entries) out.push(await attempt(e));
      return out;
    };
    // A new source port, brackets or the IPv4-mapped spelling is the same client.
    expect(await series(['198.51.100.77:1', '198.51.100.77:2', '198.51.100.77:3'])).toEqual([101, 101, 429]);
    expect(await series(['[2001:db8:9:9::1]:1', '[2001:db8:9:9::2]', '2001:db8:9:9::3'])).toEqual([101, 101, 429]);
    expect(await series(['::ffff:198.51.100.8', '[::ffff:198.51.100.8]:7', '198.51.100.8:9'])).toEqual([101, 101, 429]);
    // Entries that are no address at all share one bucket, whatever their text.
    expect(await series(['junk-1', 'unknown', '999.1.1.1:5'])).toEqual([101, 101, 429]);
  });

  it('refuses authorised streams past MAX_ACTIVE_CALLS with 4013 and counts them', async () => {
    relay = await startTestRelay({ MAX_ACTIVE_CALLS: '1' });
    const first = await rawStream(relay, randomSid('CA'));
    first.start();
    const r = relay;
    await eventually(() => r.activeCalls() === 1, 5000, 'first call live');
    // Only an authorised start takes capacity: the second socket is refused once it starts.
    const second = await rawStream(relay, randomSid('CA'));
    second.start();
    expect((await second.closed).code).toBe(4013);
    const metrics = await scrape(relay);
    expect(metricValue(metrics, 'switchboard_calls_total', { outcome: 'rejected_capacity' })).toBe(1);
    // The cap itself is exported: the capacity alert and dashboard read it instead of a copy.
    expect(metrics).toMatch(/^switchboard_max_active_calls 1$/m);
    first.ws.close();
  });

  it('a relay that cannot listen fails with a clear error and leaves nothing running', async () => {
    // A port held by a plain Node server.
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const busyPort = (holder.address() as AddressInfo).port;
    const before = process.getActiveResourcesInfo().length;
    try {
      await expect(
        startRelay(loadConfig({ PORT: String(busyPort), HOST: '127.0.0.1', LOG_LEVEL: 'silent', STREAM_TOKEN_SECRET: TEST_SECRET }), { log: silentLogger() }),
      ).rejects.toThrow(`cannot listen on 127.0.0.1:${busyPort}: address in use`);
      await eventually(() => process.getActiveResourcesInfo().length <= before, 5000, 'resources released');
    } finally {
      holder.close();
    }
  });

  it('a second relay in the same process cannot share the first one\'s port', async () => {
    relay = await startTestRelay();
    const port = relay.port;
    const second = startRelay(
      loadConfig({ PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'silent', STREAM_TOKEN_SECRET: TEST_SECRET }),
      { log: silentLogger() },
    );
    await expect(second).rejects.toMatchObject({ code: 'listen_failed', message: `cannot listen on 127.0.0.1:${port}: address in use (another relay or process listens there)` });
  });

  it('admits calls through tenant leases (the webhook still answers TwiML)', async () => {
    relay = await startTestRelay();
    const res = await signedPost(relay, '/twilio/voice', { CallSid: randomSid('CA'), AccountSid: demo.accountSid, To: demo.to, From: '+15550001111' });
    expect(res.body).toContain('<Connect><Stream');
  });
});
