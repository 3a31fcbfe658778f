/**
 * An emergency transfer through Twilio's REST API on a live call: the call update replaces the
 * call's TwiML, and Twilio stops the media stream at once — here before its HTTP answer reaches the
 * relay, so before the tool resolves. Real uWS relay, the sim model, the sim caller as Twilio's
 * media side, and a local Twilio REST API that stops the caller's stream when the call is updated.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { MemoryCallStore } from '../../src/store/index.js';
import { BuiltinToolRunner } from '../../src/tools/index.js';
import { TwilioCallControl } from '../../src/twilio/index.js';
import { demo, eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';
import { startFakeTwilioApi, type FakeTwilioApi } from '../helpers/fake-twilio-api.js';

let relay: Relay | undefined;
let twilio: FakeTwilioApi | undefined;
afterEach(async () => {
  await relay?.close();
  await twilio?.close();
  relay = twilio = undefined;
});

describe('a transfer by Twilio REST', () => {
  it('Twilio stops the stream before the tool returns: the call is recorded as transferred, not as a hang-up', async () => {
    twilio = await startFakeTwilioApi();
    twilio.answerDelayMs = 400;
    const store = new MemoryCallStore();
    relay = await startTestRelay({}, { store, tools: new BuiltinToolRunner({ store, callControl: new TwilioCallControl({ apiBaseUrl: twilio.url }) }) });
    const callSid = randomSid('CA');
    // The call is known to the Twilio API: an update ends its stream (`stop`, close) and runs the new TwiML.
    const report = await placeCall({
      baseUrl: relay.url,
      ...demo,
      callSid,
      twilioApi: twilio,
      script: { turns: [{ say: 'There is a gas leak in my kitchen' }], maxCallMs: 20_000, hangupAfterMs: 10_000, replyTimeoutMs: 4000 },
    });
    // Twilio speaks the advice and dials; the relay's own after-stream redirect never runs.
    const [update] = twilio.requests;
    expect(update?.form['Twiml']).toMatch(/<Say>Leave the building now\.[^<]*Connecting you to our emergency line now\.<\/Say><Dial[^>]*>\+15005550007<\/Dial>/);
    expect(report.endedBy).toBe('update');
    expect(report.closeCode).toBe(1000);
    expect(report.afterStream).toBeUndefined();
    expect(report.afterUpdate).toMatch(/^Leave the building now\..*<Dial>\+15005550007<\/Dial>$/);
    expect(report.legs.map((l) => l.end)).toEqual(['stop-by-twilio-update']);
    expect(twilio.callState(callSid)).toBe('ended');
    const r = relay;
    await eventually(async () => (await store.getCall(callSid))?.outcome !== undefined, 5000, 'call ended');
    expect((await store.getCall(callSid))?.outcome).toBe('transferred');
    const m = await scrape(r);
    expect(metricValue(m, 'switchboard_calls_total', { outcome: 'transferred' })).toBe(1);
    expect(metricValue(m, 'switchboard_calls_total', { outcome: 'caller_hung_up' })).toBe(0);
    // The tool finished after the stream was gone: its record and emergency flag are still kept.
    await eventually(async () => (await store.getCall(callSid))?.tools.length === 1, 5000, 'tool recorded');
    const rec = (await store.getCall(callSid))!;
    expect(rec.tools[0]).toMatchObject({ name: 'flag_emergency', outcome: 'ok' });
    expect(rec.emergency).toMatchObject({ severity: 'critical', transferred: true });
  });

  it('a caller who hangs up on their own is still caller_hung_up', async () => {
    twilio = await startFakeTwilioApi();
    const store = new MemoryCallStore();
    relay = await startTestRelay({}, { store, tools: new BuiltinToolRunner({ store, callControl: new TwilioCallControl({ apiBaseUrl: twilio.url }) }) });
    const callSid = randomSid('CA');
    const report = await placeCall({ baseUrl: relay.url, ...demo, callSid, script: { turns: [{ say: 'Do you fix boilers' }], maxCallMs: 20_000, hangupAfterMs: 300 } });
    expect(report.endedBy).toBe('caller');
    await eventually(async () => (await store.getCall(callSid))?.outcome === 'caller_hung_up', 5000, 'caller_hung_up');
    expect(twilio.requests).toHaveLength(0);
  });
});
