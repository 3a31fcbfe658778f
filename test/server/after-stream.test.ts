/** The after-stream route's reading of a call's outcome while its pod may still be writing it. */
import { describe, expect, it } from 'vitest';
import { crashResumeRefusal, MAX_CRASH_RESUMES, settledOutcome } from '../../src/server/after-stream.js';
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

describe('crashResumeRefusal', () => {
  const HOUR = 3_600_000;
  it('resumes a call cut while live, connecting or moving; never one that ended, is ending or handing off', () => {
    for (const phase of ['live', 'connecting', 'migrating'] as const) expect(crashResumeRefusal(rec(phase), 60_000, HOUR)).toBeUndefined();
    for (const phase of ['ending', 'handing-off', 'ended'] as const) expect(crashResumeRefusal(rec(phase), 60_000, HOUR)).toBe('ended');
    expect(crashResumeRefusal(rec('live', 'caller_hung_up'), 60_000, HOUR)).toBe('ended');
  });

  it(`stops after ${MAX_CRASH_RESUMES} crash resumes, and near MAX_CALL_SECONDS`, () => {
    const moved = (n: number): CallRecord => ({
      ...rec('live'),
      migrations: Array.from({ length: n }, (_, i) => ({ at: i, from: `p${i}`, to: `p${i + 1}`, reason: 'crash' as const })),
    });
    expect(crashResumeRefusal(moved(MAX_CRASH_RESUMES - 1), 60_000, HOUR)).toBeUndefined();
    expect(crashResumeRefusal(moved(MAX_CRASH_RESUMES), 60_000, HOUR)).toBe('too_many_resumes');
    // Drain moves do not count against the crash budget.
    const drained: CallRecord = { ...moved(MAX_CRASH_RESUMES), migrations: moved(MAX_CRASH_RESUMES).migrations.map((m) => ({ ...m, reason: 'drain' as const })) };
    expect(crashResumeRefusal(drained, 60_000, HOUR)).toBeUndefined();
    expect(crashResumeRefusal(rec('live'), HOUR - 10_000, HOUR)).toBe('too_long');
    expect(crashResumeRefusal(rec('live'), HOUR - 10_001, HOUR)).toBeUndefined();
  });
});
