/**
 * Azure OpenAI Realtime as the relay meets it: the transcription model is a deployment name (any
 * other name fails every caller turn with `input_audio_transcription.failed`), and the GA endpoint
 * may spell μ-law as the legacy `g711_ulaw` token in `session.updated`. Real uWS relay, the sim
 * model behind an Azure GA URL (`/openai/v1/realtime`), the sim caller acting as Twilio.
 */
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, type CallReport } from '../../src/sim/sim-caller.js';
import { startSimModel, type SimModel, type SimModelOptions } from '../../src/sim/sim-model.js';
import { createLogger } from '../../src/telemetry/index.js';
import { demo, eventually, metricValue, scrape, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
let sim: SimModel | undefined;
afterEach(async () => {
  await relay?.close();
  await sim?.close();
  relay = sim = undefined;
});

type Line = Record<string, unknown> & { msg: string };

/** A relay speaking to the sim as an Azure GA deployment, its log lines kept. */
async function azureRelay(simOpts: SimModelOptions, env: Record<string, string> = {}): Promise<{ relay: Relay; lines: Line[] }> {
  sim = await startSimModel({ mode: 'loadtest', ...simOpts });
  const lines: Line[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Line);
      done();
    },
  });
  relay = await startTestRelay(
    {
      MODEL_PROVIDER: 'azure',
      AZURE_OPENAI_ENDPOINT: `http://127.0.0.1:${sim.port}`,
      AZURE_OPENAI_API_KEY: 'azure-key',
      AZURE_OPENAI_DEPLOYMENT: 'gpt-realtime',
      ...env,
    },
    { log: createLogger({ level: 'info', destination }) },
  );
  return { relay, lines };
}

function call(r: Relay, callSid: string, says = ['Do you fix boilers', 'And radiators too']): Promise<CallReport> {
  return placeCall({
    baseUrl: r.url,
    ...demo,
    callSid,
    script: { turns: says.map((say) => ({ say })), maxCallMs: 20_000, hangupAfterMs: 500, replyTimeoutMs: 4000 },
  });
}

/** The transcription block of the session.update the relay sent to the sim. */
const sentTranscription = (): unknown =>
  (sim!.sessions[0]!.received.find((e) => e.type === 'session.update') as unknown as { session: { audio: { input: { transcription: unknown } } } }).session
    .audio.input.transcription;

const callerLines = async (r: Relay, callSid: string): Promise<string[]> =>
  ((await r.store.getCall(callSid))?.transcript ?? []).filter((t) => t.role === 'caller').map((t) => t.text);

describe('Azure OpenAI Realtime (GA endpoint)', () => {
  it('transcription model not a deployment: every failure counted, one warning per call, the call goes on', async () => {
    const { relay: r, lines } = await azureRelay({ transcriptionModels: ['my-transcribe'] });
    expect(lines.some((l) => l.msg.includes('REALTIME_TRANSCRIPTION_MODEL is not set'))).toBe(true);
    const callSid = randomSid('CA');
    const report = await call(r, callSid);
    // The model still heard the caller: both turns answered.
    expect(report.errors).toEqual([]);
    expect(report.turns.map((t) => t.heard)).toEqual(['You said: Do you fix boilers. Anything else?', 'You said: And radiators too. Anything else?']);
    expect(sentTranscription()).toEqual({ model: 'gpt-4o-mini-transcribe', language: 'en' });
    await eventually(async () => metricValue(await scrape(r), 'switchboard_active_calls') === 0, 5000, 'call ended');
    expect(metricValue(await scrape(r), 'switchboard_transcription_failures_total')).toBe(2);
    const warned = lines.filter((l) => l.callSid === callSid && l.msg.startsWith('caller speech could not be transcribed'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ code: 'model_protocol', modelCode: 'DeploymentNotFound' });
    expect(await callerLines(r, callSid)).toEqual([]);
    expect(lines.find((l) => l.callSid === callSid && l.msg === 'call ended')).toMatchObject({ transcriptionFailures: 2 });
  });

  it('REALTIME_TRANSCRIPTION_MODEL names the deployment: caller turns are transcribed, nothing fails', async () => {
    const { relay: r, lines } = await azureRelay({ transcriptionModels: ['my-transcribe'] }, { REALTIME_TRANSCRIPTION_MODEL: 'my-transcribe' });
    expect(lines.some((l) => l.msg.includes('REALTIME_TRANSCRIPTION_MODEL is not set'))).toBe(false);
    const callSid = randomSid('CA');
    const report = await call(r, callSid);
    expect(report.turns).toHaveLength(2);
    await eventually(async () => (await callerLines(r, callSid)).length === 2, 5000, 'caller transcript');
    expect(await callerLines(r, callSid)).toEqual(['Do you fix boilers', 'And radiators too']);
    expect(metricValue(await scrape(r), 'switchboard_transcription_failures_total')).toBe(0);
  });

  it('REALTIME_TRANSCRIPTION_MODEL=none: no transcription is asked for, so none fails', async () => {
    const { relay: r } = await azureRelay({ transcriptionModels: ['my-transcribe'] }, { REALTIME_TRANSCRIPTION_MODEL: 'none' });
    const report = await call(r, randomSid('CA'), ['Hello there']);
    expect(report.turns).toHaveLength(1);
    expect(sentTranscription()).toBeNull();
  });

  for (const echo of ['token', 'token-object'] as const) {
    it(`session.updated spelling μ-law as ${echo === 'token' ? "'g711_ulaw'" : "{type:'g711_ulaw'}"}: accepted, the call is served`, async () => {
      const { relay: r } = await azureRelay({ mulawEcho: echo });
      const callSid = randomSid('CA');
      const report = await call(r, callSid, ['Hello there']);
      expect(report.closeCode).toBe(1000);
      expect(report.greeting).not.toBe('');
      expect(report.turns.map((t) => t.heard)).toEqual(['You said: Hello there. Anything else?']);
      await eventually(async () => (await r.store.getCall(callSid))?.outcome === 'caller_hung_up', 5000, 'call ended by the caller');
    });
  }
});
