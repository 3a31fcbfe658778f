/**
 * The k6 scripts' own code path end to end: call-storm.js run by the k6 shim (VU worker threads,
 * real sockets) against a real relay, and the scripts typechecked against @types/k6.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRICS } from '../../loadtest/lib/scenarios.js';
import type { Relay } from '../../src/server/app.js';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER } from '../../src/tenants/tenant.js';
import { runK6Script } from './k6-shim.js';
import { startTestRelay } from '../helpers/relay.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const callStorm = `${root}loadtest/call-storm.js`;
let relay: Relay;

beforeAll(async () => {
  relay = await startTestRelay({ TENANTS_FILE: '' }); // the built-in demo tenant the load scripts call
});
afterAll(async () => {
  await relay.close();
});

const env = (extra: Record<string, string> = {}): Record<string, string> => ({
  BASE_URL: relay.url,
  PUBLIC_URL: relay.url,
  SCENARIO: 'smoke',
  TENANT_NUMBER: DEMO_NUMBER,
  ACCOUNT_SID: DEMO_ACCOUNT_SID,
  TWILIO_AUTH_TOKEN: DEMO_AUTH_TOKEN,
  ...extra,
});

describe('k6 call-storm.js through the shim', () => {
  it('places signed calls that complete, with marks echoed, a barge-in clear and passing thresholds', async () => {
    const r = await runK6Script(callStorm, { env: env(), vus: 3, iterations: 3, timeoutMs: 40_000 });
    expect(r.iterationErrors).toEqual([]);
    expect(r.options?.scenarios?.smoke).toMatchObject({ executor: 'shared-iterations', vus: 5, iterations: 5 });
    expect(r.httpRequests).toHaveLength(3);
    for (const h of r.httpRequests) expect(h).toMatchObject({ method: 'POST', url: `${relay.url}/twilio/voice`, status: 200 });
    expect(r.wsUpgrades).toHaveLength(3);
    for (const u of r.wsUpgrades) {
      expect(u.url).toBe(`${relay.url.replace('http', 'ws')}/twilio/media`);
      expect(u.headers['X-Twilio-Signature']).toMatch(/^[A-Za-z0-9+/]{27}=$/);
      expect(u.status).toBe(101);
    }
    const m = r.summary.metrics;
    expect(m[METRICS.callsCompleted]?.values.count).toBe(3);
    expect(m[METRICS.callsFailed]?.values.count).toBe(0);
    expect(m[METRICS.marksEchoed]?.values.count).toBeGreaterThan(0);
    // Calls 0 and 2 of smoke barge in (scenarios.js callScript): the relay must clear.
    expect(m[METRICS.bargeIns]?.values.count).toBeGreaterThan(0);
    expect(m[METRICS.clears]?.values.count).toBeGreaterThan(0);
    expect(m[METRICS.turnLatency]?.values.count).toBe(6);
    expect(m[METRICS.frameGap]?.values.count).toBeGreaterThan(0);
    expect(m[METRICS.webhookLatency]?.values.count).toBe(3);
    expect(r.thresholds.results.length).toBeGreaterThan(0);
    expect(r.thresholds.ok).toBe(true);
  });

  it('fails its thresholds when the webhook signature is wrong', async () => {
    const r = await runK6Script(callStorm, { env: env({ TWILIO_AUTH_TOKEN: 'not-the-token' }), vus: 1, iterations: 1, timeoutMs: 20_000 });
    expect(r.iterationErrors).toEqual([]);
    expect(r.httpRequests[0]?.status).toBe(403);
    expect(r.wsUpgrades).toEqual([]);
    expect(r.summary.metrics[METRICS.callsFailed]?.values.count).toBe(1);
    expect(r.thresholds.ok).toBe(false);
    expect(r.thresholds.results.filter((t) => !t.ok).map((t) => `${t.metric} ${t.expression}`)).toEqual(
      expect.arrayContaining([`${METRICS.callsCompleted} count>0`, `${METRICS.callsFailed} count<1`]),
    );
  });
});

describe('k6 scripts typecheck', () => {
  it('passes tsc -p loadtest/tsconfig.json against @types/k6', async () => {
    const tsc = `${root}node_modules/typescript/bin/tsc`;
    const run = promisify(execFile);
    const out = await run(process.execPath, [tsc, '-p', `${root}loadtest/tsconfig.json`], { cwd: root }).then(
      () => '',
      (err: { stdout?: string; message?: string }) => err.stdout || (err.message ?? 'tsc failed'),
    );
    expect(out).toBe('');
  });
});
