import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryCallStore, RedisCallStore, type CallRecord } from '../../src/store/index.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../../src/tenants/index.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { BuiltinToolRunner, callSummaryListener, summariseCall, type ToolResult } from '../../src/tools/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});
let n = 0;
function ctx(callSid = `CA${String(++n).padStart(32, '0')}`, callId = `call_${++n}`) {
  return { callSid, tenant, callId, log: silentLogger(), signal: new AbortController().signal };
}
const out = (r: ToolResult): Record<string, unknown> => JSON.parse(r.output) as Record<string, unknown>;

describe('business tools (memory store)', () => {
  const runner = new BuiltinToolRunner({ store: new MemoryCallStore() });

  it('offers every enabled tool with a JSON schema made from its zod schema', () => {
    const defs = runner.definitions(tenant);
    expect(defs.map((d) => d.name).sort()).toEqual([...tenant.tools].sort());
    const book = defs.find((d) => d.name === 'book_appointment');
    expect(book?.parameters['type']).toBe('object');
    expect(book?.parameters['required']).toEqual(expect.arrayContaining(['service', 'slot', 'customerName']));
  });

  it('check_service_area: exact, prefix, nearest alternative, address, and a helpful error', async () => {
    expect(out(await runner.run(ctx(), 'check_service_area', '{"postcode":"10001"}'))).toMatchObject({ ok: true, served: true });
    expect(out(await runner.run(ctx(), 'check_service_area', '{"postcode":"11234"}'))).toMatchObject({ served: true });
    expect(out(await runner.run(ctx(), 'check_service_area', '{"postcode":"10005"}'))).toMatchObject({ served: false, nearestServedPostcode: '10003' });
    expect(out(await runner.run(ctx(), 'check_service_area', '{"address":"12 Main St, New York, NY 10002"}'))).toMatchObject({ postcode: '10002', served: true });
    const bad = await runner.run(ctx(), 'check_service_area', '{}');
    expect(bad.outcome).toBe('invalid_arguments');
    expect(out(bad).error).toContain('give a postcode or an address');
  });

  it('quote_price: range with options and currency; unknown service lists what is offered', async () => {
    const q = out(await runner.run(ctx(), 'quote_price', '{"service":"Drain cleaning","afterHours":true}'));
    expect(q).toMatchObject({ service: 'drain_cleaning', currency: 'USD', minPrice: 200, maxPrice: 330, options: ['after_hours'] });
    const bad = await runner.run(ctx(), 'quote_price', '{"service":"roofing"}');
    expect(bad.outcome).toBe('invalid_arguments');
    expect(out(bad).error).toContain('drain_cleaning, water_heater_repair, leak_repair');
    const opt = await runner.run(ctx(), 'quote_price', '{"service":"leak_repair","options":["gold_plated"]}');
    expect(out(opt).error).toContain('Unknown option gold_plated');
    expect((await runner.run(ctx(), 'quote_price', '{not json')).outcome).toBe('invalid_arguments');
  });

  it('book_appointment: confirms, replays the same call_id with the same answer, refuses a taken slot', async () => {
    const c = ctx();
    const args = JSON.stringify({ service: 'leak_repair', slot: '2030-01-07T11:00', customerName: 'Ada', customerPhone: '+1 415 555 0100' });
    const first = await runner.run(c, 'book_appointment', args);
    expect(first.outcome).toBe('ok');
    expect(out(first)).toMatchObject({ booked: true, slot: '2030-01-07T11:00' });
    expect(out(first)['confirmationId']).toMatch(/^BK-[0-9A-F]{8}$/);
    // Replay (the model re-sent its call_id), even with different arguments: the first result.
    expect(await runner.run(c, 'book_appointment', args)).toEqual(first);
    expect(await runner.run(c, 'book_appointment', '{"service":"leak_repair","slot":"2030-01-08T09:00","customerName":"Ada"}')).toEqual(first);
    const other = await runner.run(ctx(), 'book_appointment', args);
    expect(other.outcome).toBe('rejected');
    expect(out(other)).toMatchObject({ ok: false, slotTaken: true, alternatives: ['2030-01-07T09:00', '2030-01-07T14:00', '2030-01-08T09:00'] });
  });

  it('book_appointment: bad arguments come back as errors the model can act on', async () => {
    const noName = await runner.run(ctx(), 'book_appointment', '{"service":"leak_repair","slot":"2030-01-07T09:00"}');
    expect(noName.outcome).toBe('invalid_arguments');
    expect(out(noName).error).toContain('customerName');
    const badSlot = await runner.run(ctx(), 'book_appointment', '{"service":"leak_repair","slot":"2031-05-05T10:00","customerName":"A"}');
    expect(out(badSlot).error).toContain('Offered slots: 2030-01-07T09:00');
    const fmt = await runner.run(ctx(), 'book_appointment', '{"service":"leak_repair","slot":"tomorrow 9am","customerName":"A"}');
    expect(out(fmt).error).toContain('YYYY-MM-DDTHH:MM');
  });

  it('assign_technician: a free technician per slot, atomically, until all are busy', async () => {
    const slot = '2030-01-08T11:00';
    const a = ctx();
    const first = out(await runner.run(a, 'assign_technician', JSON.stringify({ skill: 'leak_repair', postcode: '10002', slot })));
    expect(first).toMatchObject({ assigned: true, technicianId: 'tech-ana' });
    expect(out(await runner.run(ctx(), 'assign_technician', JSON.stringify({ skill: 'leak_repair', postcode: '10002', slot })))).toMatchObject({ technicianId: 'tech-ben' });
    const busy = await runner.run(ctx(), 'assign_technician', JSON.stringify({ skill: 'leak_repair', postcode: '10002', slot }));
    expect(busy.outcome).toBe('rejected');
    expect(out(await runner.run(ctx(), 'assign_technician', JSON.stringify({ skill: 'roofing', slot })))).toMatchObject({ ok: false });
  });

  it('transfer_to_human: a transfer effect, or a refusal when the tenant has no human', async () => {
    const r = await runner.run(ctx(), 'transfer_to_human', '{"reason":"wants a person"}');
    expect(r.effect).toEqual({ kind: 'transfer', to: '+15005550007', reason: 'caller-asked' });
    const lonely = resolveTenant(TenantSchema.parse({ ...DEMO_TENANT, humanFallbackNumber: undefined }), {});
    const none = await runner.run({ ...ctx(), tenant: lonely }, 'transfer_to_human', '{}');
    expect(none.outcome).toBe('rejected');
    expect(none.effect).toBeUndefined();
  });

  it('flag_emergency with the advise policy marks the call and does not transfer', async () => {
    const store = new MemoryCallStore();
    const advise = resolveTenant(TenantSchema.parse({ ...DEMO_TENANT, business: { ...DEMO_TENANT.business, emergencyPolicy: 'advise' } }), {});
    const c = { ...ctx(), tenant: advise };
    await store.startCall({ callSid: c.callSid, tenantId: 'demo', pod: 'p', startedAt: 1 });
    const r = await new BuiltinToolRunner({ store }).run(c, 'flag_emergency', '{"description":"pipe burst, water everywhere"}');
    expect(r.effect).toBeUndefined();
    expect(out(r)).toMatchObject({ emergency: true, transferring: false });
    expect((await store.getCall(c.callSid))?.emergency).toMatchObject({ kind: 'other', severity: 'high', transferred: false });
  });

  it('unknown and disabled tools are refused without throwing', async () => {
    expect((await runner.run(ctx(), 'launch_rockets', '{}')).outcome).toBe('unknown_tool');
    const narrow = resolveTenant(TenantSchema.parse({ ...DEMO_TENANT, tools: ['end_call'] }), {});
    expect((await runner.run({ ...ctx(), tenant: narrow }, 'book_appointment', '{}')).outcome).toBe('unknown_tool');
  });

  it('create_call_summary stores a structured summary; summariseCall derives one at call end', async () => {
    const store = new MemoryCallStore();
    const r = new BuiltinToolRunner({ store });
    const c = ctx();
    await store.startCall({ callSid: c.callSid, tenantId: 'demo', pod: 'p', startedAt: 1000 });
    await store.appendTranscript(c.callSid, { role: 'caller', text: 'My sink is leaking', at: 1 });
    const booked = await r.run(c, 'book_appointment', '{"service":"leak_repair","slot":"2030-01-08T09:00","customerName":"Bo"}');
    await store.recordToolCall(c.callSid, { callId: c.callId, name: 'book_appointment', arguments: '{}', output: booked.output, outcome: booked.outcome, startedAt: 2, durationMs: 1 });
    const s = await r.run({ ...c, callId: 'call_sum' }, 'create_call_summary', '{"reason":"Leaking sink","outcome":"booked","followUps":["bring a new trap"]}');
    expect(s.outcome).toBe('ok');
    const rec = (await store.getCall(c.callSid)) as CallRecord;
    expect(rec.summary).toMatchObject({
      reason: 'Leaking sink',
      outcome: 'booked',
      followUps: ['bring a new trap'],
      bookings: [{ confirmationId: out(booked)['confirmationId'], service: 'leak_repair', slot: '2030-01-08T09:00' }],
      source: 'model',
    });
    // At call end the relay's summary keeps the model's words and adds how the call ended.
    const end = summariseCall({ ...rec, outcome: 'ended_by_assistant', endedAt: 6000 });
    expect(end).toMatchObject({ reason: 'Leaking sink', callOutcome: 'ended_by_assistant', durationMs: 5000, source: 'model', turns: { caller: 1, assistant: 0 } });
    const derived = summariseCall({ ...rec, summary: undefined });
    expect(derived).toMatchObject({ reason: 'My sink is leaking', outcome: 'booked', source: 'relay' });
  });
});

describe('business tools across pods (real Redis)', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server.stop();
  });

  it('double booking from two calls on two pods at once: exactly one wins', async () => {
    const podA = RedisCallStore.connect(server.url);
    const podB = RedisCallStore.connect(server.url);
    try {
      const ra = new BuiltinToolRunner({ store: podA });
      const rb = new BuiltinToolRunner({ store: podB });
      const args = JSON.stringify({ service: 'drain_cleaning', slot: '2030-01-07T14:00', customerName: 'Racer' });
      for (let round = 0; round < 5; round++) {
        const slotArgs = args.replace('14:00', `14:0${round}`);
        const t = resolveTenant(TenantSchema.parse({ ...DEMO_TENANT, business: { ...DEMO_TENANT.business, slots: [] } }), {});
        const [a, b] = await Promise.all([ra.run({ ...ctx(), tenant: t }, 'book_appointment', slotArgs), rb.run({ ...ctx(), tenant: t }, 'book_appointment', slotArgs)]);
        expect([a.outcome, b.outcome].sort()).toEqual(['ok', 'rejected']);
      }
      // A replay on the other pod (same callSid and call_id) reads the first pod's answer.
      const c = ctx();
      const replayArgs = args.replace('2030-01-07T14:00', '2030-01-08T11:00');
      const first = await ra.run(c, 'book_appointment', replayArgs);
      expect(first.outcome).toBe('ok');
      expect(await rb.run(c, 'book_appointment', replayArgs)).toEqual(first);
    } finally {
      await podA.close();
      await podB.close();
    }
  });
});

describe('the call-end summary listener', () => {
  it("times a call whose record has no end yet by the relay's clock, not the wall clock", async () => {
    const clock = new ManualClock(1_000_000);
    const store = new MemoryCallStore();
    const callSid = 'CA' + '7'.repeat(32);
    await store.startCall({ callSid, tenantId: 'demo', pod: 'p', startedAt: clock.now() - 90_000 });
    callSummaryListener(store, silentLogger(), clock).callEnded?.({ callSid, tenant: { id: 'demo' }, outcome: 'completed' });
    for (let i = 0; i < 100 && (await store.getCall(callSid))?.summary === undefined; i++) await new Promise((r) => setTimeout(r, 5));
    expect((await store.getCall(callSid))?.summary).toMatchObject({ durationMs: 90_000, callOutcome: 'completed' });
  });
});
