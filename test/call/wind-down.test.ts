/**
 * The call's last words on their own, over the real state transitions and a manual clock: which
 * effect decides, an effect whose session was lost, the time-limit goodbye, closing once the words are said and heard, and the
 * wind-down's bound.
 */
import { describe, expect, it } from 'vitest';
import { transition, type CallState, type CallView } from '../../src/call/call-state.js';
import type { CallOutcome } from '../../src/call/lifecycle.js';
import { decidingEffect, TIME_LIMIT_GOODBYE, WindDown } from '../../src/call/wind-down.js';
import type { RealtimeSocket } from '../../src/model/index.js';
import type { CallPhase } from '../../src/store/index.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../../src/tenants/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});

const model = { send() {}, bufferedAmount: 0, isOpen: true, droppedSends: 0, onMessage() {}, onClose() {}, close() {} } satisfies RealtimeSocket;

function harness(kind: 'live' | 'connecting' = 'live') {
  const clock = new ManualClock(1_000_000);
  const h = {
    clock,
    state: (kind === 'live'
      ? { kind, streamSid: 'MZ', callSid: 'CA', tenant, model }
      : { kind, streamSid: 'MZ', callSid: 'CA', tenant }) as CallState,
    unplayed: false,
    phases: [] as CallPhase[],
    requests: [] as string[],
    finished: [] as { outcome: CallOutcome; code: number; reason: string }[],
    timers: [] as (() => void)[],
    w: undefined as unknown as WindDown,
  };
  const call: CallView = {
    get state() {
      return h.state;
    },
    callSid: 'CA',
    log: silentLogger(),
    finish(outcome, code, reason) {
      if (h.state.kind === 'ended') return;
      h.finished.push({ outcome, code, reason });
      h.state = { kind: 'ended', outcome };
    },
  };
  h.w = new WindDown({ clock, windDownMs: 15_000, maxCallMs: 60_000, timers: h.timers }, call, {
    move: (input) => {
      h.state = transition(h.state, input) ?? h.state;
    },
    unplayed: () => h.unplayed,
    setPhase: (p) => h.phases.push(p),
    request: (i) => h.requests.push(i),
  });
  return h;
}

describe('WindDown', () => {
  it('a hand-off wins over ending the call; the line closes once its answer is said and has played', () => {
    const h = harness();
    h.w.effects([
      { kind: 'end_call', reason: 'done' },
      { kind: 'transfer', to: '+15550001111', reason: 'emergency' },
    ]);
    expect(h.state).toMatchObject({ kind: 'ending', outcome: 'transferred', closeCode: 4012 });
    expect(h.phases).toEqual(['handing-off']);
    h.w.created('resp_vad', false); // server VAD answered the caller meanwhile: not the last words
    h.w.responseDone('resp_vad');
    h.w.played();
    expect(h.finished).toEqual([]);
    h.w.created('resp_answer', true); // the tools' spoken answer, asked for as the last words
    h.unplayed = true;
    h.w.responseDone('resp_answer');
    expect(h.finished).toEqual([]); // said, still playing
    h.unplayed = false;
    h.w.played();
    expect(h.finished).toEqual([{ outcome: 'transferred', code: 4012, reason: 'handed to a human' }]);
  });

  it('no effect, no wind-down', () => {
    const h = harness();
    h.w.effects([]);
    expect(h.state.kind).toBe('live');
    expect(h.timers).toHaveLength(0);
  });

  it('the time limit: a goodbye is asked for; only that response ends the call (4014)', () => {
    const h = harness();
    h.w.timeUp();
    expect(h.requests).toEqual([TIME_LIMIT_GOODBYE]);
    expect(h.phases).toEqual(['ending']);
    h.w.created('resp_other', false);
    h.w.responseDone('resp_other'); // an answer still running when the limit came
    h.w.played();
    expect(h.finished).toEqual([]);
    h.w.created('resp_bye', true);
    h.w.responseDone('resp_bye');
    expect(h.finished).toEqual([{ outcome: 'too_long', code: 4014, reason: 'assistant ended the call' }]);
    h.w.timeUp(); // ended: nothing more
    expect(h.requests).toHaveLength(1);
  });

  it('an effect decided during the time-limit goodbye: an end_call changes nothing, a transfer hands the call over once the goodbye played', () => {
    const h = harness();
    h.w.timeUp();
    h.w.effects([{ kind: 'end_call', reason: 'bye' }]);
    expect(h.state).toMatchObject({ kind: 'ending', outcome: 'too_long', closeCode: 4014 });
    h.w.effects([{ kind: 'transfer', to: '+1', reason: 'caller-asked' }]);
    expect(h.state).toMatchObject({ kind: 'ending', outcome: 'transferred', closeCode: 4012 });
    expect(h.phases).toEqual(['ending', 'handing-off']);
    h.w.created('resp_bye', true);
    h.unplayed = true;
    h.w.responseDone('resp_bye');
    expect(h.finished).toEqual([]); // said, still playing
    h.unplayed = false;
    h.w.played();
    expect(h.finished).toEqual([{ outcome: 'transferred', code: 4012, reason: 'handed to a human' }]);

    const t = harness(); // a transfer never turns into a hang-up, and the wind-down bound still holds
    t.w.effects([{ kind: 'transfer', to: '+1', reason: 'caller-asked' }]);
    t.w.effects([{ kind: 'end_call', reason: 'bye' }]);
    t.w.timeUp();
    expect(t.state).toMatchObject({ kind: 'ending', outcome: 'transferred' });
    t.clock.advance(15_000);
    expect(t.finished).toEqual([{ outcome: 'transferred', code: 4012, reason: 'goodbye timed out' }]);
  });

  it('a call not live at the limit ends at once; a goodbye that never plays ends at the wind-down bound', () => {
    const h = harness('connecting');
    h.w.timeUp();
    expect(h.finished).toEqual([{ outcome: 'too_long', code: 4014, reason: 'call exceeded MAX_CALL_SECONDS' }]);

    const g = harness();
    g.w.effects([{ kind: 'end_call', reason: 'bye' }]);
    g.clock.advance(14_999);
    expect(g.finished).toEqual([]);
    g.clock.advance(1);
    expect(g.finished).toEqual([{ outcome: 'ended_by_assistant', code: 4011, reason: 'goodbye timed out' }]);
  });

  it('a transfer decides over an end_call in either order', () => {
    const end = { kind: 'end_call', reason: 'x' } as const;
    const transfer = { kind: 'transfer', to: '+1', reason: 'caller-asked' } as const;
    expect(decidingEffect([end, transfer])).toBe(transfer);
    expect(decidingEffect([transfer, end])).toBe(transfer);
    expect(decidingEffect([end])).toBe(end);
    expect(decidingEffect([])).toBeUndefined();
  });

  it('an effect whose session was lost before its answer: carried out at once, without last words', () => {
    const h = harness();
    expect(h.w.stranded([])).toBe(false);
    expect(h.state.kind).toBe('live');
    expect(h.w.stranded([{ kind: 'end_call', reason: 'done' }, { kind: 'transfer', to: '+1', reason: 'emergency' }])).toBe(true);
    expect(h.finished).toEqual([{ outcome: 'transferred', code: 4012, reason: 'handed to a human' }]);
    expect(h.requests).toEqual([]);
    const e = harness();
    expect(e.w.stranded([{ kind: 'end_call', reason: 'done' }])).toBe(true);
    expect(e.finished).toEqual([{ outcome: 'ended_by_assistant', code: 4011, reason: 'assistant ended the call' }]);
  });
});
