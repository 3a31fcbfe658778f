/**
 * One call's side of a move on its own: what the migrator sees, the leg that ends without ending
 * the call, a move that did not happen, and the adopting pod's gap — against the memory store.
 */
import { describe, expect, it } from 'vitest';
import { CallLedger } from '../../src/call/call-ledger.js';
import { CallMove, callParties, type CallMoveHost } from '../../src/call/call-move.js';
import type { CallState, CallView } from '../../src/call/call-state.js';
import type { CallOutcome, CallLifecycleListener } from '../../src/call/lifecycle.js';
import type { MigrationFacts } from '../../src/call/migration.js';
import { MemoryCallStore } from '../../src/store/index.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type RelayMetrics } from '../../src/telemetry/metrics.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../../src/tenants/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});
const CALL = 'CA00000000000000000000000000000001';
const flush = () => new Promise((r) => setImmediate(r));

interface Harness {
  move: CallMove;
  call: CallView;
  store: MemoryCallStore;
  metrics: RelayMetrics;
  clock: ManualClock;
  state: MigrationFacts['state'];
  facts: Omit<MigrationFacts, 'state'>;
  finished: { outcome: CallOutcome; code: number; reason: string }[];
  told: string[];
}

async function harness(): Promise<Harness> {
  const clock = new ManualClock(1_000_000);
  const store = new MemoryCallStore(() => clock.now());
  await store.startCall({ callSid: CALL, tenantId: tenant.id, pod: 'pod-a', startedAt: clock.now() });
  const metrics = createMetrics({ defaultMetrics: false });
  const h = { store, metrics, clock, state: 'live', facts: { toolsOpen: false, effectPending: false, restHandOff: false, responding: false, unplayed: false }, finished: [], told: [] } as unknown as Harness;
  const listener: CallLifecycleListener = {
    callEnded: (c) => h.told.push(`ended ${c.outcome}`),
    callMoved: () => h.told.push('moved'),
  };
  const ledger = new CallLedger({ store, metrics, clock, pod: 'pod-a', listeners: [listener], log: () => silentLogger() });
  const call: CallView = {
    // Whether or not an ended call is still named, the move keeps the sid it began with.
    get callSid() {
      return h.state === 'ended' ? undefined : CALL;
    },
    log: silentLogger(),
    get state() {
      return { kind: h.state } as CallState;
    },
    finish: (outcome, code, reason) => {
      h.finished.push({ outcome, code, reason });
      h.state = 'ended';
    },
  };
  const host: CallMoveHost = { tenant: () => tenant, facts: () => h.facts };
  h.call = call;
  h.move = new CallMove(
    { store, metrics, clock, pod: 'pod-a', background: (p) => void p.catch(() => {}), notify: (fn) => ledger.notify(fn), settle: (sid, t, outcome) => void ledger.settle(sid, t, outcome) },
    call,
    host,
  );
  return h;
}

describe('CallMove', () => {
  it('keeps only the parties in the webhook’s shapes: a masked from, one of the tenant’s numbers', () => {
    const own = tenant.phoneNumbers[0]!;
    expect(callParties({ from: '+*******1234', to: own }, tenant)).toEqual({ fromMasked: '+*******1234', to: own });
    expect(callParties({ from: '+15551234567', to: '+19999999999' }, tenant)).toEqual({});
  });

  it('the migrator sees the call and when it may move: at a pause, not mid-answer', async () => {
    const h = await harness();
    const m = h.move.migratable()!;
    expect(m.callSid).toBe(CALL);
    expect(m.migrationReadiness()).toBe('ready');
    h.facts.responding = true;
    expect(m.migrationReadiness()).toBe('busy');
    h.state = 'ending';
    expect(m.migrationReadiness()).toBe('ending');
    h.state = 'ended';
    expect(h.move.migratable()).toBeUndefined();
  });

  it('a stop while moving ends this leg, not the call; release lets go of it without an outcome', async () => {
    const h = await harness();
    expect(h.move.leave('stream stopped')).toBe(false); // not moving: the caller hung up
    h.move.migratable()!.beginMigration();
    expect(h.move.leave('stream stopped by the call update')).toBe(true);
    expect(h.finished).toEqual([{ outcome: 'drained', code: 1000, reason: 'stream stopped by the call update' }]);
    expect(h.move.moved).toBe(true);
    h.move.release(CALL, tenant);
    await flush();
    expect(h.told).toEqual(['moved']);
    const rec = await h.store.getCall(CALL);
    expect(rec?.outcome).toBeUndefined();
  });

  it('a move that did not happen while still streaming: the call stays here, live', async () => {
    const h = await harness();
    await h.store.beginMigration(CALL);
    h.move.migratable()!.beginMigration();
    h.move.migratable()!.cancelMigration();
    await flush();
    expect((await h.store.getCall(CALL))?.phase).toBe('live');
    expect(h.told).toEqual([]);
  });

  it('a move that did not happen after the stream stopped: that stop was the caller hanging up', async () => {
    const h = await harness();
    const m = h.move.migratable()!;
    m.beginMigration();
    h.move.leave('stream stopped by the call update');
    expect(h.call.callSid).toBeUndefined(); // the ended call's state names no call
    m.cancelMigration();
    await flush();
    expect(h.move.moved).toBe(false);
    expect(h.told).toEqual(['ended caller_hung_up']);
    expect((await h.store.getCall(CALL))?.outcome).toBe('caller_hung_up');
    const total = (await h.metrics.callsTotal.get()).values.find((v) => v.labels['outcome'] === 'caller_hung_up');
    expect(total?.value).toBe(1);
  });

  it('an adopted call relaying here: the gap since the old leg stopped, counted and stored', async () => {
    const h = await harness();
    h.move.resumed({ migration: { at: h.clock.now() - 1500, from: 'pod-b', to: 'pod-a', reason: 'drain' } } as unknown as Parameters<CallMove['resumed']>[0], CALL);
    await flush();
    const resumed = (await h.metrics.callMigrations.get()).values.find((v) => v.labels['outcome'] === 'resumed');
    expect(resumed?.value).toBe(1);
    const gap = (await h.metrics.migrationGap.get()).values.find((v) => v.metricName?.endsWith('_sum'));
    expect(gap?.value).toBeCloseTo(1.5);
  });
});
