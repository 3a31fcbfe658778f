/**
 * The model says no: a rejected session.update, failed responses. The simulated model answers as the
 * real API does (an `error` naming the client's event_id; response.done status `failed`), through the
 * real relay on real sockets; what the caller hears is read from the simulated caller and the
 * after-stream TwiML.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallReport } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel, type SimModelOptions } from '../../src/sim/sim-model.js';
import { DEMO_TENANT, TenantSchema } from '../../src/tenants/index.js';
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

/** A relay speaking to a sim model (loadtest pacing) with these faults, as if it were OpenAI. */
async function relayToSim(faults: SimModelOptions['faults'], env: Record<string, string> = {}): Promise<Relay> {
  sim = await startSimModel({ mode: 'loadtest', ...(faults ? { faults } : {}) });
  relay = await startTestRelay({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-sim', OPENAI_REALTIME_URL: sim.url, ...env });
  return relay;
}

function call(r: Relay, callSid: string, turns: string[]): Promise<CallReport> {
  return placeCall({ baseUrl: r.url, ...demo, callSid, script: { turns: turns.map((say) => ({ say })), maxCallMs: 20_000, hangupAfterMs: 1500, replyTimeoutMs: 4000 } });
}

async function afterStream(r: Relay, callSid: string): Promise<string> {
  return (await signedPost(r, '/twilio/after-stream', { CallSid: callSid, AccountSid: demo.accountSid, To: demo.to })).body;
}

async function outcomeOf(r: Relay, callSid: string, want: string): Promise<void> {
  await eventually(async () => (await r.store.getCall(callSid))?.outcome === want, 5000, `outcome ${want}`);
}

describe('a rejected session.update', () => {
  it('the error names the session.update by event_id; the caller gets the fallback within 1 s, not after the 15 s connect budget', async () => {
    const r = await relayToSim({ rejectSessionUpdate: { code: 'invalid_value', message: "Invalid value: 'robot'.", param: 'session.audio.output.voice' } });
    const callSid = randomSid('CA');
    let updateAt = 0;
    const pending = call(r, callSid, ['Hello?']);
    const s = await sim!.waitForSession();
    const update = await sim!.waitForEvent(s, (e) => e.type === 'session.update');
    updateAt = performance.now();
    const report = await pending;
    const closedAfterMs = performance.now() - updateAt;
    expect(typeof update.event_id).toBe('string');
    expect(report.closeCode).toBe(4010);
    expect(report.greeting).toBe('');
    // The report resolves after the caller noticed the close; the relay itself closes at once.
    expect(closedAfterMs).toBeLessThan(1000);
    await outcomeOf(r, callSid, 'model_unavailable');
    expect(await afterStream(r, callSid)).toContain(APOLOGY);
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_model_errors_total', { kind: 'error', code: 'session_update_rejected' })).toBe(1);
    // One session only: a new session would be refused the same way.
    expect(sim!.sessions).toHaveLength(1);
  });

  it('every client event but audio appends carries a distinct event_id', async () => {
    const r = await relayToSim(undefined);
    const report = await call(r, randomSid('CA'), ['Hello there']);
    expect(report.greeting).toBe(GREETING);
    const events = sim!.sessions[0]!.received;
    expect(events.length).toBeGreaterThanOrEqual(2);
    const ids = events.map((e) => e.event_id);
    for (const id of ids) expect(typeof id).toBe('string');
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('the sim refuses a voice and a tool schema the real API refuses, naming the event_id', async () => {
    sim = await startSimModel({ mode: 'loadtest' });
    const { default: WebSocket } = await import('ws');
    const ws = new WebSocket(sim.url + '?model=gpt-realtime');
    const errors: Record<string, unknown>[] = [];
    const types: string[] = [];
    ws.on('message', (d) => {
      const ev = JSON.parse((d as Buffer).toString()) as { type: string; error?: Record<string, unknown> };
      types.push(ev.type);
      if (ev.type === 'error' && ev.error) errors.push(ev.error);
    });
    await new Promise((res) => ws.once('open', res));
    ws.send(JSON.stringify({ type: 'session.update', event_id: 'ev_voice', session: { type: 'realtime', audio: { output: { voice: 'robot' } } } }));
    ws.send(JSON.stringify({ type: 'session.update', event_id: 'ev_tool', session: { type: 'realtime', tools: [{ type: 'function', name: 'x', parameters: { type: 'object', properties: { a: { type: 'strin' } } } }] } }));
    await eventually(() => errors.length === 2, 3000, 'two errors');
    ws.close();
    expect(errors[0]).toMatchObject({ code: 'invalid_value', event_id: 'ev_voice', param: 'session.audio.output.voice' });
    expect(errors[1]).toMatchObject({ code: 'invalid_function_parameters', event_id: 'ev_tool', param: 'session.tools[0].parameters' });
    expect(types).not.toContain('session.updated');
  });

  it('tenants with such a voice, tool schema or language are refused when saved', () => {
    const bad = (patch: Record<string, unknown>) => TenantSchema.safeParse({ ...DEMO_TENANT, ...patch });
    const voice = bad({ model: { ...DEMO_TENANT.model, voice: 'robot' } });
    expect(voice.success).toBe(false);
    expect(JSON.stringify(voice.error?.issues)).toContain('must be one of alloy');
    const language = bad({ model: { ...DEMO_TENANT.model, language: 'english' } });
    expect(language.success).toBe(false);
    const hook = { name: 'lookup', description: 'd', url: 'https://example.com/hook', secret: { env: 'HOOK_SECRET' } };
    const schema = bad({ webhookTools: [{ ...hook, parameters: { type: 'object', properties: { a: { type: 'strin' } } } }] });
    expect(schema.success).toBe(false);
    expect(JSON.stringify(schema.error?.issues)).toContain('parameters.properties.a.type');
    expect(bad({ webhookTools: [{ ...hook, parameters: { type: 'array' } }] }).success).toBe(false);
    expect(bad({ webhookTools: [{ ...hook, parameters: { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] } }] }).success).toBe(true);
  });
});

describe('response.done with status failed', () => {
  it('a failed greeting is asked for once more: the caller hears it, the failure is counted', async () => {
    const r = await relayToSim({ failResponses: { count: 1 } });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, ['After the retry']);
    expect(report.greeting).toBe(GREETING);
    expect(report.turns[0]!.heard).toBe('You said: After the retry. Anything else?');
    expect(report.closeCode).toBe(1000);
    const creates = sim!.sessions[0]!.received.filter((e) => e.type === 'response.create');
    expect(creates).toHaveLength(2);
    expect(JSON.stringify(creates[1])).toContain('Greet the caller');
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_model_errors_total', { kind: 'response', code: 'server_error' })).toBe(1);
    await outcomeOf(r, callSid, 'caller_hung_up');
  });

  it('failed twice in a row: the fallback at once', async () => {
    const r = await relayToSim({ failResponses: { count: 2 } });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, ['Hello?']);
    expect(report.closeCode).toBe(4010);
    expect(report.greeting).toBe('');
    await outcomeOf(r, callSid, 'model_failed');
    expect(await afterStream(r, callSid)).toContain(APOLOGY);
    expect(metricValue(await scrape(r), 'switchboard_model_errors_total', { kind: 'response' })).toBe(2);
  });

  it('failed for quota: no retry, the fallback at once', async () => {
    const r = await relayToSim({
      failResponses: { count: 1, error: { type: 'insufficient_quota', code: 'insufficient_quota', message: 'You exceeded your current quota.' } },
    });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, ['Hello?']);
    expect(report.closeCode).toBe(4010);
    expect(sim!.sessions[0]!.received.filter((e) => e.type === 'response.create')).toHaveLength(1);
    await outcomeOf(r, callSid, 'model_failed');
    expect(metricValue(await scrape(r), 'switchboard_model_errors_total', { kind: 'response', code: 'insufficient_quota' })).toBe(1);
  });
});
