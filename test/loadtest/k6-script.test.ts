/**
 * The k6 scripts' own code path end to end: call-storm.js run by the k6 shim (VU worker threads,
 * real sockets) against a real relay, and the scripts typechecked against @types/k6.
 */
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildVoiceWebhook, parseTwiml } from '../../src/sim/portable/twilio-http.js';
import { METRICS } from '../../loadtest/lib/scenarios.js';
import { startFakeTwilioApi } from '../helpers/fake-twilio-api.js';
import type { Relay } from '../../src/server/app.js';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER } from '../../src/tenants/tenant.js';
import { runK6Script } from './k6-shim.js';
import { eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';

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

describe('k6 call-storm.js moved by a REST call update', () => {
  it('polls the simulated Twilio API, stops its stream on the update and goes on on the new stream', async () => {
    const api = await startFakeTwilioApi();
    const other = await startTestRelay({ TENANTS_FILE: '' });
    try {
      const run = runK6Script(callStorm, { env: env({ TWILIO_API_BASE_URL: api.url }), vus: 1, iterations: 1, timeoutMs: 40_000 });
      // The call registers by polling; once its stream runs on the first relay, Twilio gets an
      // update that connects a stream on the other relay (its webhook mints the stream token).
      await eventually(() => api.liveCalls().length > 0, 15_000, 'the call registered with the simulated Twilio API');
      const callSid = api.liveCalls()[0]!;
      await eventually(async () => metricValue(await scrape(relay), 'switchboard_active_calls') === 1, 15_000, 'the stream live on the first relay');
      const hmac = (key: string, data: string): string => createHmac('sha1', key).update(data, 'utf8').digest('base64');
      const hook = buildVoiceWebhook({ baseUrl: other.url, callSid, accountSid: DEMO_ACCOUNT_SID, from: '+15005550100', to: DEMO_NUMBER, authToken: DEMO_AUTH_TOKEN, hmacSha1Base64: hmac });
      const t = parseTwiml(await (await fetch(hook.url, { method: 'POST', headers: hook.headers, body: hook.body })).text());
      if (t.kind !== 'stream') throw new Error('no stream TwiML from the other relay');
      const params = Object.entries(t.parameters).map(([n, v]) => `<Parameter name="${n}" value="${v}"/>`).join('');
      const twiml = `<Response><Connect><Stream url="${t.streamUrl}">${params}</Stream></Connect></Response>`;
      const res = await fetch(`${api.url}/2010-04-01/Accounts/${DEMO_ACCOUNT_SID}/Calls/${callSid}.json`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${DEMO_ACCOUNT_SID}:${DEMO_AUTH_TOKEN}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ Twiml: twiml }).toString(),
      });
      expect(res.status).toBe(200);
      const r = await run;
      expect(r.iterationErrors).toEqual([]);
      expect(r.wsUpgrades.map((u) => [u.url, u.status])).toEqual([
        [`${relay.url.replace('http', 'ws')}/twilio/media`, 101],
        [t.streamUrl, 101],
      ]);
      const m = r.summary.metrics;
      expect(m[METRICS.moves]?.values.count).toBe(1);
      expect(m[METRICS.moveGap]?.values.count).toBe(1);
      expect(m[METRICS.moveGap]?.values.max).toBeLessThan(2000);
      expect(m[METRICS.callsCompleted]?.values.count).toBe(1);
      expect(m[METRICS.callsFailed]?.values.count).toBe(0);
      // The call told the API it was over.
      expect(api.callState(callSid)).toBe('ended');
      expect(r.httpRequests.some((h) => h.method === 'DELETE' && h.url === `${api.url}/sim/calls/${callSid}`)).toBe(true);
    } finally {
      await other.close();
      await api.close();
    }
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
