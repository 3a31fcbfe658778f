/**
 * Model upstream faults through the real relay: refused/slow/unauthorised upgrades, drops mid-call,
 * malformed events, giant deltas and session expiry, injected by the fault model on real sockets.
 * What the caller hears is read from the simulated caller's report and the after-stream TwiML.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallReport } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel } from '../../src/sim/sim-model.js';
import { DEMO_TENANT } from '../../src/tenants/index.js';
import { atToolOutput, dropBetweenToolOutputAndDone, failAfterToolOutput, startFaultModel, type FaultModel, type FaultModelOptions } from '../helpers/fault-model.js';
import { demo, eventually, mediaFrame, metricValue, rawStream, scrape, signedPost, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
let fault: FaultModel | undefined;
let sim: SimModel | undefined;
afterEach(async () => {
  await relay?.close();
  await fault?.close();
  await sim?.close();
  relay = fault = sim = undefined;
});

const GREETING: string = DEMO_TENANT.model?.greeting ?? '';
const APOLOGY = '<Say>Sorry, our assistant is unavailable. Connecting you to a person.</Say>';
const HAND_OFF = 'Connecting you now. <Dial>+15005550007';

async function relayTo(model: FaultModel, env: Record<string, string> = {}): Promise<Relay> {
  return startTestRelay({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-fault', OPENAI_REALTIME_URL: model.url, ...env });
}

/** The fault model in front of a real (loadtest-paced) sim model: realistic turns, injectable faults. */
async function proxied(o: Omit<FaultModelOptions, 'upstream'> = {}): Promise<{ fault: FaultModel; relay: Relay }> {
  sim = await startSimModel({ mode: 'loadtest' });
  fault = await startFaultModel({ ...o, upstream: sim.url });
  relay = await relayTo(fault);
  return { fault, relay };
}

async function afterStream(r: Relay, callSid: string): Promise<string> {
  return (await signedPost(r, '/twilio/after-stream', { CallSid: callSid, AccountSid: demo.accountSid, To: demo.to })).body;
}

async function outcomeOf(r: Relay, callSid: string, want: string): Promise<void> {
  await eventually(async () => (await r.store.getCall(callSid))?.outcome === want, 5000, `outcome ${want}`);
}

function call(r: Relay, callSid: string, turns: string[], maxCallMs = 20_000): Promise<CallReport> {
  return placeCall({ baseUrl: r.url, ...demo, callSid, script: { turns: turns.map((say) => ({ say })), maxCallMs, hangupAfterMs: 1500, replyTimeoutMs: 4000 } });
}

describe('model upstream: connecting', () => {
  it('503 twice then accepted: the relay retries and the caller hears the greeting', async () => {
    fault = await startFaultModel({ upgrade: (n) => (n < 2 ? { kind: 'status', status: 503 } : { kind: 'accept' }) });
    relay = await relayTo(fault, { MODEL_CONNECT_ATTEMPTS: '3' });
    const report = await call(relay, randomSid('CA'), []);
    expect(fault.attempts).toBe(3);
    expect(report.greeting).toBe('fault model reply');
    // The caller hung up (stop, then the relay's normal close): no fault code.
    expect(report.endedBy).toBe('caller');
    expect(report.closeCode).toBe(1000);
    const m = await scrape(relay);
    expect(metricValue(m, 'switchboard_upstream_connect_seconds_count', { outcome: 'ok' })).toBe(1);
  });

  it('401: no retry, 4010 at once, the call record says model_unavailable and the caller is put through to a person', async () => {
    fault = await startFaultModel({ upgrade: () => ({ kind: 'status', status: 401 }) });
    relay = await relayTo(fault, { MODEL_CONNECT_ATTEMPTS: '5' });
    const callSid = randomSid('CA');
    const report = await call(relay, callSid, ['Hello?']);
    expect(report.closeCode).toBe(4010);
    expect(report.endedBy).toBe('relay');
    expect(fault.attempts).toBe(1);
    await outcomeOf(relay, callSid, 'model_unavailable');
    expect(await afterStream(relay, callSid)).toContain(APOLOGY);
    expect(metricValue(await scrape(relay), 'switchboard_active_calls')).toBe(0);
  });

  it('accepts TCP but never upgrades: each attempt times out, all attempts are made, then 4010 and the fallback', async () => {
    fault = await startFaultModel({ upgrade: () => ({ kind: 'hang' }) });
    relay = await relayTo(fault, { MODEL_CONNECT_ATTEMPTS: '3', MODEL_CONNECT_TIMEOUT_MS: '300' });
    const callSid = randomSid('CA');
    const t0 = performance.now();
    const report = await call(relay, callSid, ['Hello?']);
    const ms = performance.now() - t0;
    expect(report.closeCode).toBe(4010);
    expect(report.greeting).toBe('');
    expect(fault.attempts).toBe(3);
    // 3 × 300 ms timeouts plus two backoffs (≤ 2 × 500 ms with jitter): bounded, not the 30 s ws default.
    expect(ms).toBeLessThan(5000);
    await outcomeOf(relay, callSid, 'model_unavailable');
    expect(await afterStream(relay, callSid)).toContain(APOLOGY);
  });

  it('slow first attempt, good second: the call goes on after one timeout', async () => {
    fault = await startFaultModel({ upgrade: (n) => (n === 0 ? { kind: 'hang' } : { kind: 'accept' }) });
    relay = await relayTo(fault, { MODEL_CONNECT_ATTEMPTS: '2', MODEL_CONNECT_TIMEOUT_MS: '300' });
    const report = await call(relay, randomSid('CA'), []);
    expect(fault.attempts).toBe(2);
    expect(report.greeting).toBe('fault model reply');
    expect(report.endedBy).toBe('caller');
    expect(report.closeCode).toBe(1000);
  });

  it('TCP reset on every upgrade: retried like a refusal, then 4010', async () => {
    fault = await startFaultModel({ upgrade: () => ({ kind: 'reset' }) });
    relay = await relayTo(fault, { MODEL_CONNECT_ATTEMPTS: '2' });
    const callSid = randomSid('CA');
    const report = await call(relay, callSid, []);
    expect(report.closeCode).toBe(4010);
    expect(fault.attempts).toBe(2);
    await outcomeOf(relay, callSid, 'model_unavailable');
  });
});

describe('model upstream: mid-call', () => {
  it('dropped mid-call: one new session with the conversation replayed, the caller keeps talking; a second drop ends with 4010 and the apology', async () => {
    let done0 = 0;
    let done1 = 0;
    const { fault: f, relay: r } = await proxied({
      onServerEvent(conn, ev) {
        // Session 0: drop right after the reply to the first turn was generated (greeting + 1).
        if (conn.index === 0 && ev.type === 'response.done' && ++done0 === 2) setImmediate(() => conn.drop());
        // Session 1: once its first reply is done and the caller has started the next turn.
        if (conn.index === 1 && ev.type === 'response.done') done1++;
        if (conn.index === 1 && done1 >= 1 && ev.type === 'input_audio_buffer.speech_started') setImmediate(() => conn.drop());
      },
    });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, ['I need a plumber', 'My sink is leaking', 'Are you still there'], 30_000);
    expect(report.greeting).toBe(GREETING);
    expect(report.turns[0]!.heard).toBe('You said: I need a plumber. Anything else?');
    // Answered by the second session, which knew the conversation.
    expect(report.turns[1]!.heard).toBe('You said: My sink is leaking. Anything else?');
    expect(report.closeCode).toBe(4010);
    expect(report.endedBy).toBe('relay');
    expect(f.connections).toHaveLength(2);
    const replayed = f.connections[1]!.received.filter((e) => e.type === 'conversation.item.create').map((e) => JSON.stringify(e.item));
    expect(replayed.some((t) => t.includes('"role":"user"') && t.includes('I need a plumber'))).toBe(true);
    expect(replayed.some((t) => t.includes('"role":"assistant"') && t.includes(GREETING))).toBe(true);
    await outcomeOf(r, callSid, 'model_failed');
    const rec = (await r.store.getCall(callSid))!;
    // Kept: the transcript from both sessions.
    expect(rec.transcript.some((t) => t.role === 'caller' && t.text.includes('My sink is leaking'))).toBe(true);
    expect(await afterStream(r, callSid)).toContain(APOLOGY);
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_active_calls')).toBe(0);
    expect(metricValue(m, 'switchboard_calls_total', { outcome: 'model_failed' })).toBe(1);
    await eventually(() => sim!.stats().openSessions === 0, 5000, 'sim sessions closed');
  });

  it('malformed and unknown events mid-call are ignored: no reconnect, the next turn is answered', async () => {
    let injected = false;
    const { fault: f, relay: r } = await proxied({
      onServerEvent(conn, ev) {
        if (injected || ev.type !== 'response.done') return;
        injected = true;
        for (const junk of [
          '{"type":"response.output_audio.delta"',
          'not json at all',
          '[]',
          '42',
          '{"no_type":true}',
          '{"type":"response.brand_new_event","payload":{"x":1}}',
          '{"type":"response.output_audio.delta","response_id":7,"delta":null}',
          '{"type":"response.done","response":"nope"}',
          '{"type":"error","error":{"code":"some_new_error","message":"surprise"}}',
          '{"type":"session.updated","session":{"audio":{"output":{"format":{"type":"audio/pcm"}}}}}',
        ]) {
          conn.sendRaw(junk);
        }
        conn.sendRaw(Buffer.from([0xde, 0xad, 0xbe, 0xef]), true);
      },
    });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, ['First question', 'Second question']);
    expect(injected).toBe(true);
    expect(report.turns.map((t) => t.heard)).toEqual(['You said: First question. Anything else?', 'You said: Second question. Anything else?']);
    expect(report.endedBy).toBe('caller');
    expect(report.closeCode).toBe(1000);
    expect(f.connections).toHaveLength(1);
    await outcomeOf(r, callSid, 'caller_hung_up');
  });

  it('session expiry (error session_expired, then close 1001): a new session carries the call on', async () => {
    let expired = false;
    const { fault: f, relay: r } = await proxied({
      onServerEvent(conn, ev) {
        if (conn.index !== 0 || expired || ev.type !== 'response.done') return;
        expired = true;
        setImmediate(() => {
          conn.send({ type: 'error', error: { type: 'invalid_request_error', code: 'session_expired', message: 'Your session hit the maximum duration of 60 minutes.' } });
          conn.close(1001, 'session expired');
        });
      },
    });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, ['Still there after the expiry']);
    expect(report.greeting).toBe(GREETING);
    expect(report.turns[0]!.heard).toBe('You said: Still there after the expiry. Anything else?');
    expect(f.connections).toHaveLength(2);
    expect(report.endedBy).toBe('caller');
    expect(report.closeCode).toBe(1000);
    await outcomeOf(r, callSid, 'caller_hung_up');
  });
});

describe('model upstream: lost between a tool and its response.done', () => {
  /** What the caller hears and where they go once the stream closed (the simulated Twilio's reading of the after-stream TwiML). */

  it('transfer_to_human answered, then the session drops: the caller is handed to a person at once, counted transferred', async () => {
    const { fault: f, relay: r } = await proxied({ onServerEvent: dropBetweenToolOutputAndDone('transfer_to_human') });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, ['call tool transfer_to_human {"reason":"I smell gas"}']);
    expect(report.closeCode).toBe(4012);
    expect(report.endedBy).toBe('relay');
    expect(f.connections).toHaveLength(1); // no session opened for words the lost one can no longer say
    await outcomeOf(r, callSid, 'transferred');
    expect(report.afterStream).toContain(HAND_OFF);
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_calls_total', { outcome: 'transferred' })).toBe(1);
    expect(metricValue(m, 'switchboard_active_calls')).toBe(0);
  });

  it('the same with the model unreachable afterwards: the transfer still happens, not the fallback', async () => {
    sim = await startSimModel({ mode: 'loadtest' });
    fault = await startFaultModel({
      upstream: sim.url,
      upgrade: (n) => (n === 0 ? { kind: 'accept' } : { kind: 'status', status: 503 }),
      onServerEvent: dropBetweenToolOutputAndDone('transfer_to_human'),
    });
    relay = await relayTo(fault, { MODEL_CONNECT_ATTEMPTS: '1' });
    const callSid = randomSid('CA');
    const report = await call(relay, callSid, ['call tool transfer_to_human {"reason":"I smell gas"}']);
    expect(report.closeCode).toBe(4012);
    await outcomeOf(relay, callSid, 'transferred');
    expect(report.afterStream).toContain(HAND_OFF);
  });

  it('transfer_to_human answered, then its response fails for quota: the caller is handed to a person, not the fallback', async () => {
    const { fault: f, relay: r } = await proxied({ onServerEvent: failAfterToolOutput('transfer_to_human') });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, ['call tool transfer_to_human {"reason":"I smell gas"}']);
    expect(report.closeCode).toBe(4012);
    expect(f.connections).toHaveLength(1);
    await outcomeOf(r, callSid, 'transferred');
    expect(report.afterStream).toContain(HAND_OFF);
    expect(report.afterStream).not.toContain(APOLOGY);
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_model_errors_total', { kind: 'response', code: 'insufficient_quota' })).toBe(1);
    expect(metricValue(m, 'switchboard_calls_total', { outcome: 'model_failed' })).toBe(0);
  });

  it('end_call answered and its response done, then a fatal model error during the last words: the call ends as the assistant decided', async () => {
    const fatal = { type: 'error', error: { type: 'invalid_request_error', code: 'account_deactivated', message: 'This account is deactivated.' } };
    const { relay: r } = await proxied({
      onServerEvent: atToolOutput('end_call', (conn, done) => {
        const creates = (): number => conn.received.filter((e) => e.type === 'response.create').length;
        const before = creates();
        conn.send(done);
        // The follow-up (the tool's spoken answer, the last words) is asked for: the account dies now.
        void conn.waitForClient((e) => e.type === 'response.create' && creates() > before).then(() => conn.send(fatal), () => undefined);
      }),
    });
    const callSid = randomSid('CA');
    const report = await call(r, callSid, ['call tool end_call {"reason":"caller is done"}']);
    expect(report.closeCode).toBe(4011);
    await outcomeOf(r, callSid, 'ended_by_assistant');
    expect(report.afterStream).not.toContain(APOLOGY);
    expect(metricValue(await scrape(r), 'switchboard_model_errors_total', { kind: 'error', code: 'account_deactivated' })).toBe(1);
  });
});

describe('a tool effect decided during the time-limit goodbye', () => {
  it('transfer_to_human followed up only once the goodbye is under way: the caller is handed to a person, not hung up on', async () => {
    const callSid = randomSid('CA');
    const ending = async (): Promise<boolean> => (await relay?.store.getCall(callSid))?.phase === 'ending';
    // The tool's response is done only once MAX_CALL_SECONDS has passed and the goodbye begun.
    sim = await startSimModel({ mode: 'loadtest' });
    fault = await startFaultModel({
      upstream: sim.url,
      onServerEvent: atToolOutput('transfer_to_human', (conn, done) => {
        void eventually(ending, 15_000, 'the time-limit goodbye').then(() => conn.send(done), () => undefined);
      }),
    });
    relay = await relayTo(fault, { MAX_CALL_SECONDS: '10' });
    const report = await placeCall({
      baseUrl: relay.url,
      ...demo,
      callSid,
      script: { turns: [{ say: 'call tool transfer_to_human {"reason":"I want a person"}' }], maxCallMs: 25_000, hangupAfterMs: 5000, replyTimeoutMs: 15_000 },
    });
    expect(report.closeCode).toBe(4012);
    await outcomeOf(relay, callSid, 'transferred');
    expect(report.afterStream).toContain(HAND_OFF);
  });
});

describe('model upstream: giant deltas', () => {
  /** A GA delta of `b64Chars` base64 characters (valid base64 of μ-law silence). */
  const giant = (b64Chars: number): string =>
    `{"type":"response.output_audio.delta","response_id":"resp_big","item_id":"item_big","output_index":0,"content_index":0,"delta":"${'/'.repeat(b64Chars)}"}`;

  it('a 10 MB delta (under the 16 MiB cap) is relayed or dropped, memory stays bounded, the call goes on', async () => {
    fault = await startFaultModel({ autoRespond: false });
    relay = await relayTo(fault);
    const r = relay;
    const callSid = randomSid('CA');
    const s = await rawStream(r, callSid);
    let bytesIn = 0;
    let sawSmall = false;
    s.ws.on('message', (d: Buffer) => {
      bytesIn += d.length;
      if (d.length < 2000 && d.toString().includes('"event":"media"')) sawSmall = true;
    });
    s.start();
    const conn = await fault.waitForConnection(0);
    await conn.waitForClient((e) => e.type === 'response.create');
    const before = process.memoryUsage().rss;
    conn.send({ type: 'response.created', response: { id: 'resp_big', status: 'in_progress' } });
    conn.sendRaw(giant(10 * 1024 * 1024));
    const smallDelta = { type: 'response.output_audio.delta', response_id: 'resp_big', item_id: 'item_big', output_index: 0, content_index: 0, delta: Buffer.alloc(800, 0xff).toString('base64') };
    const settled = async (n: number): Promise<boolean> => {
      const m = await scrape(r);
      return metricValue(m, 'switchboard_frame_relay_seconds_count', { direction: 'model_to_caller' }) + metricValue(m, 'switchboard_frames_dropped_total', { direction: 'model_to_caller' }) >= n;
    };
    await eventually(() => settled(1), 10_000, 'the giant delta relayed or dropped');
    // Ordinary 100 ms deltas after it: dropped while the giant frame drains toward Twilio, then relayed.
    let sent = 0;
    for (; sent < 200 && !sawSmall; sent++) {
      conn.send(smallDelta);
      await eventually(() => settled(sent + 2), 5000, 'small delta handled');
      if (!sawSmall) await new Promise((res) => setTimeout(res, 25));
    }
    expect(sawSmall).toBe(true);
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_active_calls')).toBe(1);
    expect(bytesIn).toBeGreaterThan(0);
    // The relay holds a few copies of the frame at most while relaying it (string, envelope, socket buffer).
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 1024 * 1024);
    expect(fault.connections).toHaveLength(1);
    s.ws.send(JSON.stringify({ event: 'stop', sequenceNumber: '9', streamSid: 'MZ' + callSid.slice(2), stop: { accountSid: demo.accountSid, callSid } }));
    expect((await s.closed).code).toBe(1000);
    await outcomeOf(r, callSid, 'caller_hung_up');
  });

  it('a 17 MB delta (over the 16 MiB cap): ws closes the model socket with 1009, the relay re-opens a session, the call goes on', async () => {
    fault = await startFaultModel({ autoRespond: false });
    relay = await relayTo(fault);
    const r = relay;
    const callSid = randomSid('CA');
    const s = await rawStream(r, callSid);
    s.start();
    const conn = await fault.waitForConnection(0);
    await conn.waitForClient((e) => e.type === 'response.create');
    conn.sendRaw(giant(17 * 1024 * 1024));
    expect((await conn.closed).code).toBe(1009);
    const next = await fault.waitForConnection(1);
    await next.waitForClient((e) => e.type === 'session.update');
    // Caller audio reaches the new session: all of it (10 frames fill whole appends of 1 or 2; of 3, 9 of them at least).
    for (let i = 0; i < 10; i++) s.ws.send(mediaFrame(callSid, i + 2));
    await eventually(() => next.appendedBytes >= 9 * 160, 5000, 'audio on the new session');
    expect(metricValue(await scrape(r), 'switchboard_active_calls')).toBe(1);
    s.ws.close();
    await outcomeOf(r, callSid, 'caller_hung_up');
  });
});
