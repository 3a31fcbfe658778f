/** The after-stream route's reading of a call's outcome while its pod may still be writing it. */
import { describe, expect, it } from 'vitest';
import { settledOutcome } from '../../src/server/after-stream.js';
import type { CallPhase, CallRecord } from '../../src/store/index.js';

const rec = (phase: CallPhase, outcome?: string): CallRecord => ({
  callSid: 'CA' + '0'.repeat(32),
  tenantId: 'demo',
  pod: 'p',
  pods: ['p'],
  migrations: [],
  phase,
  startedAt: 0,
  updatedAt: 0,
  transcript: [],
  tools: [],
  ...(outcome !== undefined ? { outcome } : {}),
});

/** Reads answering `answers` in turn (the last one repeats); sleeps only count. */
function reader(answers: (CallRecord | undefined)[]): { read: () => Promise<CallRecord | undefined>; sleep: (ms: number) => Promise<void>; slept: () => number } {
  let i = 0;
  let slept = 0;
  return {
    read: () => Promise.resolve(answers[Math.min(i++, answers.length - 1)]),
    sleep: (ms) => {
      slept += ms;
      return Promise.resolve();
    },
    slept: () => slept,
  };
}

describe('settledOutcome', () => {
  it('answers at once when the outcome is stored, or when the call is unknown', async () => {
    const r = reader([rec('ended', 'ended_by_assistant')]);
    expect(await settledOutcome(r.read, r.sleep)).toBe('ended_by_assistant');
    expect(r.slept()).toBe(0);
    const none = reader([undefined]);
    expect(await settledOutcome(none.read, none.sleep)).toBeUndefined();
    expect(none.slept()).toBe(0);
  });

  it('reads again until the outcome lands', async () => {
    const r = reader([rec('live'), rec('live'), rec('ended', 'transferred')]);
    expect(await settledOutcome(r.read, r.sleep)).toBe('transferred');
    expect(r.slept()).toBe(200);
  });

  it('gives up after the wait: a goodbye or hand-off in progress is answered as such, anything else gets the fallback', async () => {
    for (const [phase, want] of [['ending', 'ended_by_assistant'], ['handing-off', 'transferred'], ['live', undefined]] as const) {
      const r = reader([rec(phase)]);
      expect(await settledOutcome(r.read, r.sleep, 1000)).toBe(want);
      expect(r.slept()).toBe(1000);
    }
  });
});
