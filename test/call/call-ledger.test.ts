/**
 * The call's books on their own: counted live while admitted, the outcome counted and stored once
 * (never for a call that moved), listeners told even when one throws, and the media socket closed
 * only after the outcome is stored, at most OUTCOME_STORE_WAIT_MS later.
 */
import { describe, expect, it } from 'vitest';
import { CallLedger } from '../../src/call/call-ledger.js';
import type { CallLifecycleListener } from '../../src/call/lifecycle.js';
import { MemoryCallStore } from '../../src/store/index.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { createMetrics, type RelayMetrics } from '../../src/telemetry/metrics.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../../src/tenants/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});
const CALL = 'CA00000000000000000000000000000001';
const START = { callSid: CALL, streamSid: 'MZ00000000000000000000000000000001', accountSid: 'AC1', customParameters: {} };
const flush = () => new Promise((r) => setImmediate(r));

async function gauge(m: RelayMetrics): Promise<number> {
  return (await m.activeCalls.get()).values[0]?.value ?? 0;
}

async function outcomes(m: RelayMetrics): Promise<Record<string, number>> {
  // The tenant's outcome series start at 0 (noteTenant): only those counted.
  return Object.fromEntries((await m.callsTotal.get()).values.filter((v) => v.value > 0).map((v) => [String(v.labels['outcome']), v.value]));
}

function harness(listeners: CallLifecycleListener[] = []) {
  const clock = new ManualClock(1_000_000);
  const store = new MemoryCallStore(() => clock.now());
  const metrics = createMetrics({ defaultMetrics: false });
  const ledger = new CallLedger({ store, metrics, clock, pod: 'pod-a', listeners, log: () => silentLogger() });
  return { clock, store, metrics, ledger };
}

describe('CallLedger', () => {
  it('an admitted call counts live until its end; the outcome is counted, stored and told once', async () => {
    const told: string[] = [];
    const h = harness([
      {
        callStarted: () => {
          throw new Error('listener bug');
        },
      },
      { callStarted: (c) => told.push(`started ${c.callSid}`), callEnded: (c) => told.push(`ended ${c.outcome}`) },
    ]);
    h.ledger.started(CALL, 'sim');
    h.ledger.admit(CALL, tenant, () => 0);
    h.ledger.record(START, tenant, { to: tenant.phoneNumbers[0]! });
    await flush();
    expect(await gauge(h.metrics)).toBe(1);
    expect(told).toEqual([`started ${CALL}`]); // the throwing listener did not stop the next
    expect((await h.store.getCall(CALL))?.to).toBe(tenant.phoneNumbers[0]);
    const { stored } = h.ledger.end({ callSid: CALL, tenant, outcome: 'completed', reason: 'stream stopped', started: true, moved: false, unresumed: undefined });
    await stored;
    expect(await gauge(h.metrics)).toBe(0);
    expect(await outcomes(h.metrics)).toEqual({ completed: 1 });
    expect((await h.store.getCall(CALL))?.outcome).toBe('completed');
    expect(told).toEqual([`started ${CALL}`, 'ended completed']);
  });

  it('a call that moved leaves no outcome; a socket closed before its start is no call', async () => {
    const h = harness();
    h.ledger.started(CALL, 'sim');
    h.ledger.admit(CALL, tenant, () => 0);
    h.ledger.record(START, tenant, {});
    const moved = h.ledger.end({ callSid: CALL, tenant, outcome: 'drained', reason: 'moved', started: true, moved: true, unresumed: undefined });
    expect(moved.stored).toBeUndefined();
    await flush();
    expect(await outcomes(h.metrics)).toEqual({});
    expect((await h.store.getCall(CALL))?.outcome).toBeUndefined();
    expect(await gauge(h.metrics)).toBe(0);

    const g = harness();
    expect(g.ledger.end({ callSid: undefined, tenant: undefined, outcome: 'protocol_error', reason: 'media socket closed', started: false, moved: false, unresumed: undefined }).stored).toBeUndefined();
    expect(await outcomes(g.metrics)).toEqual({});
  });

  it('closes the media socket once the outcome is stored, or after 2 s of a store that does not answer', async () => {
    const h = harness();
    let closed = 0;
    let store!: () => void;
    h.ledger.closeWhenStored(new Promise<void>((r) => (store = r)), () => closed++);
    expect(closed).toBe(0);
    store();
    await flush();
    expect(closed).toBe(1);
    h.clock.advance(5000);
    expect(closed).toBe(1); // once

    h.ledger.closeWhenStored(new Promise<void>(() => {}), () => closed++);
    h.clock.advance(1999);
    expect(closed).toBe(1);
    h.clock.advance(1);
    expect(closed).toBe(2);
    h.ledger.closeWhenStored(undefined, () => closed++);
    expect(closed).toBe(3);
  });
});
