/**
 * Redis restarts empty (no persistence) in the middle of a call: every tool result the pod
 * acknowledged, the call record and the booking's slot claim come back from the pod's journal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisCallStore } from '../../src/store/index.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../../src/tenants/index.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { BuiltinToolRunner } from '../../src/tools/index.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});
const callSid = 'CA' + 'd'.repeat(32);
const ctx = (callId: string, sid = callSid) => ({ callSid: sid, tenant, callId, log: silentLogger(), signal: new AbortController().signal });

let server: RedisServer;
beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server.stop();
});

describe('Redis restart mid-call', () => {
  it('loses no acknowledged tool result, call record or slot claim', async () => {
    const podA = RedisCallStore.connect(server.url, { retryMs: 50, commandTimeoutMs: 300 });
    const runner = new BuiltinToolRunner({ store: podA });
    let podB: RedisCallStore | undefined;
    try {
      await podA.startCall({ callSid, tenantId: 'demo', pod: 'pod-a', startedAt: Date.now(), fromMasked: '+*******0100' });
      await podA.setPhase(callSid, 'live');
      await podA.appendTranscript(callSid, { role: 'caller', text: 'Book me in please', at: 1 });
      const booked = await runner.run(ctx('call_book'), 'book_appointment', '{"service":"leak_repair","slot":"2030-01-07T09:00","customerName":"Ada"}');
      expect(booked.outcome).toBe('ok');
      await podA.recordToolCall(callSid, { callId: 'call_book', name: 'book_appointment', arguments: '{}', output: booked.output, outcome: 'ok', startedAt: 2, durationMs: 1 });

      const resynced = new Promise<string[]>((resolve) => podA.onResynced(resolve));
      await server.kill();
      // While Redis is down: a tool that needs no claim still answers and is acknowledged…
      const quote = await runner.run(ctx('call_quote'), 'quote_price', '{"service":"leak_repair"}');
      expect(quote.outcome).toBe('ok');
      await podA.recordToolCall(callSid, { callId: 'call_quote', name: 'quote_price', arguments: '{}', output: quote.output, outcome: 'ok', startedAt: 3, durationMs: 1 });
      // …a replay is answered from the journal…
      expect(await runner.run(ctx('call_book'), 'book_appointment', '{}')).toEqual(booked);
      // …and a booking, which needs the shared claim, fails cleanly instead of being applied blind.
      const blind = await runner.run(ctx('call_book2'), 'book_appointment', '{"service":"leak_repair","slot":"2030-01-07T11:00","customerName":"Ada"}');
      expect(blind.outcome).toBe('error');

      await server.restart();
      expect(await resynced).toContain(callSid);

      // Another pod, fresh connection: everything acknowledged is there.
      podB = RedisCallStore.connect(server.url);
      expect(await podB.getToolResult(callSid, 'call_book')).toMatchObject({ output: booked.output, outcome: 'ok' });
      expect(await podB.getToolResult(callSid, 'call_quote')).toMatchObject({ output: quote.output });
      expect(await podB.getToolResult(callSid, 'call_book2')).toBeUndefined();
      const rec = await podB.getCall(callSid);
      expect(rec).toMatchObject({ phase: 'live', pod: 'pod-a', fromMasked: '+*******0100' });
      expect(rec?.transcript.map((t) => t.text)).toEqual(['Book me in please']);
      expect(rec?.tools.map((t) => t.callId)).toEqual(['call_book', 'call_quote']);
      expect((await podB.listActive()).map((c) => c.callSid)).toEqual([callSid]);
      // The slot claim came back: another call on another pod cannot take the booked slot.
      const runnerB = new BuiltinToolRunner({ store: podB });
      const steal = await runnerB.run(ctx('call_x', 'CA' + 'e'.repeat(32)), 'book_appointment', '{"service":"leak_repair","slot":"2030-01-07T09:00","customerName":"Eve"}');
      expect(steal.outcome).toBe('rejected');
      // The replay from pod B returns pod A's first answer.
      expect(await runnerB.run(ctx('call_book'), 'book_appointment', '{}')).toEqual(booked);
      // Writes after the restart go straight through again.
      await podA.endCall(callSid, 'completed', 600);
      expect(await podB.getCall(callSid)).toMatchObject({ phase: 'ended', outcome: 'completed' });
      expect(podA.pendingCalls).toBe(0);
    } finally {
      await podA.close();
      await podB?.close();
    }
  });
});
