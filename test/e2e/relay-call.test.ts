/**
 * End-to-end calls through the real relay (native uWS) with the simulated caller acting exactly as
 * Twilio and the simulated model speaking the OpenAI Realtime GA protocol over a real socket.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { DEMO_TENANT } from '../../src/tenants/index.js';
import { demo, eventually, metricValue, scrape, signedPost, startTestRelay } from '../helpers/relay.js';
import { freePort } from '../helpers/redis-server.js';

let relay: Relay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

describe('a call end to end', () => {
  it('greets, answers two turns, runs end_call and hangs up after the goodbye played', async () => {
    relay = await startTestRelay();
    const callSid = randomSid('CA');
    const report = await placeCall({
      baseUrl: relay.url,
      ...demo,
      callSid,
      script: {
        turns: [{ say: 'Hi, I have a question for you' }, { say: 'call tool end_call {"reason":"caller is done"}' }],
        maxCallMs: 30_000,
        hangupAfterMs: 10_000,
      },
    });
    expect(report.stage).toBe('connected');
    expect(report.errors).toEqual([]);
    expect(report.greeting).toBe(DEMO_TENANT.model!.greeting);
    expect(report.turns).toHaveLength(2);
    expect(report.turns[0]!.heard).toBe('You said: Hi, I have a question for you. Anything else?');
    expect(report.turns[1]!.heard).toBe('Goodbye, have a good day.');
    expect(report.turns[0]!.turnLatencyMs).toBeGreaterThan(0);
    // The relay closed the stream itself, after the goodbye had played (every mark echoed).
    expect(report.endedBy).toBe('relay');
    expect(report.closeCode).toBe(4011);
    expect(report.marksSent).toBeGreaterThan(0);
    expect(report.marksEchoed).toBe(report.marksSent);
    // The caller followed the <Redirect> after </Connect> as Twilio does: nothing more to hear.
    expect(report.afterStream).toBe('<Hangup/>');

    const r = relay;
    await eventually(async () => (await r.store.getCall(callSid))?.outcome === 'ended_by_assistant', 5000, 'call record ended');
    const rec = (await r.store.getCall(callSid))!;
    expect(rec.tenantId).toBe('demo');
    expect(rec.tools.map((t) => [t.name, t.outcome])).toEqual([['end_call', 'ok']]);
    expect(rec.transcript.some((t) => t.role === 'caller' && t.text.includes('I have a question'))).toBe(true);
    expect(rec.transcript.some((t) => t.role === 'assistant' && t.text === 'Goodbye, have a good day.')).toBe(true);

    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_frame_relay_seconds_count', { direction: 'caller_to_model' })).toBeGreaterThan(50);
    expect(metricValue(m, 'switchboard_frame_relay_seconds_count', { direction: 'model_to_caller' })).toBe(report.marksSent);
    expect(metricValue(m, 'switchboard_calls_total', { outcome: 'ended_by_assistant', tenant: 'demo' })).toBe(1);
    expect(metricValue(m, 'switchboard_active_calls')).toBe(0);
    expect(metricValue(m, 'switchboard_turn_latency_seconds_count')).toBeGreaterThanOrEqual(2);
    expect(metricValue(m, 'switchboard_upstream_connect_seconds_count', { outcome: 'ok' })).toBe(1);
    expect(metricValue(m, 'switchboard_tool_call_seconds_count', { tool: 'end_call', outcome: 'ok' })).toBe(1);
    expect(metricValue(m, 'switchboard_frames_dropped_total')).toBe(0);

    // What Twilio runs next (<Redirect> after </Connect>): a plain hang-up.
    const after = await signedPost(r, '/twilio/after-stream', { CallSid: callSid, AccountSid: demo.accountSid, To: demo.to, From: '+15550001111' });
    expect(after.status).toBe(200);
    expect(after.body).toContain('<Hangup/>');
    expect(after.body).not.toContain('<Say>');
  });

  it('barge-in: clears Twilio and truncates the reply at what was heard', async () => {
    relay = await startTestRelay();
    const report = await placeCall({
      baseUrl: relay.url,
      ...demo,
      script: {
        turns: [
          { say: 'Tell me about drains' },
          { say: 'Sorry to interrupt, another question', bargeInAfterMs: 300 },
        ],
        maxCallMs: 30_000,
        hangupAfterMs: 1500,
      },
    });
    expect(report.stage).toBe('connected');
    expect(report.clears).toBeGreaterThanOrEqual(1);
    expect(report.turns[1]!.bargeIn).toBe(true);
    expect(report.turns[1]!.clearReceived).toBe(true);

    const session = relay.sim!.sessions[0]!;
    const truncates = session.received.filter((e) => e.type === 'conversation.item.truncate');
    expect(truncates.length).toBeGreaterThanOrEqual(1);
    const t = truncates[0]! as unknown as { audio_end_ms: number; content_index: number; item_id: string };
    // The caller started speaking ~300 ms into a 1 s reply: the cut lies after what VAD needed to
    // hear the caller and well before the reply's end; never past what was sent (the sim rejects that).
    expect(t.content_index).toBe(0);
    expect(t.audio_end_ms).toBeGreaterThan(250);
    expect(t.audio_end_ms).toBeLessThan(900);
    const m = await scrape(relay);
    expect(metricValue(m, 'switchboard_barge_ins_total')).toBeGreaterThanOrEqual(1);
  });

  it('model unreachable: the stream closes with 4010 and the caller hears the fallback, nothing hangs', async () => {
    const deadPort = await freePort();
    relay = await startTestRelay({
      MODEL_PROVIDER: 'openai',
      OPENAI_API_KEY: 'sk-test',
      OPENAI_REALTIME_URL: `ws://127.0.0.1:${deadPort}/v1/realtime`,
      MODEL_CONNECT_ATTEMPTS: '2',
      MODEL_CONNECT_TIMEOUT_MS: '500',
    });
    const callSid = randomSid('CA');
    const report = await placeCall({
      baseUrl: relay.url,
      ...demo,
      callSid,
      script: { turns: [{ say: 'Hello?' }], maxCallMs: 10_000, hangupAfterMs: 5000 },
    });
    expect(report.closeCode).toBe(4010);
    expect(report.endedBy).toBe('relay');
    expect(report.greeting).toBe('');
    expect(report.afterStream).toBe(`Sorry, our assistant is unavailable. Connecting you to a person. <Dial>${DEMO_TENANT.humanFallbackNumber}</Dial>`);
    const r = relay;
    await eventually(async () => (await r.store.getCall(callSid))?.outcome === 'model_unavailable', 5000, 'outcome recorded');
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_calls_total', { outcome: 'model_unavailable' })).toBe(1);
    expect(metricValue(m, 'switchboard_upstream_connect_seconds_count', { outcome: 'failed' })).toBe(1);
    expect(metricValue(m, 'switchboard_active_calls')).toBe(0);
    // The demo tenant has a human fallback number: the caller is apologised to and put through.
    const after = await signedPost(r, '/twilio/after-stream', { CallSid: callSid, AccountSid: demo.accountSid, To: demo.to });
    expect(after.body).toContain('<Say>Sorry, our assistant is unavailable. Connecting you to a person.</Say>');
    expect(after.body).toContain(`<Dial callerId="${demo.to}">${DEMO_TENANT.humanFallbackNumber}</Dial>`);
  });
});

describe('the voice webhook', () => {
  it('answers unknown numbers with a spoken message and a hang-up', async () => {
    relay = await startTestRelay();
    const res = await signedPost(relay, '/twilio/voice', { CallSid: randomSid('CA'), AccountSid: demo.accountSid, To: '+15559990000', From: '+15550001111' });
    expect(res.status).toBe(200);
    expect(res.body).toContain('<Say>Sorry, the number you have called is not in service. Goodbye.</Say><Hangup/>');
    expect(res.body).not.toContain('<Stream');
  });

  it('refuses a bad signature with 403 and no TwiML', async () => {
    relay = await startTestRelay();
    const fields = { CallSid: randomSid('CA'), AccountSid: demo.accountSid, To: demo.to, From: '+15550001111' };
    const res = await signedPost(relay, '/twilio/voice', fields, 'not-the-auth-token');
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({ error: { code: 'signature_invalid', message: 'X-Twilio-Signature does not match' } });
  });

  it('connects the stream with a tenant and a token parameter, and redirects after it', async () => {
    relay = await startTestRelay();
    const res = await signedPost(relay, '/twilio/voice', { CallSid: randomSid('CA'), AccountSid: demo.accountSid, To: demo.to, From: '+15550001111' });
    expect(res.status).toBe(200);
    expect(res.body).toMatch(/<Connect><Stream url="ws:\/\/127\.0\.0\.1:\d+\/twilio\/media" statusCallback="http:\/\/127\.0\.0\.1:\d+\/twilio\/status">/);
    expect(res.body).toContain('<Parameter name="tenant" value="demo"/>');
    expect(res.body).toMatch(/<Parameter name="token" value="v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"\/>/);
    expect(res.body).toMatch(/<\/Connect><Redirect method="POST">http:\/\/127\.0\.0\.1:\d+\/twilio\/after-stream<\/Redirect><\/Response>$/);
  });

  it('rejects oversized webhook bodies with 413', async () => {
    relay = await startTestRelay();
    const res = await fetch(`${relay.url}/twilio/voice`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'x=' + 'a'.repeat(100 * 1024),
    });
    expect(res.status).toBe(413);
  });
});

describe('health and readiness', () => {
  it('serves healthz, readyz, metrics and JSON 404s', async () => {
    relay = await startTestRelay();
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${relay.url}/readyz`)).json()).toEqual({ status: 'ready' });
    const nf = await fetch(`${relay.url}/nope`);
    expect(nf.status).toBe(404);
    expect(await nf.json()).toEqual({ error: { code: 'not_found', message: 'no such route' } });
    const m = await scrape(relay);
    expect(m).toContain('# TYPE switchboard_frame_relay_seconds histogram');
    expect(m).toContain('switchboard_frame_relay_seconds_bucket{le="0.0001",direction="caller_to_model"}');
    expect(m).toContain('nodejs_heap_size_used_bytes');
  });
});
