/**
 * Bad tool calls from the model, end to end: wrong argument types, arguments that are not JSON, a tool
 * nobody offered. The model gets an error result it can act on; the call goes on and is not ended.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel } from '../../src/sim/sim-model.js';
import { startFaultModel, type FaultModel } from '../helpers/fault-model.js';
import { demo, eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
let fault: FaultModel | undefined;
let sim: SimModel | undefined;
afterEach(async () => {
  await relay?.close();
  await fault?.close();
  await sim?.close();
  relay = fault = sim = undefined;
});

type Item = { type?: string; call_id?: string; output?: string };
const outputs = (received: readonly { type: string; item?: unknown }[]): Item[] =>
  received.filter((e) => e.type === 'conversation.item.create').map((e) => e.item as Item).filter((i) => i.type === 'function_call_output');

describe('tool arguments from the model', () => {
  it('end_call with a number for reason, then with arguments that are not JSON: an error result each time, the call goes on', async () => {
    relay = await startTestRelay();
    const callSid = randomSid('CA');
    const report = await placeCall({
      baseUrl: relay.url,
      ...demo,
      callSid,
      script: {
        turns: [{ say: 'call tool end_call {"reason": 5}' }, { say: 'call tool end_call {not json at all}' }, { say: 'Are you still there' }],
        maxCallMs: 30_000,
        hangupAfterMs: 1000,
        replyTimeoutMs: 5000,
      },
    });
    expect(report.turns).toHaveLength(3);
    expect(report.turns[2]!.heard).toBe('You said: Are you still there. Anything else?');
    // The caller hung up; the assistant never ended the call on bad arguments.
    expect(report.endedBy).toBe('caller');
    expect(report.closeCode).toBe(1000);
    const session = relay.sim!.sessions[0]!;
    const outs = outputs(session.received);
    expect(outs).toHaveLength(2);
    for (const o of outs) {
      const parsed = JSON.parse(o.output ?? '') as { ok: boolean; error: string };
      expect(parsed.ok).toBe(false);
      expect(parsed.error.length).toBeGreaterThan(10);
    }
    expect(outs[0]!.output).toMatch(/reason/);
    expect(outs[1]!.output).toMatch(/JSON/i);
    const r = relay;
    await eventually(async () => (await r.store.getCall(callSid))?.outcome === 'caller_hung_up', 5000, 'record finished');
    const rec = (await r.store.getCall(callSid))!;
    expect(rec.tools.map((t) => t.outcome)).toEqual(['invalid_arguments', 'invalid_arguments']);
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_tool_call_seconds_count', { tool: 'end_call', outcome: 'invalid_arguments' })).toBe(2);
  });

  it('a tool nobody offered: an unknown_tool result naming it, the call goes on', async () => {
    sim = await startSimModel({ mode: 'loadtest' });
    let injected = false;
    fault = await startFaultModel({
      upstream: sim.url,
      onServerEvent(conn, ev) {
        if (injected || ev.type !== 'response.done') return;
        injected = true;
        setImmediate(() => {
          conn.send({ type: 'response.created', response: { id: 'resp_evil', status: 'in_progress', output: [] } });
          conn.send({
            type: 'response.output_item.done',
            response_id: 'resp_evil',
            output_index: 0,
            item: { id: 'item_evil', type: 'function_call', status: 'completed', call_id: 'call_evil', name: 'drop_database', arguments: '{"all":true}' },
          });
          conn.send({ type: 'response.done', response: { id: 'resp_evil', status: 'completed', output: [] } });
        });
      },
    });
    relay = await startTestRelay({ MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-fault', OPENAI_REALTIME_URL: fault.url });
    const callSid = randomSid('CA');
    const report = await placeCall({
      baseUrl: relay.url,
      ...demo,
      callSid,
      script: { turns: [{ say: 'Hello after the bad tool' }], maxCallMs: 20_000, hangupAfterMs: 1000, replyTimeoutMs: 5000 },
    });
    expect(injected).toBe(true);
    const out = outputs(fault.connections[0]!.received).find((o) => o.call_id === 'call_evil');
    expect(out).toBeDefined();
    const parsed = JSON.parse(out!.output ?? '') as { ok: boolean; error: string };
    expect(parsed.ok).toBe(false);
    expect(parsed.error).toMatch(/drop_database/);
    expect(report.turns[0]!.heard).toBe('You said: Hello after the bad tool. Anything else?');
    expect(report.endedBy).toBe('caller');
    const m = await scrape(relay);
    expect(metricValue(m, 'switchboard_tool_call_seconds_count', { tool: 'unknown', outcome: 'unknown_tool' })).toBe(1);
  });
});
