/**
 * The model session on its own: a host that plays the call (its state moves as a bridge's would),
 * scripted sockets on a manual clock for timing and budgets, and a real `ws` peer (the fault model)
 * for a session the server ends at its cap.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { tone } from '../../src/sim/portable/audio.js';
import { ConversationHistory } from '../../src/call/conversation-history.js';
import type { CallState, CallView } from '../../src/call/call-state.js';
import type { ModelConnector } from '../../src/call/bridge-deps.js';
import { MAX_RECONNECTS, MAX_RENEWALS, ModelSession, type ModelSessionHost, type Replayed } from '../../src/call/model-session.js';
import type { CallOutcome } from '../../src/call/lifecycle.js';
import { connectRealtime, parseModelEvent, sessionUpdate } from '../../src/model/index.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type RelayMetrics } from '../../src/telemetry/metrics.js';
import { startFaultModel, type FaultModel } from '../helpers/fault-model.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { FakeRealtimeSocket as FakeSocket } from '../helpers/fake-realtime-socket.js';

const pcmu = { type: 'session.updated', session: { type: 'realtime', audio: { input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } } } };
const configure = () => sessionUpdate({ shape: 'ga', instructions: 'Be brief.', voice: 'marin', tools: [], language: 'en' });
const flush = () => new Promise((r) => setImmediate(r));
const log = silentLogger();

/** The call as a bridge plays it: state moves on ready / lost / finish; everything is recorded. */
class Call implements CallView {
  kind: CallState['kind'] = 'connecting';
  readonly callSid = 'CA1';
  readonly log = log;
  ready: Replayed[] = [];
  lost = 0;
  failed: { reason: string; outcome: CallOutcome } | undefined;
  messages: string[] = [];
  pause = true;
  endedWhileEnding = false;
  /** A tool decided the call's end (end_call, transfer): a lost session carries it out and ends the call. */
  decidedEnd = false;
  get state(): CallState {
    return { kind: this.kind } as CallState;
  }
  finish(outcome: CallOutcome, code: number, reason: string): void {
    expect(code).toBe(4010);
    this.failed = { reason, outcome };
    this.kind = 'ended';
  }
  host(): ModelSessionHost {
    return {
      span: () => undefined,
      configure,
      message: (data) => {
        const ev = parseModelEvent(data);
        this.messages.push(ev.type);
        // The bridge hands the session its own events.
        if (ev.type === 'session.updated') this.session!.configure(ev.audioFormatOk);
        if (ev.type === 'error') this.session!.error(ev);
      },
      ready: (_socket, replayed) => {
        this.ready.push(replayed);
        this.kind = 'live';
      },
      lost: () => {
        this.lost++;
        this.kind = 'reconnecting';
      },
      cutShort: () => {
        this.endedWhileEnding = true;
        this.kind = 'ended';
      },
      atPause: () => this.pause,
      callerSpeaking: () => false,
      decided: () => {
        if (!this.decidedEnd) return false;
        this.kind = 'ended';
        return true;
      },
    };
  }
  session: ModelSession | undefined;
}

interface Harness {
  call: Call;
  session: ModelSession;
  sockets: FakeSocket[];
  clock: ManualClock;
  metrics: RelayMetrics;
  history: ConversationHistory;
  timing: { connectMs: number | undefined };
  refuse: boolean;
}

function harness(limits: { modelConnectTimeoutMs?: number; modelSessionRenewMs?: number; modelStallMs?: number } = {}): Harness {
  const clock = new ManualClock(1_000_000);
  const metrics = createMetrics({ defaultMetrics: false });
  const history = new ConversationHistory(40);
  const h = { call: new Call(), sockets: [], clock, metrics, history, timing: { connectMs: undefined }, refuse: false } as unknown as Harness;
  const connector: ModelConnector = {
    provider: 'sim',
    shape: 'ga',
    connect: () => {
      if (h.refuse) return Promise.reject(new Error('refused'));
      const s = new FakeSocket();
      h.sockets.push(s);
      return Promise.resolve(s);
    },
  };
  h.session = new ModelSession(
    {
      connector,
      clock,
      metrics,
      limits: { modelConnectTimeoutMs: 5000, ...limits },
      history,
      signal: new AbortController().signal,
      timing: h.timing,
    },
    h.call,
    h.call.host(),
  );
  h.call.session = h.session;
  return h;
}

async function opened(h: Harness, again = false): Promise<FakeSocket> {
  if (!again) await h.session.open();
  else await flush();
  const s = h.sockets.at(-1)!;
  expect(s.types()).toEqual(['session.update']);
  s.emit(pcmu);
  return s;
}

async function count(m: RelayMetrics, kind: string, code: string): Promise<number> {
  // The counter is typed by `code` alone; its series carry `kind` too.
  return (await m.modelErrors.get()).values.find((v) => (v.labels as Record<string, unknown>)['kind'] === kind && v.labels['code'] === code)?.value ?? 0;
}

describe('ModelSession', () => {
  it('configures a session, hands it to the call once μ-law is confirmed, and times the first connect', async () => {
    const h = harness();
    await h.session.open();
    const s = h.sockets[0]!;
    expect(s.types()).toEqual(['session.update']);
    h.clock.advance(40);
    expect(h.call.ready).toEqual([]);
    s.emit(pcmu);
    expect(h.call.ready).toEqual(['nothing']);
    expect(h.session.socket).toBe(s);
    expect(h.timing.connectMs).toBe(40);
    s.emit(pcmu); // a second session.updated (the server echoes later updates) configures nothing
    expect(h.call.ready).toEqual(['nothing']);
  });

  it('a model that keeps 24 kHz PCM fails the call: forwarding it would be static', async () => {
    const h = harness();
    await h.session.open();
    h.sockets[0]!.emit({ type: 'session.updated', session: { type: 'realtime', audio: { output: { format: { type: 'audio/pcm', rate: 24000 } } } } });
    expect(h.call.failed).toEqual({ reason: 'model audio format not μ-law', outcome: 'model_failed' });
    expect(h.call.ready).toEqual([]);
  });

  it('a session.update never confirmed fails the call at the connect timeout; an unreachable model at once', async () => {
    const h = harness({ modelConnectTimeoutMs: 3000 });
    await h.session.open();
    h.clock.advance(2999);
    expect(h.call.failed).toBeUndefined();
    h.clock.advance(2);
    expect(h.call.failed).toEqual({ reason: 'model session not configured', outcome: 'model_unavailable' });

    const u = harness();
    u.refuse = true;
    await u.session.open();
    expect(u.call.failed).toEqual({ reason: 'model unavailable', outcome: 'model_unavailable' });
  });

  it('a drop re-opens the session with the conversation replayed; past MAX_RECONNECTS the call fails', async () => {
    const h = harness();
    const first = await opened(h);
    h.history.caller('I need a plumber');
    h.history.assistant('Where are you?', 'item_1', false);
    first.drop(1006);
    expect(h.call.lost).toBe(1);
    expect(first.closed).toBeUndefined(); // it closed itself
    const second = await opened(h, true);
    expect(h.call.ready).toEqual(['nothing', 'history']);
    expect(second.sent.slice(1).map((e) => (e['item'] as { role: string }).role)).toEqual(['user', 'assistant']);
    // Events of the socket we moved on from never reach the call.
    const before = h.call.messages.length;
    first.emit({ type: 'response.created', response: { id: 'old' } });
    expect(h.call.messages).toHaveLength(before);
    expect(MAX_RECONNECTS).toBe(1);
    second.drop(1006);
    expect(h.call.failed).toEqual({ reason: 'model connection lost', outcome: 'model_failed' });
    expect(h.session.reconnects).toBe(1);
  });

  it('renews at the first pause after MODEL_SESSION_RENEW_SECONDS, within MAX_RENEWALS, separate from drops', async () => {
    const h = harness({ modelSessionRenewMs: 60_000 });
    let s = await opened(h);
    h.call.pause = false;
    h.clock.advance(60_001);
    expect(h.sockets).toHaveLength(1); // due, but the caller is mid-sentence
    h.call.pause = true;
    h.session.maybeRenew();
    expect(s.closed).toEqual({ code: 1000, reason: 'session renewal' });
    s = await opened(h, true);
    expect(h.call.ready).toEqual(['nothing', 'history']);
    // A drop still has its own budget after a renewal.
    s.drop(1006);
    s = await opened(h, true);
    expect(h.session).toMatchObject({ reconnects: 1, renewals: 1 });
    for (let i = 1; i < MAX_RENEWALS; i++) {
      h.clock.advance(60_001);
      s = await opened(h, true);
    }
    expect(h.session.renewals).toBe(MAX_RENEWALS);
    h.clock.advance(60_001);
    expect(h.call.failed).toEqual({ reason: 'model session renewed before its time cap', outcome: 'model_failed' });
  });

  it('error events: session_expired renews, a call-class error fails, others are only counted', async () => {
    const h = harness();
    const s = await opened(h);
    s.emit({ type: 'error', error: { type: 'invalid_request_error', code: 'item_truncate_invalid_item_id', message: 'no such item' } });
    expect(h.call.kind).toBe('live');
    s.emit({ type: 'error', error: { type: 'invalid_request_error', code: 'session_expired', message: 'expired' } });
    expect(s.closed).toEqual({ code: 1000, reason: 'session renewal' });
    const next = await opened(h, true);
    expect(h.session).toMatchObject({ reconnects: 0, renewals: 1 });
    next.emit({ type: 'error', error: { type: 'invalid_request_error', code: 'invalid_api_key', message: 'bad key' } });
    expect(h.call.failed).toEqual({ reason: 'model error invalid_api_key', outcome: 'model_failed' });
    expect(await count(h.metrics, 'error', 'session_expired')).toBe(1);
  });

  it('the model closing while the call says goodbye ends it as it was ending, no new session', async () => {
    const h = harness();
    const s = await opened(h);
    h.call.kind = 'ending';
    s.drop(1006);
    expect(h.call.endedWhileEnding).toBe(true);
    expect(h.sockets).toHaveLength(1);
  });

  it('a session lost after a tool decided how the call ends (drop, fatal error): no new session, no fallback', async () => {
    for (const lose of ['drop', 'fatal'] as const) {
      const h = harness();
      const s = await opened(h);
      h.call.decidedEnd = true;
      if (lose === 'drop') s.drop(1006);
      else s.emit({ type: 'error', error: { type: 'invalid_request_error', code: 'invalid_api_key', message: 'bad key' } });
      await flush();
      expect(h.sockets).toHaveLength(1);
      expect(h.call.lost).toBe(0);
      expect(h.call.failed).toBeUndefined();
      expect(h.call.kind).toBe('ended');
    }
  });

  it('the stall rule: the caller talks, the model says nothing for MODEL_STALL_TIMEOUT_MS: a new session', async () => {
    const h = harness({ modelStallMs: 2000 });
    const s = await opened(h);
    const speech = Buffer.from(tone(160, 440, 0)).toString('base64');
    for (let i = 0; i < 4; i++) {
      h.session.sample(speech, h.clock.mono());
      h.clock.advance(160);
    }
    for (let i = 0; i < 12 && h.sockets.length === 1; i++) {
      h.session.sample(speech, h.clock.mono());
      h.clock.advance(160);
    }
    expect(s.closed).toEqual({ code: 1000, reason: 'reconnecting' });
    expect(await count(h.metrics, 'socket', 'stalled')).toBe(1);
    await opened(h, true);
    expect(h.session.reconnects).toBe(1);
  });

  it('an adopted call replays its stored conversation into its first session only', async () => {
    const h = harness();
    h.session.adopt({
      migration: { at: 999_000, from: 'pod-a', to: 'pod-b', reason: 'drain' },
      record: {
        transcript: [{ role: 'caller', text: 'Hello', at: 1 }],
        tools: [{ callId: 'call_1', name: 'check_availability', arguments: '{}', output: '{"ok":true}', outcome: 'ok', startedAt: 2, durationMs: 5 }],
      },
    } as unknown as Parameters<ModelSession['adopt']>[0]);
    expect(h.session.resumeFailed?.migration.from).toBe('pod-a');
    const s = await opened(h);
    expect(h.call.ready).toEqual(['moved']);
    expect(s.sent.slice(1).map((e) => (e['item'] as { type: string }).type)).toEqual(['message', 'function_call', 'function_call_output']);
    expect(h.session.resumeFailed).toBeUndefined();
    s.drop(1006);
    await opened(h, true);
    expect(h.call.ready).toEqual(['moved', 'history']);
  });
});

describe('ModelSession over a real socket', () => {
  let fm: FaultModel | undefined;
  afterEach(async () => {
    await fm?.close();
    fm = undefined;
  });

  it('the server ends the session at its 60-minute cap (1001): a new session with the conversation, on the renewal budget', async () => {
    fm = await startFaultModel({ autoRespond: false });
    const model = fm;
    const call = new Call();
    const history = new ConversationHistory(40);
    history.caller('Is Tuesday free?');
    const session = new ModelSession(
      {
        connector: {
          provider: 'sim',
          shape: 'ga',
          connect: (signal, log) => connectRealtime({ url: model.url, headers: {}, shape: 'ga', provider: 'sim' }, { timeoutMs: 2000, attempts: 1, signal, log }),
        },
        clock: new ManualClock(),
        metrics: createMetrics({ defaultMetrics: false }),
        limits: { modelConnectTimeoutMs: 5000 },
        history,
        signal: new AbortController().signal,
        timing: { connectMs: undefined },
      },
      call,
      call.host(),
    );
    call.session = session;
    await session.open();
    const first = await model.waitForConnection(0);
    await first.waitForServer((t) => t === 'session.updated');
    for (let i = 0; i < 100 && call.ready.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(call.ready).toEqual(['nothing']);
    first.close(1001, 'Your session hit the maximum duration of 60 minutes.');
    const second = await model.waitForConnection(1);
    const replayed = await second.waitForClient((e) => e.type === 'conversation.item.create');
    expect((replayed['item'] as { content: { text: string }[] }).content[0]!.text).toBe('Is Tuesday free?');
    for (let i = 0; i < 100 && call.ready.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(call.ready).toEqual(['nothing', 'history']);
    expect(session).toMatchObject({ reconnects: 0, renewals: 1 });
    call.kind = 'ended';
    session.end();
    expect((await second.closed).code).toBe(1000);
  });
});
