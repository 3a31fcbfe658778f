/**
 * The loopback service: a TCP proxy whose endpoints follow the relays' /readyz, as a Kubernetes
 * Service does. Two real relays share its URL as PUBLIC_URL; draining one takes it out of rotation
 * while its live call carries on; a lost node cuts its connections; no ready relay, no connection;
 * a connect a killed relay refuses (still in rotation until the next poll) goes to another ready one.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { startLoopbackService, type LoopbackService } from '../helpers/loopback-service.js';
import { placeCall, type CallScript } from '../../src/sim/sim-caller.js';
import { demo, startTestRelay } from '../helpers/relay.js';

let svc: LoopbackService;
let a: Relay;
let b: Relay;

beforeAll(async () => {
  svc = await startLoopbackService({ pollMs: 100 });
  [a, b] = await Promise.all([startTestRelay({ PUBLIC_URL: svc.url }), startTestRelay({ PUBLIC_URL: svc.url })]);
  svc.add(a.url);
  svc.add(b.url);
  await svc.waitFor((s) => s.length === 2 && s.every((x) => x.ready), 5000, 'both relays ready');
});
afterAll(async () => {
  await Promise.all([a.close(), b.close()]);
  await svc.close();
});

const short: CallScript = { turns: [{ say: 'Do you serve postcode 10001?' }], hangupAfterMs: 100, maxCallMs: 20_000, replyTimeoutMs: 5000 };
const opened = (url: string): number => svc.backends().find((x) => x.url === url)?.total ?? 0;

describe('loopback service', () => {
  it('spreads new connections over the ready relays, signed over the one service URL', async () => {
    const before = [opened(a.url), opened(b.url)];
    const reports = await Promise.all([0, 1, 2, 3].map(() => placeCall({ baseUrl: svc.url, ...demo, script: short })));
    for (const r of reports) {
      expect(r.errors).toEqual([]);
      expect(r.stage).toBe('connected');
      expect(r.turns).toHaveLength(1);
    }
    expect(opened(a.url)).toBeGreaterThan(before[0]!);
    expect(opened(b.url)).toBeGreaterThan(before[1]!);
  });

  it('takes a draining relay out of rotation at its next polls; its live call goes on to the end', async () => {
    let drainStarted = false;
    const live = placeCall({
      baseUrl: svc.url,
      ...demo,
      script: { turns: [{ say: 'Do you serve postcode 10001?' }, { say: 'What does drain cleaning cost?' }], hangupAfterMs: 100, maxCallMs: 20_000 },
      hooks: { onGreeting: () => (drainStarted = true) },
    });
    await new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const check = (): void => (drainStarted ? resolve() : Date.now() - t0 > 10_000 ? reject(new Error('no greeting')) : void setTimeout(check, 20));
      check();
    });
    // Whichever relay holds the live call drains (readiness 503 at once); the other keeps serving.
    const holder = a.activeCalls() > 0 ? a : b;
    const other = holder === a ? b : a;
    const draining = holder.drain(20_000);
    // Out at its next readiness polls (every 200 ms); the bound only keeps a broken poller from hanging the test.
    await svc.waitFor((s) => s.find((x) => x.url === holder.url)?.ready === false, 5000, 'the draining relay out of rotation');
    const before = opened(holder.url);
    const fresh = await Promise.all([0, 1].map(() => placeCall({ baseUrl: svc.url, ...demo, script: short })));
    for (const r of fresh) expect(r.errors).toEqual([]);
    expect(opened(holder.url)).toBe(before);
    expect(other.activeCalls()).toBe(0);
    const r = await live;
    expect(r.errors).toEqual([]);
    expect(r.turns).toHaveLength(2);
    expect(r.endedBy).toBe('caller');
    expect(await draining).toEqual({ remaining: 0 });
  });

  it('cuts a lost relay\'s connections without a close frame, and refuses connections when no relay is ready', async () => {
    const fresh = await startTestRelay({ PUBLIC_URL: svc.url });
    try {
      svc.remove(a.url);
      svc.remove(b.url);
      svc.add(fresh.url);
      await svc.waitFor((s) => s.length === 1 && s[0]!.ready, 5000, 'fresh relay ready');
      const r = await placeCall({
        baseUrl: svc.url,
        ...demo,
        script: { turns: [{ say: 'hello' }], maxCallMs: 20_000 },
        hooks: { onGreeting: () => svc.sever(fresh.url) },
      });
      expect(r.endedBy).toBe('relay');
      expect(r.closeCode).toBe(1006);
      expect(r.legs.map((l) => l.end)).toEqual(['abnormal']);

      svc.remove(fresh.url);
      const refusedBefore = svc.refused;
      const none = await placeCall({ baseUrl: svc.url, ...demo, script: short });
      expect(none.stage).toBe('unreachable');
      expect(svc.refused).toBeGreaterThan(refusedBefore);
    } finally {
      await fresh.close();
    }
  });

  it('retries a connect a killed backend refuses on another ready one, as an ingress does', async () => {
    // Two plain backends; the service polls rarely, so the killed one is still "ready" when used.
    const serve = async (name: string): Promise<Server> => {
      const srv = createServer((req, res) => {
        req.resume();
        req.on('end', () => res.end(name));
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      return srv;
    };
    const [live, dead] = [await serve('live'), await serve('dead')];
    const url = (srv: Server): string => `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const deadUrl = url(dead);
    const lb = await startLoopbackService({ pollMs: 60_000 });
    try {
      lb.add(url(live));
      lb.add(deadUrl);
      await lb.waitFor((s) => s.length === 2 && s.every((x) => x.ready), 5000, 'both backends ready');
      await new Promise<void>((r) => dead.close(() => r()));
      // A fresh connection per POST, as Twilio's redirect fetch after a cut stream would make.
      const post = (): Promise<string> =>
        new Promise((resolve) => {
          const req = request(`${lb.url}/twilio/after-stream`, { method: 'POST', agent: false }, (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve(`${res.statusCode} ${body}`));
          });
          req.on('error', (err) => resolve(`error ${err.message}`));
          req.end('CallSid=CA1');
        });
      const answers: string[] = [];
      for (let i = 0; i < 4; i++) answers.push(await post());
      expect(answers).toEqual(['200 live', '200 live', '200 live', '200 live']);
      expect(lb.backends().find((x) => x.url === deadUrl)?.ready).toBe(false);
    } finally {
      await lb.close();
      await new Promise<void>((r) => live.close(() => r()));
    }
  });
});
