/**
 * The CallStore contract, run against every implementation: two handles on one backing store stand
 * for two relay pods. Implementation-specific behaviour (TTLs, reconnects) lives in each store's file.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CallQuery, CallRecord, CallStore, NewCall, StoredToolResult, ToolCallRecord } from '../../src/store/index.js';

/** Two pods' views of one store; `close` ends both. */
export interface StorePair {
  a: CallStore;
  b: CallStore;
  close(): Promise<void>;
}

let seq = 0;
export function sid(): string {
  seq++;
  return `CA${String(seq).padStart(4, '0')}${'0'.repeat(28)}`;
}

function newCall(callSid: string, pod: string, over: Partial<NewCall> = {}): NewCall {
  return { callSid, tenantId: 'demo', pod, startedAt: Date.now(), streamSid: 'MZ1', fromMasked: '+*******0100', to: '+15005550006', ...over };
}

function toolRec(callId: string, over: Partial<ToolCallRecord> = {}): ToolCallRecord {
  return { callId, name: 'quote_price', arguments: '{"service":"leak_repair"}', output: '{"ok":true}', outcome: 'ok', startedAt: Date.now(), durationMs: 3, ...over };
}

/** Every page of a listing, following `next` (bounded), and each page's size. */
async function allPages(store: CallStore, q: Omit<CallQuery, 'cursor'>): Promise<{ sids: string[]; pages: number[] }> {
  const sids: string[] = [];
  const pages: number[] = [];
  let cursor: CallQuery['cursor'];
  for (let n = 0; n < 50; n++) {
    const page = await store.listCalls({ ...q, ...(cursor ? { cursor } : {}) });
    sids.push(...page.calls.map((c: CallRecord) => c.callSid));
    pages.push(page.calls.length);
    if (!page.next) return { sids, pages };
    cursor = page.next;
  }
  throw new Error('listing did not end within 50 pages');
}

export function callStoreContract(name: string, open: () => Promise<StorePair>): void {
  describe(`CallStore contract: ${name}`, () => {
    let p: StorePair;
    beforeEach(async () => {
      p = await open();
    });
    afterEach(async () => {
      await p.close();
    });

    it('lists a call registered by another pod and reads its record back', async () => {
      const s = sid();
      await p.a.startCall(newCall(s, 'pod-a'));
      const active = await p.b.listActive();
      expect(active.map((c) => c.callSid)).toContain(s);
      const r = await p.b.getCall(s);
      expect(r).toMatchObject({ callSid: s, tenantId: 'demo', pod: 'pod-a', phase: 'connecting', streamSid: 'MZ1', fromMasked: '+*******0100', to: '+15005550006', transcript: [], tools: [] });
    });

    it('keeps phases, transcript order, tool records (once per callId), summary and emergency flag', async () => {
      const s = sid();
      await p.a.startCall(newCall(s, 'pod-a'));
      await p.a.setPhase(s, 'live');
      await p.a.appendTranscript(s, { role: 'assistant', text: 'Hello', at: 1 });
      await p.a.appendTranscript(s, { role: 'caller', text: 'Hi there', at: 2 });
      await p.a.appendTranscript(s, { role: 'assistant', text: 'Cut off', at: 3, interrupted: true });
      await p.a.recordToolCall(s, toolRec('c1', { startedAt: 10 }));
      await p.a.recordToolCall(s, toolRec('c1', { output: '{"ok":false}', startedAt: 11 }));
      await p.a.recordToolCall(s, toolRec('c2', { name: 'book_appointment', startedAt: 12 }));
      await p.a.setSummary(s, { reason: 'leak', bookings: [{ id: 'BK-1' }] });
      await p.a.flagEmergency(s, { kind: 'flood', severity: 'critical', at: 5, transferred: true });
      const r = await p.b.getCall(s);
      expect(r?.phase).toBe('live');
      expect(r?.transcript).toEqual([
        { role: 'assistant', text: 'Hello', at: 1 },
        { role: 'caller', text: 'Hi there', at: 2 },
        { role: 'assistant', text: 'Cut off', at: 3, interrupted: true },
      ]);
      expect(r?.tools.map((t) => [t.callId, t.output])).toEqual([
        ['c1', '{"ok":true}'],
        ['c2', '{"ok":true}'],
      ]);
      expect(r?.summary).toEqual({ reason: 'leak', bookings: [{ id: 'BK-1' }] });
      expect(r?.emergency).toEqual({ kind: 'flood', severity: 'critical', at: 5, transferred: true });
    });

    it('ends a call once: out of the active index, record kept, first outcome wins, phase frozen', async () => {
      const s = sid();
      await p.a.startCall(newCall(s, 'pod-a'));
      await p.a.endCall(s, 'ended_by_assistant', 3600);
      await p.b.endCall(s, 'caller_hung_up', 3600);
      await p.b.setPhase(s, 'live');
      expect((await p.b.listActive()).map((c) => c.callSid)).not.toContain(s);
      const r = await p.b.getCall(s);
      expect(r).toMatchObject({ phase: 'ended', outcome: 'ended_by_assistant' });
      expect(r?.endedAt).toBeGreaterThan(0);
    });

    it('lists live and ended calls newest first, paged by cursor without gaps or repeats', async () => {
      const t0 = Date.now() - 60_000;
      const s = Array.from({ length: 7 }, () => sid());
      // s[5] and s[6] start in the same millisecond: the order between them is still fixed.
      const starts = [0, 1000, 2000, 3000, 4000, 5000, 5000];
      for (const [i, c] of s.entries()) await p.a.startCall(newCall(c, i % 2 ? 'pod-a' : 'pod-b', { startedAt: t0 + starts[i]! }));
      await p.a.endCall(s[0]!, 'completed', 3600);
      await p.b.endCall(s[3]!, 'caller_hung_up', 3600);
      const newest = [s[6]!, s[5]!, s[4]!, s[3]!, s[2]!, s[1]!, s[0]!];
      const all = await allPages(p.b, { state: 'all', limit: 2 });
      expect(all.sids).toEqual(newest);
      expect(all.pages.slice(0, 3)).toEqual([2, 2, 2]);
      expect((await allPages(p.a, { state: 'all', limit: 1 })).sids).toEqual(newest);
      expect((await allPages(p.b, { state: 'ended', limit: 10 })).sids).toEqual([s[3], s[0]]);
      expect((await allPages(p.b, { state: 'live', limit: 2 })).sids).toEqual([s[6], s[5], s[4], s[2], s[1]]);
      const first = await p.b.listCalls({ state: 'ended', limit: 5 });
      expect(first.calls[0]).toMatchObject({ callSid: s[3], phase: 'ended', outcome: 'caller_hung_up', fromMasked: '+*******0100', to: '+15005550006' });
      expect(first.next).toBeUndefined();
    });

    it('filters listings by tenant, outcome, caller, number called and start time', async () => {
      const t0 = Date.now() - 60_000;
      const [a, b, c, d] = [sid(), sid(), sid(), sid()];
      await p.a.startCall(newCall(a, 'pod-a', { startedAt: t0, tenantId: 'acme', fromMasked: '+*******4321', to: '+15005550009' }));
      await p.a.startCall(newCall(b, 'pod-a', { startedAt: t0 + 10 }));
      await p.b.startCall(newCall(c, 'pod-b', { startedAt: t0 + 20, tenantId: 'acme' }));
      await p.b.startCall(newCall(d, 'pod-b', { startedAt: t0 + 30 }));
      await p.a.endCall(a, 'transferred', 3600);
      await p.a.endCall(b, 'completed', 3600);
      await p.b.endCall(c, 'completed', 3600);
      const list = async (q: Partial<CallQuery>): Promise<string[]> => (await allPages(p.b, { state: 'all', limit: 3, ...q })).sids;
      expect(await list({ tenantId: 'acme' })).toEqual([c, a]);
      expect(await list({ tenantId: 'acme', limit: 1 })).toEqual([c, a]);
      expect(await list({ tenantId: 'nobody' })).toEqual([]);
      expect(await list({ outcome: 'completed' })).toEqual([c, b]);
      expect(await list({ outcome: 'completed', tenantId: 'demo', state: 'ended' })).toEqual([b]);
      expect(await list({ from: '4321' })).toEqual([a]);
      expect(await list({ from: '+15557654321' })).toEqual([a]);
      expect(await list({ from: '+1555765432' })).toEqual([]); // one digit short: another number
      expect(await list({ to: '+15005550009' })).toEqual([a]);
      expect(await list({ since: t0 + 10, until: t0 + 30 })).toEqual([c, b]);
      expect(await list({ since: t0 + 10, until: t0 + 30, limit: 1 })).toEqual([c, b]);
      expect(await list({ state: 'live', since: t0 + 25 })).toEqual([d]);
    });

    it('ignores writes for a call nobody started', async () => {
      const s = sid();
      await p.a.setPhase(s, 'live');
      await p.a.appendTranscript(s, { role: 'caller', text: 'x', at: 1 });
      expect(await p.b.getCall(s)).toBeUndefined();
    });

    it('consumes a one-time id exactly once across pods, even when raced', async () => {
      const id = `tok-${sid()}`;
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? p.a : p.b).consumeOnce(id, 60)));
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await p.a.consumeOnce(id, 60)).toBe(false);
    });

    it('keeps the first tool result per (callSid, callId): a replay gets it back', async () => {
      const s = sid();
      await p.a.startCall(newCall(s, 'pod-a'));
      const first: StoredToolResult = { output: '{"id":"BK-1"}', outcome: 'ok', at: 1, effect: { kind: 'transfer', to: '+15005550007', reason: 'emergency' } };
      const second: StoredToolResult = { output: '{"id":"BK-2"}', outcome: 'ok', at: 2 };
      expect(await p.b.getToolResult(s, 'call_1')).toBeUndefined();
      const [x, y] = await Promise.all([p.a.putToolResult(s, 'call_1', first), p.b.putToolResult(s, 'call_1', second)]);
      expect(x).toEqual(y);
      const stored = await p.b.getToolResult(s, 'call_1');
      expect(stored).toEqual(x);
      expect(await p.a.putToolResult(s, 'call_1', { output: 'late', outcome: 'ok', at: 3 })).toEqual(x);
      expect(await p.a.getToolResult(s, 'call_2')).toBeUndefined();
    });

    it('stores tool results for calls it does not know (tools run before the call record lands)', async () => {
      const s = sid();
      const r: StoredToolResult = { output: '{}', outcome: 'ok', at: 1 };
      expect(await p.a.putToolResult(s, 'c', r)).toEqual(r);
      expect(await p.b.getToolResult(s, 'c')).toEqual(r);
    });

    it('grants a claim to exactly one of many racing owners; the holder may claim again', async () => {
      const owners = Array.from({ length: 8 }, (_, i) => `CAx:call_${i}`);
      const holders = await Promise.all(
        owners.map((owner, i) => (i % 2 ? p.a : p.b).claim({ tenantId: 'demo', key: 'slot:2030-01-07T09:00', owner, ttlSeconds: 60 })),
      );
      const winner = holders[0];
      expect(new Set(holders).size).toBe(1);
      expect(owners).toContain(winner);
      expect(await p.a.claim({ tenantId: 'demo', key: 'slot:2030-01-07T09:00', owner: winner!, ttlSeconds: 60 })).toBe(winner);
      // Claims are per tenant.
      expect(await p.a.claim({ tenantId: 'other', key: 'slot:2030-01-07T09:00', owner: 'me', ttlSeconds: 60 })).toBe('me');
    });

    it('releases a claim only for its holder', async () => {
      const key = `tech:${sid()}`;
      await p.a.claim({ tenantId: 'demo', key, owner: 'one', ttlSeconds: 60 });
      expect(await p.b.release('demo', key, 'two')).toBe(false);
      expect(await p.b.claim({ tenantId: 'demo', key, owner: 'two', ttlSeconds: 60 })).toBe('one');
      expect(await p.b.release('demo', key, 'one')).toBe(true);
      expect(await p.b.claim({ tenantId: 'demo', key, owner: 'two', ttlSeconds: 60 })).toBe('two');
      expect(await p.a.release('demo', key, 'two')).toBe(true);
      expect(await p.a.release('demo', key, 'two')).toBe(false);
    });

    it('reaps the calls of a pod that stopped beating, once, with outcome abandoned', async () => {
      const t0 = Date.now();
      const dead = sid();
      const alive = sid();
      const finished = sid();
      await p.a.startCall(newCall(dead, 'pod-dead', { retentionSeconds: 7200 }));
      await p.a.startCall(newCall(finished, 'pod-dead'));
      await p.a.endCall(finished, 'completed', 3600);
      await p.b.startCall(newCall(alive, 'pod-alive'));
      const later = t0 + 60_000;
      await p.b.heartbeat('pod-alive', later);
      // Two survivors reap at the same moment: each call is counted by exactly one of them.
      const [r1, r2] = await Promise.all([p.a.reapDeadPods(later, 30_000), p.b.reapDeadPods(later, 30_000)]);
      expect([...r1.calls, ...r2.calls]).toEqual([dead]);
      expect([...r1.pods, ...r2.pods]).toEqual(['pod-dead']);
      expect(await p.a.getCall(dead)).toMatchObject({ phase: 'ended', outcome: 'abandoned', endedAt: later });
      expect(await p.a.getCall(finished)).toMatchObject({ outcome: 'completed' });
      expect((await p.a.listActive()).map((c) => c.callSid)).toEqual([alive]);
      // Nothing left to reap; a pod that keeps beating is never reaped.
      expect(await p.b.reapDeadPods(later, 30_000)).toEqual({ pods: [], calls: [] });
    });

    it('hands a moving call over: the holder releases it, one adopter takes it with its conversation, pods and migrations', async () => {
      const s = sid();
      await p.a.startCall(newCall(s, 'pod-a'));
      await p.a.setPhase(s, 'live');
      await p.a.appendTranscript(s, { role: 'caller', text: 'Book me in', at: 1 });
      await p.a.recordToolCall(s, toolRec('call_1', { name: 'book_appointment' }));
      await p.a.putToolResult(s, 'call_1', { output: '{"ok":true,"id":"BK-1"}', outcome: 'ok', at: 2 });
      // A held call is nobody else's to adopt.
      expect(await p.b.adoptCall(s, { pod: 'pod-b', streamSid: 'MZ2', now: 6 })).toEqual({ ok: false, reason: 'live' });
      const updatedAt = Date.now();
      await p.a.beginMigration(s, { reason: 'drain', at: updatedAt });
      expect(await p.b.getCall(s)).toMatchObject({ phase: 'migrating', migratingAt: updatedAt, migratingReason: 'drain', pod: 'pod-a' });
      // The old pod's stream ends (Twilio ran the update): its end does not end the call; the gap starts here.
      const stoppedAt = updatedAt + 40;
      await p.a.endCall(s, 'caller_hung_up', 60, 'pod-a');
      await p.a.releaseCall(s, 'pod-a', stoppedAt);
      expect(await p.b.getCall(s)).toMatchObject({ phase: 'migrating', migratingAt: stoppedAt, pod: 'pod-a' });
      // Two streams race for it: exactly one adopts.
      const [x, y] = await Promise.all([
        p.b.adoptCall(s, { pod: 'pod-b', streamSid: 'MZ2', now: stoppedAt + 900 }),
        p.a.adoptCall(s, { pod: 'pod-c', streamSid: 'MZ3', now: stoppedAt + 900 }),
      ]);
      const won = [x, y].filter((r) => r.ok);
      expect(won).toHaveLength(1);
      expect([x, y].filter((r) => !r.ok)).toEqual([{ ok: false, reason: 'live' }]);
      const winner = x.ok ? 'pod-b' : 'pod-c';
      const migration = { at: stoppedAt, from: 'pod-a', to: winner, reason: 'drain' };
      expect(won[0]).toMatchObject({ ok: true, migration, record: { pod: winner, phase: 'connecting', pods: ['pod-a', winner], migrations: [migration] } });
      const adopted = won[0]!.ok ? won[0]!.record : undefined;
      expect(adopted?.transcript).toEqual([{ role: 'caller', text: 'Book me in', at: 1 }]);
      expect(adopted?.tools.map((t) => t.callId)).toEqual(['call_1']);
      const mine = x.ok ? p.b : p.a;
      expect(await mine.getToolResult(s, 'call_1')).toMatchObject({ output: '{"ok":true,"id":"BK-1"}' });
      await mine.noteMigrationGap(s, 850);
      expect((await p.a.getCall(s))?.migrations).toEqual([{ ...migration, gapMs: 850 }]);
      expect((await p.a.listActive()).map((c) => c.callSid)).toContain(s);
      // A late end from the old pod is ignored; the new holder's end counts.
      await p.a.endCall(s, 'caller_hung_up', 60, 'pod-a');
      expect(await p.a.getCall(s)).toMatchObject({ phase: 'connecting', pod: winner });
      await mine.endCall(s, 'completed', 60, winner);
      expect(await p.a.getCall(s)).toMatchObject({ phase: 'ended', outcome: 'completed', pods: ['pod-a', winner] });
      expect(await p.b.adoptCall(s, { pod: 'pod-b', streamSid: 'MZ4', now: 7 })).toEqual({ ok: false, reason: 'ended' });
      expect(await p.b.adoptCall(sid(), { pod: 'pod-b', streamSid: 'MZ4', now: 7 })).toEqual({ ok: false, reason: 'unknown' });
    });

    it('a release undone (the move failed) gives the call back to its holder', async () => {
      const s = sid();
      await p.a.startCall(newCall(s, 'pod-a'));
      await p.a.beginMigration(s);
      await p.a.setPhase(s, 'live');
      expect(await p.b.adoptCall(s, { pod: 'pod-b', streamSid: 'MZ2', now: 2 })).toEqual({ ok: false, reason: 'live' });
      await p.a.endCall(s, 'caller_hung_up', 60, 'pod-a');
      const rec = await p.b.getCall(s);
      expect(rec).toMatchObject({ phase: 'ended', outcome: 'caller_hung_up', pods: ['pod-a'], migrations: [] });
      expect(rec?.migratingAt).toBeUndefined();
    });

    it("the reaper leaves a dead pod's released call to its adopter, and an adopted call to its new pod", async () => {
      const t0 = Date.now();
      const released = sid();
      const adopted = sid();
      await p.a.startCall(newCall(released, 'pod-gone'));
      await p.a.startCall(newCall(adopted, 'pod-gone'));
      await p.a.beginMigration(released, { reason: 'crash', at: t0 });
      await p.a.beginMigration(adopted, { reason: 'crash', at: t0 });
      expect((await p.b.adoptCall(adopted, { pod: 'pod-new', streamSid: 'MZ2', now: t0 })).ok).toBe(true);
      const later = t0 + 60_000;
      await p.b.heartbeat('pod-new', later);
      const r = await p.b.reapDeadPods(later, 30_000);
      expect(r.calls).toEqual([]);
      expect(await p.a.getCall(released)).toMatchObject({ phase: 'migrating' });
      expect(await p.a.getCall(adopted)).toMatchObject({ phase: 'connecting', pod: 'pod-new' });
      expect((await p.b.adoptCall(released, { pod: 'pod-new', streamSid: 'MZ3', now: later })).ok).toBe(true);
    });

    it('a migrating call released by its pod stays live and is not reaped with that pod', async () => {
      const t0 = Date.now();
      const moving = sid();
      await p.a.startCall(newCall(moving, 'pod-old'));
      await p.a.appendTranscript(moving, { role: 'caller', text: 'my sink leaks', at: t0 });
      await p.a.beginMigration(moving);
      expect(await p.b.getCall(moving)).toMatchObject({ phase: 'migrating', transcript: [{ text: 'my sink leaks' }] });
      await p.a.releaseCall(moving, 'pod-old');
      // The old pod is gone for good: its reap must not end the call the next pod resumes.
      const r = await p.b.reapDeadPods(t0 + 60_000, 30_000);
      expect(r.calls).toEqual([]);
      const rec = await p.b.getCall(moving);
      expect(rec).toMatchObject({ phase: 'migrating', pod: 'pod-old' });
      expect(rec?.outcome).toBeUndefined();
      expect((await p.b.listActive()).map((c) => c.callSid)).toContain(moving);
    });

    it('refuses to begin the migration of an ended call', async () => {
      const done = sid();
      await p.a.startCall(newCall(done, 'pod-a'));
      await p.a.endCall(done, 'completed', 60);
      await expect(p.a.beginMigration(done)).rejects.toMatchObject({ code: 'store_unavailable' });
    });

    it('answers ping', async () => {
      expect(await p.a.ping()).toBe(true);
    });
  });
}
