/**
 * The conversation on its own, over the real parts these tests exercise (model session on a scripted
 * socket, playout on a recording Twilio socket, history) and the few members it uses of the others
 * (tool dispatch, wind-down, ledger) as doubles, no bridge: the greeting said once
 * across sessions, a failed response asked for once more then the fallback, a transcript kept
 * masked, and the error that answers the relay's own response.create.
 */
import { describe, expect, it } from 'vitest';
import type { CallState, CallView } from '../../src/call/call-state.js';
import { Conversation, type ConversationDeps } from '../../src/call/conversation.js';
import { ConversationHistory } from '../../src/call/conversation-history.js';
import type { CallOutcome } from '../../src/call/lifecycle.js';
import { ModelSession } from '../../src/call/model-session.js';
import { TurnMetrics } from '../../src/call/turn-metrics.js';
import { TwilioPlayout } from '../../src/call/twilio-playout.js';
import { parseModelEvent } from '../../src/model/index.js';
import { MemoryCallStore } from '../../src/store/index.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../../src/tenants/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { FakeRealtimeSocket } from '../helpers/fake-realtime-socket.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});
const CALL = 'CA00000000000000000000000000000001';
const flush = () => new Promise((r) => setImmediate(r));

/** The instructions of each response.create the relay sent (undefined: a plain one). */
function creates(sock: FakeRealtimeSocket): (string | undefined)[] {
  return sock.sent.filter((e) => e['type'] === 'response.create').map((e) => (e['response'] as { instructions?: string } | undefined)?.instructions);
}

async function harness() {
  const clock = new ManualClock(1_000_000);
  const metrics = createMetrics({ defaultMetrics: false });
  const store = new MemoryCallStore(() => clock.now());
  await store.startCall({ callSid: CALL, tenantId: tenant.id, pod: 'pod-a', startedAt: clock.now() });
  const history = new ConversationHistory(40);
  const turnMetrics = new TurnMetrics();
  const log = silentLogger();
  const sock = new FakeRealtimeSocket();
  const signal = new AbortController().signal;
  const h = { kind: 'connecting' as CallState['kind'], ended: undefined as { outcome: CallOutcome; code: number; reason: string } | undefined };
  const call: CallView = {
    get state() {
      return { kind: h.kind } as CallState;
    },
    callSid: CALL,
    log,
    finish(outcome, code, reason) {
      h.ended ??= { outcome, code, reason };
      h.kind = 'ended';
    },
  };
  const background = (p: Promise<unknown>) => void p.catch(() => {});
  const session: ModelSession = new ModelSession(
    { connector: { provider: 'sim', shape: 'ga', connect: () => Promise.resolve(sock) }, clock, metrics, limits: { modelConnectTimeoutMs: 5000 }, history, signal, timing: turnMetrics },
    call,
    {
      span: () => undefined,
      configure: () => JSON.stringify({ type: 'session.update', session: {} }),
      message: (data) => {
        const ev = parseModelEvent(data);
        if (ev.type !== 'audio_delta') conversation.event(ev);
      },
      ready: () => {
        h.kind = 'live';
      },
      lost: () => {},
      cutShort: () => {},
      atPause: () => true,
      callerSpeaking: () => conversation.callerSpeaking,
      decided: () => false,
    },
  );
  const playout = new TwilioPlayout({ send: () => 1, bufferedAmount: () => 0, cork: (fn) => fn(), end: () => {} }, 1 << 20);
  // No tool is called and the call never winds down here: those parts only need to be there.
  const tools: ConversationDeps['tools'] = { dispatch: () => {}, owns: () => false, responseDone: () => false };
  const windDown: ConversationDeps['windDown'] = { created: () => {}, responseDone: () => {} };
  const ledger: ConversationDeps['ledger'] = { response: () => {} };
  const conversation: Conversation = new Conversation(
    { clock, metrics, store, session, playout, tools, windDown, ledger, history, turnMetrics, stats: { bargeIns: 0 }, signal },
    call,
    { span: () => undefined, background },
  );
  await session.open();
  sock.emit({ type: 'session.updated', session: { type: 'realtime', audio: { input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } } } });
  expect(h.kind).toBe('live');
  return { h, sock, conversation, history, store, metrics };
}

describe('Conversation', () => {
  it('greets a new call once: a new session after the greeting was said does not greet again', async () => {
    const { sock, conversation } = await harness();
    conversation.live('nothing', tenant);
    expect(creates(sock)).toEqual([`Greet the caller with exactly: ${tenant.model.greeting}`]);
    sock.emit({ type: 'response.created', response: { id: 'r1' } });
    sock.emit({ type: 'response.done', response: { id: 'r1', status: 'completed' } });
    expect(conversation.quiet).toBe(true);
    conversation.newSession();
    conversation.live('history', tenant);
    expect(creates(sock)).toHaveLength(1);
  });

  it('a failed response is asked for once more with its instructions; a second failure is the fallback', async () => {
    const { h, sock, conversation, metrics } = await harness();
    conversation.live('nothing', tenant);
    sock.emit({ type: 'response.created', response: { id: 'r1' } });
    sock.emit({ type: 'response.done', response: { id: 'r1', status: 'failed', status_details: { type: 'failed', error: { type: 'server_error', code: 'server_error' } } } });
    expect(creates(sock)).toHaveLength(2);
    expect(creates(sock)[1]).toBe(creates(sock)[0]);
    expect(h.ended).toBeUndefined();
    sock.emit({ type: 'response.created', response: { id: 'r2' } });
    sock.emit({ type: 'response.done', response: { id: 'r2', status: 'failed', status_details: { type: 'failed', error: { type: 'server_error', code: 'server_error' } } } });
    expect(h.ended).toEqual({ outcome: 'model_failed', code: 4010, reason: 'model response failed (server_error)' });
    const failed = (await metrics.modelErrors.get()).values.find((v) => (v.labels as Record<string, unknown>)['kind'] === 'response');
    expect(failed?.value).toBe(2);
  });

  it('a rejected response.create of ours goes again after the active response; transcripts are kept masked', async () => {
    const { sock, conversation, history, store } = await harness();
    sock.emit({ type: 'response.created', response: { id: 'r_vad' } }); // server VAD's own
    conversation.request();
    expect(creates(sock)).toHaveLength(0); // waits for the active one
    sock.emit({ type: 'response.done', response: { id: 'r_vad', status: 'completed' } });
    expect(creates(sock)).toHaveLength(1);
    const eventId = sock.sent.at(-1)!['event_id'] as string;
    sock.emit({ type: 'error', error: { type: 'invalid_request_error', code: 'conversation_already_has_active_response', message: 'busy', event_id: eventId } });
    sock.emit({ type: 'response.created', response: { id: 'r_other' } });
    sock.emit({ type: 'response.done', response: { id: 'r_other', status: 'completed' } });
    expect(creates(sock)).toHaveLength(2);
    sock.emit({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'i1', content_index: 0, transcript: 'my card is 4111 1111 1111 1111' });
    await flush();
    expect(history.lastRole).toBe('caller');
    const rec = await store.getCall(CALL);
    expect(rec?.transcript[0]?.text).not.toContain('4111 1111 1111 1111');
  });
});
