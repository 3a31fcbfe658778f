/**
 * A pod killed mid-call loses at most one USAGE_FLUSH_SECONDS interval of that call's usage: relay A
 * runs as its own process on a shared Redis and the test's simulated model, and is SIGKILLed while
 * its call is live. What the store holds afterwards is compared with what the model reported.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel } from '../../src/sim/sim-model.js';
import { RedisCallStore, RedisUsageStore, type UsageTotals } from '../../src/store/index.js';
import { killProcess, startRelayProcess, type ProcessRelay } from '../helpers/process-relay.js';
import { eventually } from '../helpers/relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

const FLUSH_MS = 1000;
const AUTH_TOKEN = 'crash-usage-auth-token-not-secret';
/** Scheduling slack on a busy test machine: the timer fires late, the write takes a round trip. */
const SLACK_MS = 700;
const tenant = {
  id: 'crash-usage',
  displayName: 'Crash Usage',
  phoneNumbers: ['+15005550181'],
  // A real model provider refuses inline tokens: by reference, as in production.
  twilio: { accountSid: 'AC' + '9'.repeat(32), authToken: { env: 'CRASH_USAGE_AUTH_TOKEN' } },
  tools: ['end_call'],
};

let dir: string;
let redis: RedisServer;
let sim: SimModel;
let a: ProcessRelay | undefined;
let calls: RedisCallStore;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sb-usage-crash-'));
  const tenantsFile = join(dir, 'tenants.json');
  writeFileSync(tenantsFile, JSON.stringify([tenant]));
  redis = await startRedisServer();
  sim = await startSimModel({ mode: 'loadtest' });
  a = await startRelayProcess({
    REDIS_URL: redis.url,
    TENANTS_FILE: tenantsFile,
    MODEL_PROVIDER: 'openai',
    OPENAI_API_KEY: 'sk-test-usage-crash',
    OPENAI_REALTIME_URL: sim.url,
    USAGE_FLUSH_SECONDS: String(FLUSH_MS / 1000),
    CRASH_USAGE_AUTH_TOKEN: AUTH_TOKEN,
  });
  calls = RedisCallStore.connect(redis.url);
}, 40_000);

afterAll(async () => {
  if (a) await killProcess(a.child);
  await calls?.close();
  await sim?.close();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('usage when a pod crashes mid-call', () => {
  it('keeps every token reported more than one interval before the kill, and all but one interval of call seconds', async () => {
    const callSid = randomSid('CA');
    const before = sim.sessions.length;
    const live = placeCall({
      baseUrl: a!.url,
      to: tenant.phoneNumbers[0]!,
      accountSid: tenant.twilio.accountSid,
      authToken: AUTH_TOKEN,
      callSid,
      script: { turns: [{ say: 'Hello from the doomed pod' }, { say: 'And a second question' }], maxCallMs: 60_000, hangupAfterMs: 60_000, replyTimeoutMs: 8000 },
    });
    // Greeting and both answers reported by the model; then the line stays open, silent.
    const session = await sim.waitForSession((s) => sim.sessions.indexOf(s) >= before, 10_000);
    await eventually(() => session.usage.responses === 3, 20_000, 'three responses billed');
    const reported = { ...session.usage };
    await new Promise((r) => setTimeout(r, FLUSH_MS + SLACK_MS));

    const killedAt = Date.now();
    await killProcess(a!.child);
    a = undefined;
    const report = await live;
    expect(report.closeCode).toBe(1006);
    expect(session.usage).toEqual(reported); // nothing more was billed after the wait

    const stored = (await new RedisUsageStore(calls.redis).callUsage(tenant.id, callSid)) as UsageTotals;
    expect(stored).toBeDefined();
    // Every token reported an interval (plus slack) before the crash is in the store, exactly.
    expect({
      responses: stored.responses,
      inputText: stored.inputText,
      inputAudio: stored.inputAudio,
      inputTextCached: stored.inputTextCached,
      inputAudioCached: stored.inputAudioCached,
      outputText: stored.outputText,
      outputAudio: stored.outputAudio,
    }).toEqual(reported);
    expect(stored.calls).toBe(1);
    expect(stored.costNanoUsd).toBeGreaterThan(0);
    // Call seconds: at most one interval (plus slack) is lost.
    const record = await calls.getCall(callSid);
    const ranMs = killedAt - record!.startedAt;
    expect(stored.callMs).toBeLessThanOrEqual(ranMs);
    expect(ranMs - stored.callMs).toBeLessThanOrEqual(FLUSH_MS + SLACK_MS);
    // The tenant's buckets hold the same as the call.
    const day = await new RedisUsageStore(calls.redis).bucket(tenant.id, 'day', killedAt);
    expect(day).toEqual(stored);
  }, 60_000);
});
