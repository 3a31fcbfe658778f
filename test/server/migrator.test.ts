/**
 * The drain migrator against a local Twilio REST API (real HTTP, the real SDK-based call control)
 * and the in-memory call store: pacing per account, Retry-After, bounded retries, fall-back to waiting.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { MigratableCall, MigrationReadiness } from '../../src/call/index.js';
import { migrateCalls, type MigrationOutcome, type MigratorOptions } from '../../src/server/migrator.js';
import { MemoryCallStore } from '../../src/store/index.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { DEMO_TENANT, resolveTenant, TenantSchema, type Tenant } from '../../src/tenants/index.js';
import { TwilioCallControl, type CallControl } from '../../src/twilio/index.js';
import { startFakeTwilioApi, type FakeTwilioApi } from '../helpers/fake-twilio-api.js';

function tenantOn(id: string, accountSid: string, over: Record<string, unknown> = {}): Tenant {
  return resolveTenant(TenantSchema.parse({ ...DEMO_TENANT, id, twilio: { accountSid, authToken: { value: `tok-${id}` } }, ...over }), {});
}

const ACCOUNT_A = 'AC' + 'a'.repeat(32);
const ACCOUNT_B = 'AC' + 'b'.repeat(32);
let seq = 0;

/** A live call as the bridge presents it, with what the migrator did to it. */
class TestCall implements MigratableCall {
  readonly callSid = `CA${String(++seq).padStart(32, '0')}`;
  readonly parties = { to: '+15005550006' };
  readiness: MigrationReadiness = 'ready';
  begun = 0;
  cancelled = 0;
  constructor(readonly tenant: Tenant) {}
  migrationReadiness(): MigrationReadiness {
    return this.readiness;
  }
  beginMigration(): void {
    this.begun++;
  }
  cancelMigration(): void {
    this.cancelled++;
  }
}

let fake: FakeTwilioApi;
let store: MemoryCallStore;
beforeAll(async () => {
  fake = await startFakeTwilioApi();
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  fake.requests.length = 0;
  fake.clearFailure();
  fake.answerDelayMs = 0;
  store = new MemoryCallStore();
});

async function live(calls: TestCall[]): Promise<void> {
  for (const c of calls) {
    await store.startCall({ callSid: c.callSid, tenantId: c.tenant.id, pod: 'old-pod', startedAt: Date.now() });
    await store.setPhase(c.callSid, 'live');
    fake.registerCall(c.callSid, { update: () => undefined }, c.tenant.twilio.accountSid);
  }
}

function options(over: Partial<MigratorOptions> = {}, control: Pick<CallControl, 'migrate'> = new TwilioCallControl({ apiBaseUrl: fake.url })): MigratorOptions {
  return {
    control,
    store,
    resumeTwiml: (c) => `<Response><Connect><Stream url="wss://relay.example/twilio/media"><Parameter name="resume" value="tok-${c.callSid}"/></Stream></Connect></Response>`,
    clock: systemClock,
    log: silentLogger(),
    concurrencyPerAccount: 2,
    maxAttempts: 3,
    busyWaitMs: 2000,
    deadline: Date.now() + 30_000,
    backoffMs: 20,
    pollMs: 10,
    ...over,
  };
}

const sidOf = (path: string): string => /Calls\/(CA\w+)\.json/.exec(path)?.[1] ?? '';

describe('migrateCalls', () => {
  it('moves every call once with its resume TwiML, never more than the account limit in flight', async () => {
    const a = tenantOn('acme', ACCOUNT_A);
    const b = tenantOn('bolt', ACCOUNT_B);
    const calls = [...Array.from({ length: 6 }, () => new TestCall(a)), ...Array.from({ length: 3 }, () => new TestCall(b))];
    await live(calls);
    fake.answerDelayMs = 40;
    const real = new TwilioCallControl({ apiBaseUrl: fake.url });
    const inFlight = new Map<string, number>();
    const maxInFlight = new Map<string, number>();
    const control: Pick<CallControl, 'migrate'> = {
      async migrate(account, callSid, twiml) {
        const n = (inFlight.get(account.accountSid) ?? 0) + 1;
        inFlight.set(account.accountSid, n);
        maxInFlight.set(account.accountSid, Math.max(n, maxInFlight.get(account.accountSid) ?? 0));
        try {
          return await real.migrate(account, callSid, twiml);
        } finally {
          inFlight.set(account.accountSid, (inFlight.get(account.accountSid) ?? 1) - 1);
        }
      },
    };
    const counted: MigrationOutcome[] = [];
    const out = await migrateCalls(calls, options({ onOutcome: (o) => counted.push(o) }, control));
    expect([...out.values()]).toEqual(Array(9).fill('migrated'));
    expect(counted).toHaveLength(9);
    expect(maxInFlight.get(ACCOUNT_A)).toBe(2);
    expect(maxInFlight.get(ACCOUNT_B)).toBe(2);
    expect(fake.requests.map((r) => sidOf(r.path)).sort()).toEqual(calls.map((c) => c.callSid).sort());
    for (const c of calls) {
      const req = fake.requests.find((r) => sidOf(r.path) === c.callSid)!;
      expect(req.form['Twiml']).toContain(`<Parameter name="resume" value="tok-${c.callSid}"/>`);
      expect(req.path).toContain(`/Accounts/${c.tenant.twilio.accountSid}/`);
      expect(c.begun).toBe(1);
      expect(c.cancelled).toBe(0);
      expect((await store.getCall(c.callSid))?.phase).toBe('migrating');
    }
  });

  it('waits out a 429 Retry-After for the whole account, then succeeds', async () => {
    const t = tenantOn('acme', ACCOUNT_A);
    const calls = [new TestCall(t), new TestCall(t)];
    await live(calls);
    fake.failWith(429, { code: 20429, message: 'Too Many Requests', status: 429 }, 1);
    const real = new TwilioCallControl({ apiBaseUrl: fake.url });
    const results: string[] = [];
    // Twilio lifts the limit once it has answered the first request.
    const control: Pick<CallControl, 'migrate'> = {
      async migrate(account, callSid, twiml) {
        const r = await real.migrate(account, callSid, twiml);
        results.push(r.kind);
        fake.clearFailure();
        return r;
      },
    };
    const started = Date.now();
    const out = await migrateCalls(calls, options({ concurrencyPerAccount: 1 }, control));
    expect(results).toEqual(['rate_limited', 'updated', 'updated']);
    expect([...out.values()]).toEqual(['migrated', 'migrated']);
    // One 429, then the pause (1 s, jittered to at least 0.75 s) before either call is tried again.
    expect(fake.requests).toHaveLength(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    expect(calls[0]!.cancelled + calls[1]!.cancelled).toBe(1);
  });

  it('gives up on a 429 storm after the bounded attempts: the calls stay (phase back to the bridge)', async () => {
    const t = tenantOn('acme', ACCOUNT_A);
    const calls = [new TestCall(t), new TestCall(t)];
    await live(calls);
    fake.failWith(429, { code: 20429, message: 'Too Many Requests', status: 429 });
    const out = await migrateCalls(calls, options({ maxAttempts: 3 }));
    expect([...out.values()]).toEqual(['rate_limited', 'rate_limited']);
    expect(fake.requests).toHaveLength(6);
    for (const c of calls) expect(c.cancelled).toBe(3);
  });

  it('a call that turns busy between a 429 and its retry keeps its attempt budget', async () => {
    const t = tenantOn('acme', ACCOUNT_A);
    const c = new TestCall(t);
    await live([c]);
    fake.failWith(429, { code: 20429, message: 'Too Many Requests', status: 429 }, 1);
    const real = new TwilioCallControl({ apiBaseUrl: fake.url });
    const control: Pick<CallControl, 'migrate'> = {
      async migrate(account, callSid, twiml) {
        const r = await real.migrate(account, callSid, twiml);
        // The caller starts talking during the pause; they stop again a little later.
        c.readiness = 'busy';
        systemClock.after(1200, () => {
          c.readiness = 'ready';
        });
        return r;
      },
    };
    expect((await migrateCalls([c], options({ maxAttempts: 2 }, control))).get(c.callSid)).toBe('rate_limited');
    expect(fake.requests).toHaveLength(2);
  });

  it('a refused update (bad credentials) leaves the call, and spares the account its other requests', async () => {
    const bad = tenantOn('acme', ACCOUNT_A);
    const good = tenantOn('bolt', ACCOUNT_B);
    const calls = [new TestCall(bad), new TestCall(bad), new TestCall(bad)];
    const other = new TestCall(good);
    await live([...calls, other]);
    fake.failWith(401, { code: 20003, message: 'Authenticate', status: 401 });
    const out = await migrateCalls(calls, options({ concurrencyPerAccount: 1 }));
    expect([...out.values()]).toEqual(['refused', 'refused', 'refused']);
    expect(fake.requests).toHaveLength(1);
    expect(calls.map((c) => c.cancelled)).toEqual([1, 0, 0]);
    fake.clearFailure();
    expect((await migrateCalls([other], options())).get(other.callSid)).toBe('migrated');
  });

  it('retries a server error with backoff, bounded', async () => {
    const t = tenantOn('acme', ACCOUNT_A);
    const c = new TestCall(t);
    await live([c]);
    fake.failWith(503, { code: 20503, message: 'Service Unavailable', status: 503 });
    expect((await migrateCalls([c], options({ maxAttempts: 2 }))).get(c.callSid)).toBe('failed');
    expect(fake.requests).toHaveLength(2);
  });

  it('moves a call in the middle of a tool once it completes; one that stays busy is left to drain', async () => {
    const t = tenantOn('acme', ACCOUNT_A);
    const inTool = new TestCall(t);
    const stuck = new TestCall(t);
    const goodbye = new TestCall(t);
    await live([inTool, stuck, goodbye]);
    inTool.readiness = 'busy';
    stuck.readiness = 'busy';
    goodbye.readiness = 'ending';
    systemClock.after(150, () => {
      inTool.readiness = 'ready';
    });
    const out = await migrateCalls([inTool, stuck, goodbye], options({ busyWaitMs: 400 }));
    expect(Object.fromEntries(out)).toEqual({ [inTool.callSid]: 'migrated', [stuck.callSid]: 'busy', [goodbye.callSid]: 'ended' });
    expect(fake.requests.map((r) => sidOf(r.path))).toEqual([inTool.callSid]);
    expect(stuck.begun + goodbye.begun).toBe(0);
  });

  it('leaves the calls of a tenant that opted out, and starts nothing past the deadline', async () => {
    const out = tenantOn('acme', ACCOUNT_A, { migration: false });
    const late = tenantOn('bolt', ACCOUNT_B);
    const a = new TestCall(out);
    const b = new TestCall(late);
    await live([a, b]);
    const r = await migrateCalls([a, b], options({ deadline: Date.now() - 1 }));
    expect(Object.fromEntries(r)).toEqual({ [a.callSid]: 'opted_out', [b.callSid]: 'deadline' });
    expect(fake.requests).toHaveLength(0);
  });

  it('does not move a call the store cannot hand over (its record is gone or ended)', async () => {
    const t = tenantOn('acme', ACCOUNT_A);
    const c = new TestCall(t);
    await live([c]);
    await store.endCall(c.callSid, 'completed', 60);
    expect((await migrateCalls([c], options())).get(c.callSid)).toBe('failed');
    expect(fake.requests).toHaveLength(0);
    expect(c.begun).toBe(0);
  });
});
