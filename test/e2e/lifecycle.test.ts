/**
 * Stream admission and process lifecycle on real sockets and real processes: bad tokens send nothing
 * upstream, draining refuses new streams but lets live calls finish, and start-up refuses bad setups.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { demo, eventually, mediaFrame, metricValue, rawStream, scrape, startTestRelay, testTenantEnv } from '../helpers/relay.js';
import { freePort } from '../helpers/redis-server.js';

let relay: Relay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

describe('stream admission', () => {
  it('a forged token closes the stream with 4003 and nothing reaches the model', async () => {
    relay = await startTestRelay();
    const callSid = randomSid('CA');
    const s = await rawStream(relay, callSid);
    s.start({ ...s.params, token: s.params['token']!.slice(0, -4) + 'AAAA' });
    s.ws.send(mediaFrame(callSid, 2));
    expect((await s.closed).code).toBe(4003);
    expect(relay.sim!.sessions).toHaveLength(0);
    const m = await scrape(relay);
    expect(metricValue(m, 'switchboard_calls_total', { outcome: 'rejected_token' })).toBe(1);
  });

  it('a token is good for one stream only (replay refused), and only for its own CallSid', async () => {
    relay = await startTestRelay();
    const callSid = randomSid('CA');
    const first = await rawStream(relay, callSid);
    first.start();
    const r = relay;
    await eventually(() => r.sim!.sessions.length === 1, 5000, 'first stream upstream');
    const replay = await rawStream(relay, callSid);
    replay.start(first.params);
    expect((await replay.closed).code).toBe(4003);
    const other = await rawStream(relay, randomSid('CA'));
    other.start(first.params); // another call's token
    expect((await other.closed).code).toBe(4003);
    expect(relay.sim!.sessions).toHaveLength(1);
    first.ws.close();
  });

  it('media before start closes with 4000; garbage before start with 4001', async () => {
    relay = await startTestRelay();
    const callSid = randomSid('CA');
    const a = await rawStream(relay, callSid);
    a.ws.send(mediaFrame(callSid, 1));
    expect((await a.closed).code).toBe(4000);
    const b = await rawStream(relay, randomSid('CA'));
    b.ws.send('{"event": nope');
    expect((await b.closed).code).toBe(4001);
    const c = await rawStream(relay, randomSid('CA'));
    c.ws.send(Buffer.from([1, 2, 3]));
    expect((await c.closed).code).toBe(4001);
    expect(relay.sim!.sessions).toHaveLength(0);
  });
});

describe('drain', () => {
  it('refuses new streams with 4005 and readyz 503 at once, lets the live call finish, then resolves', async () => {
    relay = await startTestRelay();
    const r = relay;
    const live = placeCall({
      baseUrl: r.url,
      ...demo,
      script: { turns: [{ say: 'Hello there' }, { say: 'call tool end_call {"reason":"done"}' }], maxCallMs: 30_000, hangupAfterMs: 10_000 },
    });
    await eventually(async () => metricValue(await scrape(r), 'switchboard_active_calls') === 1, 10_000, 'call live');
    const drained = r.drain(30_000);
    expect((await fetch(`${r.url}/readyz`)).status).toBe(503);
    const late = await rawStream(r, randomSid('CA'));
    expect((await late.closed).code).toBe(4005);
    const report = await live;
    expect(report.closeCode).toBe(4011);
    expect(report.turns).toHaveLength(2);
    expect(await drained).toEqual({ remaining: 0 });
  });

  it('ends calls still live at the drain timeout with 1001', async () => {
    relay = await startTestRelay();
    const callSid = randomSid('CA');
    const s = await rawStream(relay, callSid);
    s.start();
    const r = relay;
    await eventually(async () => metricValue(await scrape(r), 'switchboard_active_calls') === 1, 5000, 'call live');
    expect(await r.drain(200)).toEqual({ remaining: 1 });
    expect((await s.closed).code).toBe(1001);
    expect(metricValue(await scrape(r), 'switchboard_calls_total', { outcome: 'drained' })).toBe(1);
  });
});

function run(env: Record<string, string>, nodeFlags: string[] = []): { child: ChildProcess; out: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', 'src/main.ts'], {
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, exit };
}

describe('the relay process', () => {
  it('stops on bad configuration with one line per bad variable', async () => {
    const p = run({ PORT: 'eighty', LOG_LEVEL: 'loud', REDIS_URL: 'http://x' });
    expect(await p.exit).toBe(1);
    const lines = p.out().trim().split('\n');
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(l).toMatch(/^switchboard: invalid configuration: (PORT|LOG_LEVEL|REDIS_URL): /);
  });

  // --no-addons: no native binary loads, as on a Node ABI or glibc that no installed build fits.
  it('refuses the slow uWebSockets.js fallback unless UWS_ALLOW_FALLBACK=1', async () => {
    const port = await freePort();
    const p = run({ PORT: String(port), HOST: '127.0.0.1' }, ['--no-addons']);
    expect(await p.exit).toBe(1);
    expect(p.out()).toMatch(/switchboard: cannot start: uws_native_missing: uWebSockets\.js native addon did not load/);
    expect(p.out()).toMatch(/uWebSockets\.js: .*addons is disabled.*; uws-legacy: binary did not load, JS fallback only\./);
  });

  it('with UWS_ALLOW_FALLBACK=1 runs on the JS fallback and says so', async () => {
    const port = await freePort();
    const p = run({ PORT: String(port), HOST: '127.0.0.1', UWS_ALLOW_FALLBACK: '1' }, ['--no-addons']);
    try {
      await eventually(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200, 30_000, 'relay up');
      expect(p.out()).toMatch(/"code":"uws_native_missing".*running on the slow uWebSockets\.js JS fallback/);
      expect(p.out()).toMatch(/"uws":"JS fallback \(slow, uws-legacy\)"/);
    } finally {
      p.child.kill('SIGKILL');
      await p.exit;
    }
  }, 60_000);

  it('a second relay on a taken port exits 1 with a clear line instead of sharing the port', async () => {
    // uWS listens with SO_REUSEPORT by default: a second relay would share the port and the kernel
    // would split connections between them (a webhook on one, its stream on the other: 4003).
    relay = await startTestRelay();
    const port = relay.port;
    const p = run({ PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: `http://127.0.0.1:${port}`, LOG_LEVEL: 'info' });
    try {
      const settled = await Promise.race([
        p.exit.then((code) => ({ code })),
        eventually(() => p.out().includes('relay listening'), 20_000, 'listening or exit').then(() => ({ code: 'listening' as const })),
      ]);
      expect(settled).toEqual({ code: 1 });
      expect(p.out()).toContain(`switchboard: cannot start: listen_failed: cannot listen on 127.0.0.1:${port}: address in use`);
      expect(p.out()).not.toContain('relay listening');
      // It stopped before opening anything: no tenants file applied to a store it would share.
      expect(p.out()).not.toContain('tenants file applied');
      // The first relay still serves, alone.
      expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  it('on SIGTERM turns unready at once, finishes the live call, then exits 0', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const p = run({ PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: url, SIM_MODEL_MODE: 'loadtest', LOG_LEVEL: 'info', ...testTenantEnv() });
    try {
      await eventually(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.status === 200, 15_000, 'relay up');
      // One start-up summary line says what this process serves and with what (JSON: stdout is no terminal).
      // It is written after the listen succeeds, so it may reach the pipe after /healthz has answered.
      await eventually(() => p.out().includes('"msg":"relay listening"'), 10_000, 'start-up summary');
      const summaries = p.out().split('\n').filter((l) => l.includes('"msg":"relay listening"'));
      expect(summaries).toHaveLength(1);
      const summary = JSON.parse(summaries[0]!) as Record<string, unknown>;
      expect(summary['uws']).toMatch(/^native \((uWebSockets\.js|uws-legacy)\)$/);
      expect(summary).toMatchObject({
        port,
        provider: 'sim',
        simMode: 'loadtest',
        tenants: 1,
        tenantsFile: testTenantEnv().TENANTS_FILE,
        tenantsFileMode: 'seed',
        adminApi: 'off',
        redis: 'off (in-memory)',
        drain: 'wait',
        drainTimeoutSeconds: 3600,
        node: process.version,
      });
      const call = placeCall({
        baseUrl: url,
        ...demo,
        script: { turns: [{ say: 'Hello there' }, { say: 'call tool end_call {"reason":"done"}' }], maxCallMs: 30_000, hangupAfterMs: 10_000 },
      });
      await eventually(async () => metricValue(await (await fetch(`${url}/metrics`)).text(), 'switchboard_active_calls') === 1, 10_000, 'call live');
      p.child.kill('SIGTERM');
      await eventually(async () => (await fetch(`${url}/readyz`)).status === 503, 2000, 'unready');
      const report = await call;
      expect(report.closeCode).toBe(4011);
      expect(report.turns).toHaveLength(2);
      expect(await p.exit).toBe(0);
      expect(p.out()).toContain('drain finished');
    } finally {
      p.child.kill('SIGKILL');
    }
  });
});
