/**
 * Usage and budgets end to end: two relays on one Redis speak to one simulated model that reports
 * usage the way OpenAI does; per-call and per-tenant totals, /v1/usage (JSON and CSV) and the token
 * metrics must equal what the model reported, exactly. A tenant over its budget gets its TwiML.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallReport } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel } from '../../src/sim/sim-model.js';
import type { SimUsageTotals } from '../../src/sim/sim-usage.js';
import { createLogger } from '../../src/telemetry/index.js';
import { eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

const ADMIN_TOKEN = 'admin-token-for-usage-tests-0001';
const billed = {
  id: 'billed-co',
  displayName: 'Billed Co',
  phoneNumbers: ['+15005550171'],
  // A real model provider refuses inline tokens: by reference, as in production.
  twilio: { accountSid: 'AC' + '7'.repeat(32), authToken: { env: 'BILLED_CO_AUTH_TOKEN' } },
  tools: ['end_call'],
};
const capped = {
  id: 'capped-co',
  displayName: 'Capped Co',
  phoneNumbers: ['+15005550172'],
  twilio: { accountSid: 'AC' + '8'.repeat(32), authToken: { env: 'CAPPED_CO_AUTH_TOKEN' } },
  tools: ['end_call'],
  // Half a second of calls per day: the first call spends it.
  budget: {
    period: 'day',
    callMinutes: 0.5 / 60,
    warnAt: 0.5,
    whenExceeded: { action: 'voicemail', message: 'We are closed for today. Please leave a message.', maxSeconds: 60 },
  },
};
const TOKENS = { BILLED_CO_AUTH_TOKEN: 'billed-co-auth-token-not-secret', CAPPED_CO_AUTH_TOKEN: 'capped-co-auth-token-not-secret' };
const dial = (t: typeof billed) => ({ to: t.phoneNumbers[0]!, accountSid: t.twilio.accountSid, authToken: TOKENS[t.twilio.authToken.env as keyof typeof TOKENS] });

/** gpt-realtime, nano-dollars per token (USD per 1M tokens × 1000), as on OpenAI's model page. */
const RATE = { inputText: 4000, inputTextCached: 400, outputText: 16_000, inputAudio: 32_000, inputAudioCached: 400, outputAudio: 64_000 };
const KINDS = ['inputText', 'inputAudio', 'inputTextCached', 'inputAudioCached', 'outputText', 'outputAudio'] as const;

function sumSim(list: readonly SimUsageTotals[]): SimUsageTotals {
  const t: SimUsageTotals = { responses: 0, inputText: 0, inputAudio: 0, inputTextCached: 0, inputAudioCached: 0, outputText: 0, outputAudio: 0 };
  for (const u of list) for (const k of ['responses', ...KINDS] as const) t[k] += u[k];
  return t;
}
const costNano = (u: SimUsageTotals): number => KINDS.reduce((c, k) => c + u[k] * RATE[k], 0);
const tokensView = (u: SimUsageTotals) => ({
  input: { text: u.inputText, audio: u.inputAudio, cachedText: u.inputTextCached, cachedAudio: u.inputAudioCached },
  output: { text: u.outputText, audio: u.outputAudio },
});

let dir: string;
let redis: RedisServer;
let sim: SimModel;
let a: Relay;
let b: Relay;
const logA: Record<string, unknown>[] = [];

async function admin(relay: Relay, path: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown>; text: string; type: string }> {
  const res = await fetch(relay.url + path, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(init.headers ?? {}) } });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // CSV
  }
  return { status: res.status, body, text, type: res.headers.get('content-type') ?? '' };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sb-usage-'));
  const tenantsFile = join(dir, 'tenants.json');
  writeFileSync(tenantsFile, JSON.stringify([billed, capped]));
  redis = await startRedisServer();
  sim = await startSimModel({ mode: 'loadtest' });
  const env = {
    REDIS_URL: redis.url,
    TENANTS_FILE: tenantsFile,
    ADMIN_TOKEN,
    MODEL_PROVIDER: 'openai',
    OPENAI_API_KEY: 'sk-test-usage',
    OPENAI_REALTIME_URL: sim.url,
    OPENAI_REALTIME_MODEL: 'gpt-realtime-2025-08-28',
    USAGE_FLUSH_SECONDS: '1',
    ...TOKENS,
  };
  const log = createLogger({ level: 'info', destination: { write: (s: string) => void logA.push(JSON.parse(s) as Record<string, unknown>) } });
  a = await startTestRelay(env, { pod: 'pod-a', log });
  b = await startTestRelay(env, { pod: 'pod-b' });
}, 40_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  await sim?.close();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const talk = (relay: Relay, t: typeof billed, say: string[], hangupAfterMs = 300): Promise<CallReport> =>
  placeCall({
    baseUrl: relay.url,
    ...dial(t),
    callSid: randomSid('CA'),
    script: { turns: say.map((s) => ({ say: s })), maxCallMs: 20_000, hangupAfterMs, replyTimeoutMs: 5000 },
  });

describe('usage per call and per tenant', () => {
  it('per call, per tenant, in /v1/usage (JSON and CSV) and in the metrics: exactly what the model reported, across two relays', async () => {
    const before = sim.sessions.length;
    // One call alone first, so its model session is known.
    const first = await talk(a, billed, ['Hello there', 'Tell me more']);
    expect(first.stage).toBe('connected');
    expect(first.turns.map((t) => t.heard)).toEqual(['You said: Hello there. Anything else?', 'You said: Tell me more. Anything else?']);
    const s1 = sim.sessions[before]!;
    await eventually(() => s1.closed, 5000, 'the first model session closed');
    // greeting + two answers, every one billed
    expect(s1.usage.responses).toBe(3);
    expect(s1.usage.inputTextCached).toBeGreaterThan(0);

    const one = await admin(b, `/v1/calls/${first.callSid}`);
    expect(one.status).toBe(200);
    const u1 = one.body['usage'] as { callSeconds: number; toolCalls: number; responses: number; tokens: unknown; estimatedCostUsd: number };
    expect(u1.tokens).toEqual(tokensView(s1.usage));
    expect(u1.responses).toBe(3);
    expect(u1.estimatedCostUsd).toBe(costNano(s1.usage) / 1e9);
    expect(u1.callSeconds).toBeGreaterThan(1);
    expect(u1.callSeconds * 1000).toBeLessThanOrEqual(first.durationMs + 1000);
    // The call-ended log line carries the same usage.
    const ended = logA.find((l) => l['msg'] === 'call ended' && l['callSid'] === first.callSid);
    expect(ended?.['usage']).toMatchObject({ tokens: tokensView(s1.usage), responses: 3 });

    // Three more, on both pods at once.
    const more = await Promise.all([talk(a, billed, ['One more']), talk(b, billed, ['And another']), talk(b, billed, ['A last one'])]);
    expect(more.map((r) => r.stage)).toEqual(['connected', 'connected', 'connected']);
    const sessions = sim.sessions.slice(before);
    expect(sessions).toHaveLength(4);
    await eventually(() => sessions.every((s) => s.closed), 5000, 'model sessions closed');
    const all = sumSim(sessions.map((s) => s.usage));
    const callSeconds: number[] = [];
    for (const r of [first, ...more]) {
      const u = (await admin(a, `/v1/calls/${r.callSid}`)).body['usage'] as { callSeconds: number };
      callSeconds.push(u.callSeconds);
    }

    const day = new Date().toISOString().slice(0, 10);
    const res = await admin(a, `/v1/usage?tenant=billed-co&granularity=day&from=${day}`);
    expect(res.status).toBe(200);
    const tenants = res.body['tenants'] as { tenant: string; total: Record<string, unknown>; buckets: Record<string, unknown>[] }[];
    expect(tenants).toHaveLength(1);
    expect(tenants[0]!.total).toMatchObject({
      calls: 4,
      responses: all.responses,
      tokens: tokensView(all),
      estimatedCostNanoUsd: costNano(all),
      toolCalls: 0,
    });
    expect(tenants[0]!.total['callSeconds']).toBeCloseTo(callSeconds.reduce((x, y) => x + y, 0), 6);
    expect(tenants[0]!.buckets).toHaveLength(1);
    expect(res.body['prices']).toMatchObject({ model: 'gpt-realtime-2025-08-28', takenOn: '2026-12-05' });
    // Both pods answer the same.
    expect((await admin(b, `/v1/usage?tenant=billed-co&granularity=day&from=${day}`)).body['tenants']).toEqual(tenants);

    // CSV, hour by hour, for the billing export.
    const csv = await admin(b, `/v1/usage?granularity=hour&from=${day}&format=csv`);
    expect(csv.type).toMatch(/^text\/csv/);
    const rows = csv.text.trim().split('\n');
    expect(rows[0]).toBe(
      'tenant,start,end,calls,call_seconds,tool_calls,responses,input_text_tokens,input_audio_tokens,input_cached_text_tokens,input_cached_audio_tokens,output_text_tokens,output_audio_tokens,estimated_cost_usd',
    );
    const mine = rows.slice(1).map((r) => r.split(',')).filter((c) => c[0] === 'billed-co');
    const col = (i: number): number => mine.reduce((s, c) => s + Number(c[i]), 0);
    expect([col(3), col(6), col(7), col(8), col(9), col(10), col(11), col(12)]).toEqual([
      4,
      all.responses,
      all.inputText,
      all.inputAudio,
      all.inputTextCached,
      all.inputAudioCached,
      all.outputText,
      all.outputAudio,
    ]);
    expect(col(13)).toBeCloseTo(costNano(all) / 1e9, 9);

    // Token metrics: each pod counts its own calls; together they are the model's numbers.
    const [ma, mb] = [await scrape(a), await scrape(b)];
    const metric = (direction: string, modality: string): number =>
      metricValue(ma, 'switchboard_model_tokens_total', { tenant: 'billed-co', direction, modality }) +
      metricValue(mb, 'switchboard_model_tokens_total', { tenant: 'billed-co', direction, modality });
    expect(metric('input', 'text')).toBe(all.inputText);
    expect(metric('input', 'audio')).toBe(all.inputAudio);
    expect(metric('input', 'cached_text')).toBe(all.inputTextCached);
    expect(metric('input', 'cached_audio')).toBe(all.inputAudioCached);
    expect(metric('output', 'text')).toBe(all.outputText);
    expect(metric('output', 'audio')).toBe(all.outputAudio);
    const cost =
      metricValue(ma, 'switchboard_estimated_cost_usd_total', { tenant: 'billed-co' }) + metricValue(mb, 'switchboard_estimated_cost_usd_total', { tenant: 'billed-co' });
    expect(cost).toBeCloseTo(costNano(all) / 1e9, 9);
    const seconds =
      metricValue(ma, 'switchboard_call_seconds_total', { tenant: 'billed-co' }) + metricValue(mb, 'switchboard_call_seconds_total', { tenant: 'billed-co' });
    expect(seconds).toBeCloseTo(callSeconds.reduce((x, y) => x + y, 0), 3);
  }, 60_000);

  it('answers bad queries with 400 and unknown tokens with 401', async () => {
    expect((await admin(a, '/v1/usage?granularity=week')).status).toBe(400);
    expect((await admin(a, '/v1/usage?from=yesterday')).status).toBe(400);
    expect((await admin(a, '/v1/usage?from=2026-12-05&to=2026-12-01')).status).toBe(400);
    expect((await admin(a, '/v1/usage?granularity=hour&from=2020-01-01&to=2026-01-01')).status).toBe(400);
    const res = await fetch(`${a.url}/v1/usage`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } });
    expect(res.status).toBe(401);
  });
});

describe('budgets', () => {
  it('a tenant over its budget gets its voicemail TwiML instead of the model; the live call is not cut; logged and counted', async () => {
    // A call longer than the whole budget: its own periodic writes spend the budget while it runs.
    const long = talk(a, capped, ['Hello, I have a long question'], 3000);
    await eventually(
      async () => ((await admin(b, '/v1/usage?tenant=capped-co&granularity=day')).body['tenants'] as { total: { callSeconds: number } }[])[0]!.total.callSeconds >= 0.5,
      10_000,
      "the live call's usage past the budget",
    );
    const refused = await talk(a, capped, ['Is anyone there?']);
    expect(refused.stage).toBe('not-connected');
    expect(refused.refused).toBe('budget'); // the X-Switchboard-Refused header `npm run call` reports
    expect(refused.spoken).toContain('We are closed for today. Please leave a message.');
    const xml = refused.twiml?.kind === 'other' ? refused.twiml.verbs.map((v) => v.verb) : [];
    expect(xml).toEqual(['Say', 'Record', 'Say', 'Hangup']);
    // The call already live goes on to its end.
    const done = await long;
    expect(done.stage).toBe('connected');
    expect(done.turns[0]?.heard).toBe('You said: Hello, I have a long question. Anything else?');
    expect(done.endedBy).toBe('caller');

    const m = await scrape(a);
    expect(metricValue(m, 'switchboard_calls_total', { outcome: 'rejected_budget', tenant: 'capped-co' })).toBe(1);
    expect(metricValue(m, 'switchboard_budget_refusals_total', { tenant: 'capped-co' })).toBe(1);
    expect(metricValue(m, 'switchboard_budget_used_ratio', { tenant: 'capped-co' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(m, 'switchboard_budget_warn_ratio', { tenant: 'capped-co' })).toBe(0.5);
    const line = logA.find((l) => l['msg']?.toString().includes('over its budget'));
    expect(line).toMatchObject({ code: 'budget_exceeded', tenant: 'capped-co', callSid: refused.callSid, action: 'voicemail' });

    // Raising the budget through /v1/tenants on pod B lets the next call through on pod A.
    const patched = await admin(b, '/v1/tenants/capped-co', {
      method: 'PATCH',
      headers: { 'content-type': 'application/merge-patch+json' },
      body: JSON.stringify({ budget: { callMinutes: 60 } }),
    });
    expect(patched.status).toBe(200);
    await eventually(async () => (await talk(a, capped, ['Open again?'])).stage === 'connected', 10_000, 'the raised budget on pod A');
  }, 60_000);
});
