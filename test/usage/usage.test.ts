/**
 * The pure and in-process parts of usage: prices and costs, a call's meter with its periodic and
 * final writes (manual clock, memory store, a store that fails), budgets and their TwiML, the
 * /v1/usage query rules.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parseUsageQuery, usdFromNano } from '../../src/server/routes/admin-usage.js';
import { MemoryUsageStore, emptyUsage, type UsageTotals } from '../../src/store/index.js';
import { createUsageMetrics, silentLogger } from '../../src/telemetry/index.js';
import { BudgetSchema, TenantSchema, resolveTenant, type Tenant } from '../../src/tenants/index.js';
import {
  BudgetGate,
  DEFAULT_PRICE_TABLE,
  budgetTwiml,
  budgetUse,
  costNanoUsd,
  loadPriceTable,
  pricesFor,
  tokenRates,
  UsageTracker,
} from '../../src/usage/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

const tenant = (extra: Record<string, unknown> = {}): Tenant =>
  resolveTenant(
    TenantSchema.parse({
      id: 'acme',
      displayName: 'Acme',
      phoneNumbers: ['+15005550191'],
      twilio: { accountSid: 'AC' + 'a'.repeat(32), authToken: { value: 'x' } },
      ...extra,
    }),
    {},
  );
const usage = (o: Partial<Record<string, number>>) => ({ inputText: 0, inputAudio: 0, inputTextCached: 0, inputAudioCached: 0, outputText: 0, outputAudio: 0, ...o });

describe('prices', () => {
  it('cost in whole nano-dollars from the dated built-in table; snapshots priced as their model', () => {
    expect(DEFAULT_PRICE_TABLE.takenOn).toBe('2026-12-05');
    const rates = tokenRates(pricesFor(DEFAULT_PRICE_TABLE, 'gpt-realtime-2025-08-28')!);
    expect(rates).toEqual({ inputText: 4000, inputTextCached: 400, outputText: 16_000, inputAudio: 32_000, inputAudioCached: 400, outputAudio: 64_000 });
    // One minute each way: 600 caller audio tokens, 1200 assistant audio tokens.
    expect(costNanoUsd(usage({ inputAudio: 600, outputAudio: 1200 }), rates)).toBe(600 * 32_000 + 1200 * 64_000);
    expect(pricesFor(DEFAULT_PRICE_TABLE, 'gpt-realtime-mini-2025-10-06')?.outputAudio).toBe(20);
    expect(pricesFor(DEFAULT_PRICE_TABLE, 'my-azure-deployment')).toBeUndefined();
  });

  it('an operator file adds or replaces models; a bad one names the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-prices-'));
    try {
      const file = join(dir, 'prices.yaml');
      const azure = 'inputText: 4.4, inputTextCached: 0.44, outputText: 17.6, inputAudio: 35.2, inputAudioCached: 0.44, outputAudio: 70.4';
      writeFileSync(file, `takenOn: 2026-12-01\nsource: our Azure contract\nmodels:\n  voice-prod: {${azure}}\n`);
      const t = loadPriceTable(file);
      expect(t).toMatchObject({ takenOn: '2026-12-01', source: 'our Azure contract' });
      expect(tokenRates(pricesFor(t, 'voice-prod')!).outputAudio).toBe(70_400);
      expect(pricesFor(t, 'gpt-realtime')).toBeDefined();
      writeFileSync(file, `takenOn: 2026-12-01\nreplace: true\nmodels:\n  voice-prod: {${azure}}\n`);
      expect(pricesFor(loadPriceTable(file), 'gpt-realtime')).toBeUndefined();
      writeFileSync(file, 'takenOn: yesterday\nmodels:\n  x: {inputText: -1}\n');
      expect(() => loadPriceTable(file)).toThrow(/PRICE_TABLE_FILE: takenOn: must be a date[\s\S]*models\.x\.inputText/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('formats nano-dollars exactly', () => {
    expect(usdFromNano(0)).toBe('0.000000000');
    expect(usdFromNano(123_456_789_012)).toBe('123.456789012');
  });
});

describe('a call meter', () => {
  function tracker(store = new MemoryUsageStore()) {
    const clock = new ManualClock(Date.UTC(2026, 11, 5, 13, 59, 30));
    const metrics = createUsageMetrics(new Registry());
    const recorded: string[] = [];
    const t = new UsageTracker({
      store,
      clock,
      metrics,
      log: silentLogger(),
      rates: tokenRates(pricesFor(DEFAULT_PRICE_TABLE, 'gpt-realtime')!),
      flushMs: 10_000,
      onRecorded: (id) => recorded.push(id),
    });
    return { t, clock, store, metrics, recorded };
  }
  const settle = () => new Promise((r) => setImmediate(r));

  it('writes running totals every interval and the final ones at the end, split over the hours they fell in', async () => {
    const { t, clock, store, recorded } = tracker();
    let tools = 0;
    const m = t.open({ callSid: 'CA1', tenant: tenant(), startedAt: clock.now(), toolCalls: () => tools });
    m.response(usage({ inputText: 100, outputAudio: 20 }));
    expect(await store.callUsage('acme', 'CA1')).toBeUndefined();
    clock.advance(10_000);
    await settle();
    expect(await store.callUsage('acme', 'CA1')).toMatchObject({ calls: 1, callMs: 10_000, inputText: 100, outputAudio: 20, responses: 1 });
    tools = 1;
    m.response(usage({ inputText: 50, inputTextCached: 100, outputText: 3 }));
    clock.advance(25_000); // 14:00:05: crosses the hour
    const view = m.end();
    await t.flush();
    expect(view).toMatchObject({ callSeconds: 35, toolCalls: 1, responses: 2, tokens: { input: { text: 150, cachedText: 100 } } });
    const final = (await store.callUsage('acme', 'CA1'))!;
    expect(final).toMatchObject({ callMs: 35_000, toolCalls: 1, inputText: 150, inputTextCached: 100, outputText: 3, responses: 2 });
    expect(final.costNanoUsd).toBe(150 * 4000 + 100 * 400 + 3 * 16_000 + 20 * 64_000);
    const hours = await store.buckets('acme', 'hour', 0, Date.UTC(2030, 0));
    expect(hours.map((b) => [new Date(b.start).toISOString().slice(11, 13), b.totals.callMs])).toEqual([
      ['13', 20_000],
      ['14', 15_000],
    ]);
    expect(recorded.length).toBeGreaterThanOrEqual(2);
    // Responses after the end are not billed to the call twice.
    m.response(usage({ outputAudio: 1000 }));
    expect((await store.callUsage('acme', 'CA1'))!.outputAudio).toBe(20);
    await t.close();
  });

  it("retries an ended call's write that failed, at the next intervals, without counting twice", async () => {
    const real = new MemoryUsageStore();
    let down = true;
    const flaky = Object.assign(Object.create(real) as MemoryUsageStore, {
      record: (...args: Parameters<MemoryUsageStore['record']>) => (down ? Promise.reject(new Error('redis down')) : real.record(...args)),
    });
    const { t, clock, metrics } = tracker(flaky);
    const m = t.open({ callSid: 'CA2', tenant: tenant(), startedAt: clock.now(), toolCalls: () => 0 });
    m.response(usage({ inputAudio: 10 }));
    clock.advance(3000);
    m.end();
    await settle();
    clock.advance(10_000);
    await settle();
    expect(await real.callUsage('acme', 'CA2')).toBeUndefined();
    expect((await metrics.writeFailures.get()).values[0]?.value).toBeGreaterThanOrEqual(2);
    down = false;
    clock.advance(10_000);
    await settle();
    clock.advance(10_000);
    await settle();
    expect(await real.bucket('acme', 'day', clock.now())).toMatchObject({ calls: 1, callMs: 3000, inputAudio: 10 });
    await t.close();
  });
});

describe('budgets', () => {
  const spent = (o: Partial<UsageTotals>): UsageTotals => ({ ...emptyUsage(), ...o });

  it('use is the larger share of minutes and cost', () => {
    const b = BudgetSchema.parse({ callMinutes: 100, costUsd: 10 });
    expect(budgetUse(b, spent({ callMs: 30 * 60_000, costNanoUsd: 5e9 }))).toEqual({ ratio: 0.5, callMinutes: 30, costUsd: 5 });
    expect(budgetUse(b, spent({ callMs: 90 * 60_000, costNanoUsd: 1e9 })).ratio).toBe(0.9);
    expect(BudgetSchema.safeParse({ period: 'month' }).success).toBe(false);
    expect(BudgetSchema.safeParse({ costUsd: 5, whenExceeded: { action: 'human' } }).success).toBe(false);
  });

  it('TwiML: a message, a human, or a voicemail that posts back to the relay; never silence', () => {
    const t = tenant();
    const msg = budgetTwiml(t, BudgetSchema.parse({ costUsd: 1 }), 'https://relay.example/twilio/voicemail');
    expect(msg).toContain('<Say>Sorry, we cannot take your call right now.');
    expect(msg).toContain('<Hangup/>');
    const human = budgetTwiml(t, BudgetSchema.parse({ costUsd: 1, whenExceeded: { action: 'human', number: '+15005550199', message: 'Connecting you.' } }), 'x');
    expect(human).toMatch(/<Say>Connecting you\.<\/Say><Dial callerId="\+15005550191">\+15005550199<\/Dial>/);
    const vm = budgetTwiml(t, BudgetSchema.parse({ costUsd: 1, whenExceeded: { action: 'voicemail', message: 'Leave a message.' } }), 'https://relay.example/twilio/voicemail');
    expect(vm).toMatch(/<Say>Leave a message\.<\/Say><Record action="https:\/\/relay\.example\/twilio\/voicemail" method="POST" maxLength="120"/);
    expect(vm).toMatch(/<\/Say><Hangup\/><\/Response>$/);
  });

  it('admits until the period is spent, admits when the store is down, and drops gauges of a removed budget', async () => {
    const store = new MemoryUsageStore();
    const clock = new ManualClock(Date.UTC(2026, 11, 5, 12));
    const metrics = createUsageMetrics(new Registry());
    const gate = new BudgetGate({ store, metrics, clock, log: silentLogger(), voicemailActionUrl: 'x' });
    const capped = tenant({ budget: { period: 'day', callMinutes: 1 } });
    expect(await gate.admit(capped)).toEqual({ admit: true });
    await store.record({ callSid: 'CA1', tenantId: 'acme', retentionSeconds: 60 }, spent({ calls: 1, callMs: 60_000 }), clock.now());
    expect(await gate.admit(capped)).toMatchObject({ admit: false, use: { ratio: 1 } });
    expect((await metrics.budgetUsedRatio.get()).values).toEqual([{ labels: { tenant: 'acme' }, value: 1 }]);
    // The next day starts afresh.
    clock.advance(12 * 3_600_000);
    expect(await gate.admit(capped)).toEqual({ admit: true });
    const down = new BudgetGate({
      store: Object.assign(Object.create(store) as MemoryUsageStore, { bucket: () => Promise.reject(new Error('down')) }),
      metrics,
      clock,
      log: silentLogger(),
      voicemailActionUrl: 'x',
    });
    expect(await down.admit(capped)).toEqual({ admit: true });
    expect(await gate.admit(tenant())).toEqual({ admit: true });
    expect((await metrics.budgetUsedRatio.get()).values).toEqual([]);
  });
});

describe('GET /v1/usage query', () => {
  const now = Date.UTC(2026, 11, 5, 13, 20);
  const q = (s: string, accept = '') => parseUsageQuery(new URLSearchParams(s), accept, now);

  it('defaults to this month by day, JSON; dates are UTC; CSV by format or Accept', () => {
    expect(q('')).toEqual({ ok: true, tenant: undefined, from: Date.UTC(2026, 11, 1), to: now + 1, g: 'day', csv: false });
    expect(q('tenant=acme&from=2026-11-01&to=2026-12-01T00:00:00Z&granularity=hour&format=csv')).toMatchObject({
      ok: true,
      tenant: 'acme',
      from: Date.UTC(2026, 10, 1),
      to: Date.UTC(2026, 11, 1),
      g: 'hour',
      csv: true,
    });
    expect(q('', 'text/csv')).toMatchObject({ csv: true });
  });

  it('refuses what it cannot answer', () => {
    expect(q('granularity=minute')).toMatchObject({ ok: false });
    expect(q('tenant=Bad Tenant')).toMatchObject({ ok: false });
    expect(q('from=2026-12-05T13:00')).toMatchObject({ ok: false }); // no zone
    expect(q('from=2026-12-06&to=2026-12-05')).toMatchObject({ ok: false, message: 'from must be before to' });
    expect(q('granularity=hour&from=2026-01-01')).toMatchObject({ ok: false });
    expect(q('format=xml')).toMatchObject({ ok: false });
  });
});
