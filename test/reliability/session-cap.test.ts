/**
 * The realtime API's session cap (60 minutes: `error` session_expired, then close 1001 "Your session
 * hit the maximum duration of 60 minutes."), shortened to seconds in the sim. The relay renews the
 * session before the cap at a pause, with the conversation and without a second greeting; the cap
 * spends the renewal budget, not the drop budget; MAX_CALL_SECONDS ends the call with a goodbye.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallReport } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel, type SimModelOptions } from '../../src/sim/sim-model.js';
import { DEMO_TENANT } from '../../src/tenants/index.js';
import { demo, eventually, signedPost, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
let sim: SimModel | undefined;
afterEach(async () => {
  await relay?.close();
  await sim?.close();
  relay = sim = undefined;
});

const GREETING: string = DEMO_TENANT.model?.greeting ?? '';

async function relayToSim(faults: NonNullable<SimModelOptions['faults']>, env: Record<string, string>): Promise<Relay> {
  sim = await startSimModel({ mode: 'loadtest', faults });
  relay = await startTestRelay({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-sim', OPENAI_REALTIME_URL: sim.url, ...env });
  return relay;
}

const SAID = ['First question', 'Second question', 'Third question', 'Fourth question', 'Fifth question', 'Sixth question'];

function call(r: Relay, callSid: string, turns: string[], maxCallMs = 25_000): Promise<CallReport> {
  return placeCall({ baseUrl: r.url, ...demo, callSid, script: { turns: turns.map((say) => ({ say })), maxCallMs, hangupAfterMs: 1000, replyTimeoutMs: 4000 } });
}

async function outcomeOf(r: Relay, callSid: string, want: string): Promise<void> {
  await eventually(async () => (await r.store.getCall(callSid))?.outcome === want, 5000, `outcome ${want}`);
}

function greetings(s: SimModel): number {
  return s.sessions.flatMap((x) => x.received).filter((e) => e.type === 'response.create' && JSON.stringify(e).includes('Greet the caller')).length;
}

describe('the model session cap', () => {
  it('renewed at a pause before the cap: every turn answered, never expired, greeted once', async () => {
    const r = await relayToSim({ maxSessionMs: 3500 }, { MODEL_SESSION_RENEW_SECONDS: '1' });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, SAID.slice(0, 5));
    expect(report.greeting).toBe(GREETING);
    expect(report.turns.map((t) => t.heard)).toEqual(SAID.slice(0, 5).map((s) => `You said: ${s}. Anything else?`));
    expect(report.closeCode).toBe(1000);
    expect(sim!.sessions.length).toBeGreaterThanOrEqual(3);
    expect(sim!.sessions.some((s) => s.expired)).toBe(false);
    expect(greetings(sim!)).toBe(1);
    // Each new session got the conversation so far.
    const last = sim!.sessions.at(-1)!;
    const replayed = last.received.filter((e) => e.type === 'conversation.item.create').map((e) => JSON.stringify(e.item));
    expect(replayed.some((t) => t.includes('"role":"assistant"') && t.includes(GREETING))).toBe(true);
    expect(replayed.some((t) => t.includes('"role":"user"') && t.includes('First question'))).toBe(true);
    await outcomeOf(r, callSid, 'caller_hung_up');
  });

  it('the cap reached twice (renewal off) and a drop: separate budgets, the call goes on', async () => {
    let dropped = false;
    const r = await relayToSim({ maxSessionMs: 3000 }, { MODEL_SESSION_RENEW_SECONDS: '0' });
    const callSid = randomSid('CA');
    const pending = call(r, callSid, SAID);
    // One network drop of the first session, early: the drop budget (1) is spent.
    const s0 = await sim!.waitForSession();
    await sim!.waitForEvent(s0, (e) => e.type === 'response.create');
    setTimeout(() => {
      dropped = true;
      sim!.dropSession(s0.id);
    }, 1500);
    const report = await pending;
    expect(dropped).toBe(true);
    expect(report.greeting).toBe(GREETING);
    expect(report.closeCode).toBe(1000);
    expect(report.endedBy).toBe('caller');
    expect(sim!.sessions.filter((s) => s.expired).length).toBeGreaterThanOrEqual(2);
    expect(report.turns.at(-1)!.heard).toBe(`You said: ${SAID.at(-1)!}. Anything else?`);
    expect(greetings(sim!)).toBe(1);
    await outcomeOf(r, callSid, 'caller_hung_up');
  });

  it('MAX_CALL_SECONDS: the assistant says goodbye, the line closes with 4014, and Twilio hangs up politely', async () => {
    const r = await relayToSim({}, { MAX_CALL_SECONDS: '10' });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, [...SAID, ...SAID], 20_000);
    expect(report.closeCode).toBe(4014);
    expect(report.endedBy).toBe('relay');
    const s = sim!.sessions[0]!;
    const goodbye = s.received.find((e) => e.type === 'response.create' && JSON.stringify(e).includes('time limit'));
    expect(goodbye).toBeDefined();
    // The goodbye was generated and played before the close.
    expect(report.durationMs).toBeGreaterThan(10_000);
    await outcomeOf(r, callSid, 'too_long');
    const after = await signedPost(r, '/twilio/after-stream', { CallSid: callSid, AccountSid: demo.accountSid, To: demo.to });
    expect(after.body).toContain('Goodbye');
    expect(after.body).not.toContain('unavailable');
    expect(after.body).toContain('<Hangup/>');
  });
});
