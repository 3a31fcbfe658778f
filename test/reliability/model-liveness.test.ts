/**
 * A model socket that stops answering (NAT drop, half-open TCP, a wedged session) with the socket
 * left open: the relay's ws keepalive and its stall rule notice, re-open the session with the
 * conversation, and fall back when that fails too. Real relay, real sim model, real sockets.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallReport } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel, type SimModelOptions } from '../../src/sim/sim-model.js';
import { DEMO_TENANT } from '../../src/tenants/index.js';
import { demo, eventually, metricValue, scrape, signedPost, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
let sim: SimModel | undefined;
afterEach(async () => {
  await relay?.close();
  await sim?.close();
  relay = sim = undefined;
});

const GREETING: string = DEMO_TENANT.model?.greeting ?? '';
const APOLOGY = '<Say>Sorry, our assistant is unavailable. Connecting you to a person.</Say>';

async function relayToSim(faults: NonNullable<SimModelOptions['faults']>, env: Record<string, string>): Promise<Relay> {
  sim = await startSimModel({ mode: 'loadtest', faults });
  relay = await startTestRelay({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-sim', OPENAI_REALTIME_URL: sim.url, ...env });
  return relay;
}

function call(r: Relay, callSid: string, turns: { say: string; speechMs?: number }[]): Promise<CallReport> {
  return placeCall({ baseUrl: r.url, ...demo, callSid, script: { turns, maxCallMs: 20_000, hangupAfterMs: 1000, replyTimeoutMs: 3000 } });
}

async function outcomeOf(r: Relay, callSid: string, want: string): Promise<void> {
  await eventually(async () => (await r.store.getCall(callSid))?.outcome === want, 5000, `outcome ${want}`);
}

describe('a model socket that stops answering', () => {
  it('dead (no pongs, no events, socket open): the keepalive cuts it and a new session answers the caller', async () => {
    const r = await relayToSim(
      { stall: { afterResponses: 1, mode: 'dead' } },
      { MODEL_KEEPALIVE_INTERVAL_MS: '200', MODEL_KEEPALIVE_TIMEOUT_MS: '300', MODEL_STALL_TIMEOUT_MS: '0' },
    );
    const callSid = randomSid('CA');
    const report = await call(r, callSid, [{ say: 'Is anyone there', speechMs: 1500 }, { say: 'Hello again' }]);
    expect(report.greeting).toBe(GREETING);
    // The second session, told the conversation so far, answers.
    expect(report.turns[1]!.heard).toBe('You said: Hello again. Anything else?');
    expect(report.closeCode).toBe(1000);
    expect(sim!.sessions).toHaveLength(2);
    const replayed = sim!.sessions[1]!.received.filter((e) => e.type === 'conversation.item.create').map((e) => JSON.stringify(e.item));
    expect(replayed.some((t) => t.includes('"role":"assistant"') && t.includes(GREETING))).toBe(true);
    // No second greeting in the new session.
    expect(sim!.sessions[1]!.received.some((e) => e.type === 'response.create' && JSON.stringify(e).includes('Greet the caller'))).toBe(false);
    expect(metricValue(await scrape(r), 'switchboard_model_errors_total', { kind: 'socket', code: 'keepalive_timeout' })).toBe(1);
    await outcomeOf(r, callSid, 'caller_hung_up');
  });

  it('deaf (pongs, but no events while the caller talks): the stall rule re-opens the session; deaf again, the caller gets the fallback', async () => {
    const r = await relayToSim(
      { stall: { afterResponses: 1, mode: 'deaf', sessions: 2 } },
      { MODEL_KEEPALIVE_INTERVAL_MS: '200', MODEL_KEEPALIVE_TIMEOUT_MS: '300', MODEL_STALL_TIMEOUT_MS: '1000' },
    );
    const callSid = randomSid('CA');
    const report = await call(r, callSid, [
      { say: 'Can you hear me', speechMs: 2500 },
      { say: 'Hello hello', speechMs: 2500 },
      { say: 'Anyone', speechMs: 2500 },
    ]);
    expect(report.greeting).toBe(GREETING);
    expect(report.closeCode).toBe(4010);
    expect(report.endedBy).toBe('relay');
    // Sessions 0 and 1 both went deaf; pongs kept coming, so only the stall rule saw it.
    expect(sim!.sessions).toHaveLength(2);
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_model_errors_total', { kind: 'socket', code: 'stalled' })).toBe(2);
    expect(metricValue(m, 'switchboard_model_errors_total', { kind: 'socket', code: 'keepalive_timeout' })).toBe(0);
    await outcomeOf(r, callSid, 'model_failed');
    const after = await signedPost(r, '/twilio/after-stream', { CallSid: callSid, AccountSid: demo.accountSid, To: demo.to });
    expect(after.body).toContain(APOLOGY);
  });

  it('deaf from the start (the greeting never comes): the stall rule re-opens the session, which greets', async () => {
    const r = await relayToSim(
      { stall: { afterResponses: 0, mode: 'deaf' } },
      { MODEL_KEEPALIVE_INTERVAL_MS: '200', MODEL_KEEPALIVE_TIMEOUT_MS: '300', MODEL_STALL_TIMEOUT_MS: '1000' },
    );
    const callSid = randomSid('CA');
    const report = await call(r, callSid, [{ say: 'Hello there' }]);
    expect(report.greeting).toBe(GREETING);
    expect(report.turns[0]!.heard).toBe('You said: Hello there. Anything else?');
    expect(report.closeCode).toBe(1000);
    expect(sim!.sessions).toHaveLength(2);
    expect(metricValue(await scrape(r), 'switchboard_model_errors_total', { kind: 'socket', code: 'stalled' })).toBe(1);
    await outcomeOf(r, callSid, 'caller_hung_up');
  });

  it('a quiet caller and a quiet model are not a stall', async () => {
    const r = await relayToSim({}, { MODEL_KEEPALIVE_INTERVAL_MS: '200', MODEL_KEEPALIVE_TIMEOUT_MS: '300', MODEL_STALL_TIMEOUT_MS: '500' });
    const callSid = randomSid('CA');
    // Long monologue (speech_started, then nothing from the model until the caller stops), then silence.
    const report = await placeCall({
      baseUrl: r.url,
      ...demo,
      callSid,
      script: { turns: [{ say: 'A long story', speechMs: 2000 }], maxCallMs: 20_000, hangupAfterMs: 1500, replyTimeoutMs: 3000 },
    });
    expect(report.turns[0]!.heard).toBe('You said: A long story. Anything else?');
    expect(report.closeCode).toBe(1000);
    expect(sim!.sessions).toHaveLength(1);
  });
});
