/**
 * A crashed pod: relay A runs as a real process (`node --import tsx src/main.ts`) with a live call and
 * is SIGKILLed; relay B, sharing Redis, reaps A's call (`abandoned`) and admits new calls once A's
 * tenant lease has expired. B's clock is moved forward instead of waiting the real 30 s / 60 s.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../../src/clock.js';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';
import { killProcess, startRelayProcess, type ProcessRelay } from '../helpers/process-relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

const ADMIN_TOKEN = 'admin-token-for-pod-crash-tests-01';
const tenant = {
  id: 'crash-co',
  displayName: 'Crash Co',
  phoneNumbers: ['+15005550142'],
  twilio: { accountSid: 'AC' + '1'.repeat(32), authToken: { value: 'crash-co-auth-token-not-secret' } },
  tools: ['end_call'],
  maxConcurrentCalls: 1,
};
const caller = { to: tenant.phoneNumbers[0]!, accountSid: tenant.twilio.accountSid, authToken: tenant.twilio.authToken.value };

/** Wall time moved forward on demand: everything else about B is real. */
let skewMs = 0;
const skewed: Clock = { now: () => Date.now() + skewMs, mono: () => systemClock.mono(), after: (ms, fn) => systemClock.after(ms, fn) };

let dir: string;
let redis: RedisServer;
let a: ProcessRelay | undefined;
let b: Relay;

async function adminGet(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(b.url + path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sb-pod-crash-'));
  const tenantsFile = join(dir, 'tenants.json');
  writeFileSync(tenantsFile, JSON.stringify([tenant]));
  redis = await startRedisServer();
  a = await startRelayProcess({ REDIS_URL: redis.url, TENANTS_FILE: tenantsFile });
  b = await startTestRelay({ REDIS_URL: redis.url, TENANTS_FILE: tenantsFile, ADMIN_TOKEN }, { pod: 'pod-b', clock: skewed });
}, 40_000);
afterAll(async () => {
  if (a) await killProcess(a.child);
  await b.close();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a crashed pod', () => {
  it("a survivor reaps the dead pod's live call as abandoned and the tenant's slot frees once its lease expires", async () => {
    const podA = hostname();
    const callSid = randomSid('CA');
    // A live call on A that would go on for a minute.
    const onA = placeCall({
      baseUrl: a!.url,
      ...caller,
      callSid,
      script: { turns: [{ say: 'Hello from the doomed pod' }], maxCallMs: 60_000, hangupAfterMs: 60_000, replyTimeoutMs: 8000 },
    });
    // Live, and answered once (the assistant's reply is in the transcript A wrote to Redis).
    const answered = async (): Promise<boolean> => {
      const c = (await adminGet(`/v1/calls/${callSid}`)).body;
      const t = (c['transcript'] as { role: string }[] | undefined) ?? [];
      return c['phase'] === 'live' && t.some((x) => x.role === 'caller') && t.at(-1)?.role === 'assistant';
    };
    await eventually(answered, 10_000, "A's call live and answered");
    expect((await adminGet('/v1/calls')).body).toMatchObject({ count: 1, calls: [{ callSid, pod: podA, tenantId: 'crash-co' }] });

    // maxConcurrentCalls 1 across pods: B refuses a second call while A's lease is held.
    const busy = await placeCall({ baseUrl: b.url, ...caller, script: { turns: [], maxCallMs: 5000 } });
    expect(busy.stage).toBe('not-connected');
    expect(busy.spoken).toMatch(/lines are busy/);

    // The crash: no drain, no call end, no lease release, no more heartbeats.
    const exited = new Promise<void>((resolve) => a!.child.once('exit', () => resolve()));
    a!.child.kill('SIGKILL');
    await exited;
    const report = await onA;
    expect(report.turns[0]?.said).toBe('Hello from the doomed pod');
    expect(report.closeCode).toBe(1006);
    // Until the stale time has passed, A's call still counts as live.
    expect((await adminGet(`/v1/calls/${callSid}`)).body['phase']).toBe('live');

    // 61 s later, as B sees it: past the 30 s pod staleness and the 60 s live-lease TTL.
    skewMs = 61_000;
    await eventually(async () => (await adminGet(`/v1/calls/${callSid}`)).body['outcome'] === 'abandoned', 10_000, "B's heartbeat reaps A");
    const rec = (await adminGet(`/v1/calls/${callSid}`)).body;
    expect(rec).toMatchObject({ callSid, pod: podA, phase: 'ended', outcome: 'abandoned' });
    expect((await adminGet('/v1/calls')).body).toMatchObject({ count: 0, calls: [] });
    expect(metricValue(await scrape(b), 'switchboard_calls_total', { outcome: 'abandoned' })).toBe(1);

    // The tenant's one slot is free again: a new call is admitted on B and answered.
    const next = await placeCall({
      baseUrl: b.url,
      ...caller,
      script: { turns: [{ say: 'Hello survivor' }], maxCallMs: 15_000, hangupAfterMs: 300, replyTimeoutMs: 5000 },
    });
    expect(next.stage).toBe('connected');
    expect(next.turns[0]?.heard).toBe('You said: Hello survivor. Anything else?');
  });
});
