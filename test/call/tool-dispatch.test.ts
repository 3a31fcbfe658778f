import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { ToolDispatch } from '../../src/call/tool-dispatch.js';
import type { RealtimeSocket } from '../../src/model/index.js';
import { MemoryCallStore } from '../../src/store/index.js';
import { createLogger, silentLogger } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../../src/tenants/index.js';
import { toolOk, type ToolResult } from '../../src/tools/index.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});
const flush = () => new Promise((r) => setImmediate(r));

function setup() {
  const sent: string[] = [];
  const session = { send: (t: string) => sent.push(t) } as unknown as RealtimeSocket;
  const results = new Map<string, (r: ToolResult) => void>();
  const h = { sent, followUps: 0, stranded: 0, current: session as RealtimeSocket | undefined };
  const d = new ToolDispatch({
    tools: { definitions: () => [], run: (ctx) => new Promise((resolve) => results.set(ctx.callId, resolve)) },
    metrics: createMetrics({ defaultMetrics: false }),
    store: new MemoryCallStore(() => Date.now()),
    clock: systemClock,
    background: (p) => void p.catch(() => {}),
    session: () => h.current,
    followUp: () => h.followUps++,
    stranded: () => h.stranded++,
  });
  const call = { callSid: 'CA1', tenant, log: silentLogger(), signal: new AbortController().signal, parentSpan: undefined };
  const fn = (callId: string, responseId = 'r1') => d.dispatch({ type: 'function_call', responseId, callId, name: 'end_call', arguments: '{}' }, call);
  return { d, h, results, fn };
}

describe('ToolDispatch', () => {
  it('follows up once every tool of the response answered and the response is done; effects kept in order', async () => {
    const { d, h, results, fn } = setup();
    fn('c1');
    fn('c2');
    expect(d.running).toBe(true);
    expect(d.responseDone('r1')).toBe(true);
    results.get('c1')!(toolOk({}, { kind: 'end_call', reason: 'bye' }));
    await flush();
    expect(h.followUps).toBe(0);
    results.get('c2')!(toolOk({}, { kind: 'transfer', to: '+15550100', reason: 'emergency' }));
    await flush();
    expect(h.followUps).toBe(1);
    expect(h.sent).toHaveLength(2);
    expect(d.running).toBe(false);
    expect(d.transferring).toBe(true);
    expect(d.takeEffects().map((e) => e.kind)).toEqual(['end_call', 'transfer']);
    expect(d.takeEffects()).toEqual([]);
    expect(d.calls).toBe(2);
  });

  it('a result for a session since replaced is not sent to the new one, but its effect stands; its tools keep the call busy until they answer', async () => {
    const { d, h, results, fn } = setup();
    fn('c1');
    fn('c2');
    fn('c3', 'r2');
    results.get('c3')!(toolOk({}));
    await flush();
    h.current = { send: () => {} } as unknown as RealtimeSocket;
    d.newSession();
    expect(d.running).toBe(true); // c1 and c2 still run
    expect(d.responseDone('r1')).toBe(false);
    results.get('c1')!(toolOk({}));
    await flush();
    expect(d.running).toBe(true);
    expect(h.stranded).toBe(0); // no effect: nothing to act on
    results.get('c2')!(toolOk({}, { kind: 'transfer', to: '+15550100', reason: 'emergency' }));
    await flush();
    expect(d.running).toBe(false);
    expect(h.sent).toHaveLength(1); // only c3's, on its own session
    expect(h.stranded).toBe(1);
    expect(h.followUps).toBe(0);
    expect(d.takeEffects()).toEqual([{ kind: 'transfer', to: '+15550100', reason: 'emergency' }]);
  });

  it('logs the tool line without a tool span id when tracing is off (no all-zero id)', async () => {
    const out: string[] = [];
    const log = createLogger({ destination: { write: (s: string) => void out.push(s) } });
    const d = new ToolDispatch({
      tools: { definitions: () => [], run: () => Promise.resolve(toolOk({})) },
      metrics: createMetrics({ defaultMetrics: false }),
      store: new MemoryCallStore(() => Date.now()),
      clock: systemClock,
      background: (p) => void p.catch(() => {}),
      session: () => ({ send: () => {} }) as unknown as RealtimeSocket,
      followUp: () => {},
      stranded: () => {},
    });
    d.dispatch({ type: 'function_call', responseId: 'r1', callId: 'c1', name: 'end_call', arguments: '{}' }, { callSid: 'CA1', tenant, log, signal: new AbortController().signal, parentSpan: undefined });
    for (let i = 0; i < 5 && out.length === 0; i++) await flush();
    const line = JSON.parse(out.find((l) => l.includes('"tool call"'))!) as Record<string, unknown>;
    expect(line).toMatchObject({ msg: 'tool call', tool: 'end_call', callId: 'c1', outcome: 'ok' });
    expect(line).not.toHaveProperty('tool_span_id');
  });
});
