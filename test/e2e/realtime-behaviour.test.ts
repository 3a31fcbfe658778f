/**
 * The relay against the simulated model behaving as the real OpenAI Realtime API does on a live
 * call: audio in bursts with pauses mid-item, one active response at a time, server-side cancel on
 * speech, errors for needless cancels. Real uWS relay, the sim model on a real socket, the sim
 * caller acting as Twilio (real-time playback, mark echoes, clear).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallScript } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel, type SimModelOptions, type SimSession } from '../../src/sim/sim-model.js';
import { DEMO_TENANT } from '../../src/tenants/index.js';
import { startFaultModel, type FaultModel } from '../helpers/fault-model.js';
import { demo, startTestRelay } from '../helpers/relay.js';

const GREETING: string = DEMO_TENANT.model?.greeting ?? '';

let relay: Relay | undefined;
let sim: SimModel | undefined;
let fault: FaultModel | undefined;
afterEach(async () => {
  await relay?.close();
  await fault?.close();
  await sim?.close();
  relay = sim = fault = undefined;
});

/** A relay speaking to its own sim model started with `o` (as it would to OpenAI). */
async function relayWithSim(o: SimModelOptions, env: Record<string, string> = {}): Promise<{ relay: Relay; sim: SimModel }> {
  sim = await startSimModel(o);
  relay = await startTestRelay({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-sim', OPENAI_REALTIME_URL: sim.url, ...env });
  return { relay, sim };
}

function call(r: Relay, script: Omit<CallScript, 'maxCallMs'> & { maxCallMs?: number }, callSid = randomSid('CA')) {
  return placeCall({ baseUrl: r.url, ...demo, callSid, script: { maxCallMs: 30_000, hangupAfterMs: 800, ...script } });
}

type Truncate = { item_id: string; content_index: number; audio_end_ms: number };
const truncates = (s: SimSession): Truncate[] =>
  s.received.filter((e) => e.type === 'conversation.item.truncate') as unknown as Truncate[];

describe('bursty model audio', () => {
  it('a barge-in after the model paused mid-item truncates at everything the caller heard of the item (±1 frame)', async () => {
    // 600 ms of audio, then 900 ms of nothing: Twilio's buffer runs dry and every mark is echoed
    // before the next burst of the same item arrives.
    const { relay: r, sim: s } = await relayWithSim({ mode: 'realistic', bursts: { audioMs: 600, pauseMs: 900 } });
    // The caller talks over the greeting in its second burst (~900 ms + 250 ms into the item).
    const report = await call(r, { turns: [{ say: 'Sorry, quick question', bargeInAfterMs: 1150 }], quietMs: 1200 });
    expect(report.errors).toEqual([]);
    const turn = report.turns[0]!;
    expect(turn.clearReceived).toBe(true);
    const heard = turn.playedMsAtClear!;
    // Past the first burst: the played position of the item survived the pause.
    expect(heard).toBeGreaterThan(650);
    const session = s.sessions[0]!;
    const t = truncates(session);
    expect(t).toHaveLength(1);
    // Within a frame of what played. The caller measures when the clear arrives, which is up to a
    // frame (its media cadence) plus delivery after the relay's last media timestamp: a one-sided
    // allowance below (measured 0-15 ms on a loaded 2-core box).
    const why = `truncated at ${t[0]!.audio_end_ms} ms, heard ${heard} ms`;
    expect(t[0]!.audio_end_ms, why).toBeLessThanOrEqual(heard + 20);
    expect(t[0]!.audio_end_ms, why).toBeGreaterThanOrEqual(heard - 40);
    expect(session.errors).toEqual([]);
  });
});

describe('thinned marks toward Twilio (TWILIO_MARK_INTERVAL_MS, default 100)', () => {
  /** Truncation within a frame of what the caller heard, with the same one-sided allowance as above. */
  function expectNearHeard(t: Truncate, heard: number): void {
    const why = `truncated at ${t.audio_end_ms} ms, heard ${heard} ms`;
    expect(t.audio_end_ms, why).toBeLessThanOrEqual(heard + 20);
    expect(t.audio_end_ms, why).toBeGreaterThanOrEqual(heard - 40);
  }

  it('20 ms deltas get one mark per ~100 ms, and a barge-in mid-reply still truncates within a frame of what was heard', async () => {
    const { relay: r, sim: s } = await relayWithSim({ mode: 'realistic', deltaMs: 20 });
    const report = await call(r, { turns: [{ say: 'Sorry, quick question', bargeInAfterMs: 730 }], quietMs: 1200 });
    expect(report.errors).toEqual([]);
    // Small deltas relayed as they came: a media message per 20 ms of audio ...
    expect(report.framesReceived).toBeGreaterThanOrEqual(Math.floor(report.audioMsReceived / 20) - 1);
    // ... but a mark per 100 ms of it, plus at most one for the tail of each of the two replies.
    expect(report.marksSent).toBeLessThanOrEqual(Math.ceil(report.audioMsReceived / 100) + 2);
    expect(report.marksSent).toBeGreaterThan(5);
    const turn = report.turns[0]!;
    expect(turn.clearReceived).toBe(true);
    const heard = turn.playedMsAtClear!;
    expect(heard).toBeGreaterThan(500);
    const t = truncates(s.sessions[0]!);
    expect(t).toHaveLength(1);
    expectNearHeard(t[0]!, heard);
    expect(s.sessions[0]!.errors).toEqual([]);
  });

  it('a pause mid-item after an unmarked tail: the played position follows the stream clock across the dry buffer', async () => {
    // 660 ms in 20 ms deltas, then 900 ms of nothing: Twilio's buffer runs dry with the last part
    // unmarked, so no echo says when it ran dry. The next mark comes only one interval into the
    // next burst; a mark every 500 ms makes that window wide enough to barge into reliably (at
    // 100 ms it is the same, only narrower).
    const { relay: r, sim: s } = await relayWithSim(
      { mode: 'realistic', deltaMs: 20, bursts: { audioMs: 660, pauseMs: 900 } },
      { TWILIO_MARK_INTERVAL_MS: '500' },
    );
    // Marks at 500 and 1000 ms of audio. The second burst arrives ~1230 ms after the first (330 ms
    // to send 660 ms, then the pause) and its first mark (1000) plays ~340 ms into it.
    const report = await call(r, { turns: [{ say: 'Sorry, quick question', bargeInAfterMs: 1420 }], quietMs: 1200 });
    expect(report.errors).toEqual([]);
    const turn = report.turns[0]!;
    expect(turn.clearReceived).toBe(true);
    const heard = turn.playedMsAtClear!;
    expect(heard).toBeGreaterThan(700); // into the second burst
    const t = truncates(s.sessions[0]!);
    expect(t).toHaveLength(1);
    expectNearHeard(t[0]!, heard);
    expect(s.sessions[0]!.errors).toEqual([]);
  });
});

describe('one active response at a time', () => {
  it('a key pressed while the greeting is still being generated is answered once the greeting is done', async () => {
    // Bursts keep the greeting response active for ~4 s; the key is pressed 300 ms into it.
    const { relay: r, sim: s } = await relayWithSim({ mode: 'realistic', bursts: { audioMs: 500, pauseMs: 500 } });
    const report = await call(r, { turns: [{ say: '', dtmf: '5', bargeInAfterMs: 300 }] });
    expect(report.errors).toEqual([]);
    expect(report.greeting).toBe(GREETING);
    expect(report.turns[0]!.heard).toBe('You said: The caller pressed the key 5 on their keypad. Anything else?');
    const session = s.sessions[0]!;
    // The prompt's response.create went after the greeting's response.done, never rejected.
    expect(session.errors).toEqual([]);
    expect(session.received.filter((e) => e.type === 'response.create')).toHaveLength(2);
  });
});

describe('one active response at a time: a slow tool', () => {
  const NUMBER = '+15005550188';
  const tenantCaller = { to: NUMBER, accountSid: 'AC' + '8'.repeat(32), authToken: 'slow-tools-auth-token-not-secret' };
  let dir: string | undefined;
  let closeTenantApi: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await closeTenantApi?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = closeTenantApi = undefined;
  });

  it('the caller speaks during a slow tool, the model answers that first; the tool result is spoken after it', async () => {
    // The tenant's endpoint answers after 2 s.
    const api = createServer((req, res) => {
      req.resume();
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true,"status":"found"}'), 2000).unref();
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    closeTenantApi = async () => {
      api.closeAllConnections();
      await new Promise<void>((resolve) => api.close(() => resolve()));
    };
    dir = mkdtempSync(join(tmpdir(), 'sb-slow-tool-'));
    const file = join(dir, 'tenants.json');
    writeFileSync(
      file,
      JSON.stringify([
        {
          id: 'slow-co',
          displayName: 'Slow Co',
          phoneNumbers: [NUMBER],
          twilio: { accountSid: tenantCaller.accountSid, authToken: { env: 'SLOW_CO_TOKEN' } },
          tools: ['end_call'],
          webhookTools: [
            {
              name: 'slow_lookup',
              description: 'A slow lookup',
              url: `http://127.0.0.1:${(api.address() as AddressInfo).port}/lookup`,
              secret: { value: 'whsec_' + Buffer.from('slow-tool-signing-key').toString('base64') },
              timeoutMs: 5000,
            },
          ],
        },
      ]),
    );
    // Bursts keep the answer to "Hello?" active for ~2 s, while the tool result arrives.
    const { relay: r, sim: s } = await relayWithSim(
      { mode: 'realistic', bursts: { audioMs: 500, pauseMs: 500 } },
      { TENANTS_FILE: file, SLOW_CO_TOKEN: tenantCaller.authToken, WEBHOOK_TOOLS_ALLOW_PRIVATE: 'true' },
    );
    const report = await placeCall({
      baseUrl: r.url,
      ...tenantCaller,
      script: {
        // No reply to the tool request for 1.5 s: the caller asks whether anyone is there.
        turns: [{ say: 'call tool slow_lookup {}' }, { say: 'Hello?' }],
        replyTimeoutMs: 1500,
        maxCallMs: 30_000,
        hangupAfterMs: 800,
      },
    });
    expect(report.errors).toEqual(['no reply to turn 1 within 1500 ms']);
    expect(report.turns[1]!.heard).toBe('You said: Hello. Anything else? Tool slow_lookup answered: {"ok":true,"status":"found"}');
    expect(s.sessions[0]!.errors).toEqual([]);
  });
});

describe('no needless errors', () => {
  it('a clean call with barge-ins, a tool, a key press and a goodbye makes the model send zero error events', async () => {
    const { relay: r, sim: s } = await relayWithSim({ mode: 'realistic' });
    const report = await call(r, {
      turns: [
        { say: 'Tell me about drains' },
        { say: 'Sorry to interrupt, what are your prices', bargeInAfterMs: 300 },
        { say: 'And another thing', bargeInAfterMs: 400 },
        { say: '', dtmf: '1' },
        { say: 'Goodbye' },
      ],
    });
    expect(report.errors).toEqual([]);
    expect(report.endedBy).toBe('relay');
    expect(report.turns.filter((t) => t.clearReceived)).toHaveLength(2);
    expect(report.turns[1]!.heard).toMatch(/^Tool quote_price answered: \{"ok":true/);
    const session = s.sessions[0]!;
    expect(truncates(session)).toHaveLength(2);
    expect(session.errors).toEqual([]);
    // The server cancels on speech itself (interrupt_response): the relay never sends response.cancel.
    expect(session.received.filter((e) => e.type === 'response.cancel')).toEqual([]);
  });
});

describe('state after a reconnect', () => {
  const REPLY = 'You said: Tell me about drains. Anything else?';
  /** A realistic sim behind the fault model, which drops session 0 when `dropNow` says so. */
  async function droppingRelay(dropNow: (type: string) => boolean): Promise<{ relay: Relay; sim: SimModel; fault: FaultModel }> {
    sim = await startSimModel({ mode: 'realistic' });
    fault = await startFaultModel({
      upstream: sim.url,
      onServerEvent(conn, ev) {
        if (conn.index === 0 && dropNow(String(ev.type))) setImmediate(() => conn.drop());
      },
    });
    relay = await startTestRelay({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-sim', OPENAI_REALTIME_URL: fault.url });
    return { relay, sim, fault };
  }

  it('a barge-in on audio of the old session clears Twilio but names no old item in the new session', async () => {
    let done = 0;
    // Session 0 drops once the answer to the first turn is generated, while it still plays.
    const { relay: r, sim: s } = await droppingRelay((type) => type === 'response.done' && ++done === 2);
    const report = await call(r, { turns: [{ say: 'Tell me about drains' }, { say: 'Sorry to interrupt', bargeInAfterMs: 1500 }] });
    expect(report.errors).toEqual([]);
    expect(report.turns[0]!.heard).toBe(REPLY);
    expect(report.turns[1]!.clearReceived).toBe(true);
    expect(s.sessions).toHaveLength(2);
    const [, second] = s.sessions as [SimSession, SimSession];
    expect(truncates(second)).toEqual([]);
    expect(second.errors).toEqual([]);
    expect(report.turns[1]!.heard).toBe('You said: Sorry to interrupt. Anything else?');
  });

  it('the new session gets only what the caller heard of an interrupted answer', async () => {
    // Session 0 drops as soon as it confirms the truncation of the interrupted answer.
    const { relay: r, fault: f } = await droppingRelay((type) => type === 'conversation.item.truncated');
    const report = await call(r, { turns: [{ say: 'Tell me about drains' }, { say: 'Sorry to interrupt', bargeInAfterMs: 1000 }] });
    expect(report.turns[1]!.clearReceived).toBe(true);
    expect(f.connections).toHaveLength(2);
    const cut = f.connections[0]!.received.find((e) => e.type === 'conversation.item.truncate') as unknown as Truncate;
    const replayed = f.connections[1]!.received
      .filter((e) => e.type === 'conversation.item.create')
      .map((e) => e.item as { role: string; content: { text: string }[] })
      .filter((i) => i.role === 'assistant')
      .map((i) => i.content[0]!.text);
    // The greeting in full, then the interrupted answer only as far as it was heard.
    expect(replayed[0]).toBe(GREETING);
    expect(replayed).toHaveLength(2);
    const heard = replayed[1]!.replace(/ \[interrupted by the caller\]$/, '');
    expect(replayed[1]).toMatch(/ \[interrupted by the caller\]$/);
    expect(REPLY.startsWith(heard)).toBe(true);
    // Words in proportion to the audio heard (2,760 ms for this reply), within one word.
    const expected = (REPLY.length * cut.audio_end_ms) / 2760;
    expect(heard.length).toBeLessThanOrEqual(expected + 1);
    expect(heard.length).toBeGreaterThanOrEqual(expected - 8);
  });
});
