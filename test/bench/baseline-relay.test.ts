/**
 * The baseline relay (bench/baseline-relay.ts) carries a real simulated call end to end: the caller
 * follows its TwiML, hears the greeting, has a turn answered, and echoes the marks it sends.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startBaselineRelay, type BaselineRelay } from '../../bench/baseline-relay.js';
import { placeCall } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel } from '../../src/sim/sim-model.js';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER } from '../../src/tenants/tenant.js';

describe('baseline relay', () => {
  let model: SimModel | undefined;
  let relay: BaselineRelay | undefined;
  afterEach(async () => {
    await relay?.close();
    await model?.close();
  });

  it('relays a simulated call: greeting, one answered turn, marks echoed', async () => {
    model = await startSimModel({ mode: 'loadtest', apiKey: 'sim-key' });
    const logged: string[] = [];
    relay = await startBaselineRelay({ port: 0, host: '127.0.0.1', modelUrl: model.url, apiKey: 'sim-key', log: (...a) => logged.push(String(a[0])) });
    const report = await placeCall({
      baseUrl: relay.url,
      to: DEMO_NUMBER,
      accountSid: DEMO_ACCOUNT_SID,
      authToken: DEMO_AUTH_TOKEN,
      script: { turns: [{ say: 'Tell me something nice about today' }], hangupAfterMs: 600, maxCallMs: 15_000 },
    });
    expect(report.stage).toBe('connected');
    expect(report.errors).toEqual([]);
    expect(report.twiml?.kind === 'stream' ? report.twiml.streamUrl : '').toBe(`ws://127.0.0.1:${relay.port}/media-stream`);
    expect(report.greeting).toContain('Greet the user');
    expect(report.turns).toHaveLength(1);
    expect(report.turns[0]?.heard).toBe('You said: Tell me something nice about today. Anything else?');
    // One mark per delta, all echoed after playback.
    expect(report.marksSent).toBeGreaterThan(0);
    expect(report.marksEchoed).toBe(report.marksSent);
    expect(report.endedBy).toBe('caller');
    // The sample's logging calls are kept.
    expect(logged).toContain('Incoming stream has started');
    const session = model.sessions[0];
    expect(session?.appendCount).toBeGreaterThan(0);
    const update = session?.received.find((e) => e.type === 'session.update');
    expect(JSON.stringify(update)).toContain('audio/pcmu');
  });
});
