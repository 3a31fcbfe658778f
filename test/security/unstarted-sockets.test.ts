/**
 * Media sockets that never send an authorised `start` must not take the pod: they do not count as
 * calls, they are closed after MEDIA_START_TIMEOUT_SECONDS, at most MAX_UNSTARTED_SOCKETS of them
 * are held, and a drain closes them at once. Real relay, real `ws` peers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Relay } from '../../src/server/index.js';
import { placeCall } from '../../src/sim/sim-caller.js';
import { demo, eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
const open: WebSocket[] = [];
afterEach(async () => {
  for (const ws of open.splice(0)) ws.terminate();
  await relay?.close();
  relay = undefined;
});

interface Idle {
  ws: WebSocket;
  closed: Promise<{ code: number; reason: string }>;
}

/** A socket that upgrades and then says nothing (or only `connected`), as an attacker's would. */
async function idleSocket(r: Relay): Promise<Idle> {
  const ws = new WebSocket(r.url.replace(/^http/, 'ws') + '/twilio/media');
  open.push(ws);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
  return { ws, closed };
}

/** The upgrade's HTTP status when the relay refuses it before opening a socket. */
function upgradeStatus(r: Relay): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(r.url.replace(/^http/, 'ws') + '/twilio/media');
    open.push(ws);
    ws.once('open', () => resolve(101));
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => resolve(0));
  });
}

const call = (r: Relay) =>
  placeCall({ baseUrl: r.url, ...demo, script: { turns: [{ say: 'Hello' }], maxCallMs: 8000, hangupAfterMs: 300, replyTimeoutMs: 4000 } });

describe('unstarted media sockets', () => {
  it('do not count toward MAX_ACTIVE_CALLS: a real call still gets through past them', async () => {
    relay = await startTestRelay({ MAX_ACTIVE_CALLS: '3', MAX_UNSTARTED_SOCKETS: '50', MEDIA_START_TIMEOUT_SECONDS: '30' });
    const r = relay;
    const idle = await Promise.all(Array.from({ length: 6 }, () => idleSocket(r)));
    const report = await call(r);
    expect(report.closeCode, report.errors.join('; ')).not.toBe(4013);
    expect(report.stage).toBe('connected');
    expect(report.turns[0]?.heard).toBe('You said: Hello. Anything else?');
    // The idle sockets were never calls.
    expect(metricValue(await scrape(r), 'switchboard_calls_total', { outcome: 'rejected_capacity' })).toBe(0);
    for (const s of idle) expect(s.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('past MAX_ACTIVE_CALLS authorised calls, the next authorised start is refused with 4013', async () => {
    relay = await startTestRelay({ MAX_ACTIVE_CALLS: '1' });
    const r = relay;
    const first = call(r);
    await eventually(() => r.activeCalls() === 1, 5000, 'first call live');
    const second = await call(r);
    expect(second.closeCode).toBe(4013);
    expect((await first).stage).toBe('connected');
  });

  it('are closed with 4007 when no authorised start arrives within MEDIA_START_TIMEOUT_SECONDS', async () => {
    relay = await startTestRelay({ MEDIA_START_TIMEOUT_SECONDS: '1' });
    const s = await idleSocket(relay);
    const t0 = Date.now();
    const got = await Promise.race([s.closed, new Promise<undefined>((res) => setTimeout(() => res(undefined), 4000))]);
    expect(got?.code).toBe(4007);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    // An ordinary call on the same relay is not cut by the deadline.
    const report = await placeCall({ baseUrl: relay.url, ...demo, script: { turns: [{ say: 'Hello' }, { say: 'Still there?' }], maxCallMs: 10_000, hangupAfterMs: 1500, replyTimeoutMs: 4000 } });
    expect(report.stage).toBe('connected');
    expect(report.turns).toHaveLength(2);
  });

  it('past MAX_UNSTARTED_SOCKETS further upgrades are refused with 503, and calls work again once they go', async () => {
    relay = await startTestRelay({ MAX_UNSTARTED_SOCKETS: '3', MEDIA_START_TIMEOUT_SECONDS: '30' });
    const r = relay;
    const idle = await Promise.all(Array.from({ length: 3 }, () => idleSocket(r)));
    expect(await upgradeStatus(r)).toBe(503);
    const text = await scrape(r);
    expect(metricValue(text, 'switchboard_webhooks_total', { route: 'media_upgrade', outcome: 'too_many_unstarted' })).toBe(1);
    // The server closes its side before the client sees the close: the slot is free by then.
    idle[0]!.ws.close();
    await idle[0]!.closed;
    const report = await call(r);
    expect(report.stage).toBe('connected');
  });

  it('a drain closes unstarted sockets at once with 4005 and waits only for live calls', async () => {
    relay = await startTestRelay({ MEDIA_START_TIMEOUT_SECONDS: '30' });
    const r = relay;
    const idle = await idleSocket(r);
    const t0 = Date.now();
    const drained = r.drain(20_000);
    const got = await Promise.race([idle.closed, new Promise<undefined>((res) => setTimeout(() => res(undefined), 2000))]);
    expect(got?.code).toBe(4005);
    expect(await drained).toEqual({ remaining: 0 });
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
