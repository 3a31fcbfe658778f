/**
 * What the relay's pino output says about calls, read back through a destination stream: the
 * "call ended" line with its bindings and trace ids, and no secret or phone number on any line.
 */
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid, upgradeSignature, type CallReport } from '../../src/sim/sim-caller.js';
import { startTracing, type Tracing } from '../../src/telemetry/otel.js';
import { createLogger, SPAN } from '../../src/telemetry/index.js';
import { CloseCode } from '../../src/errors.js';
import { demo, eventually, signedPost, startTestRelay, streamOpening, TEST_SECRET } from '../helpers/relay.js';

/** The caller's number: personal data, redacted wherever it is logged. */
const CALLER = '+15005550199';

type Line = Record<string, unknown> & { level: number; msg: string };

const raw: string[] = [];
const lines = (): Line[] => raw.map((l) => JSON.parse(l) as Line);

let relay: Relay;
let tracing: Tracing | undefined;
const exporter = new InMemorySpanExporter();
let report: CallReport;
let callSid: string;
/** Values that must never reach a log line, filled in as the test learns them. */
const secrets = new Map<string, string>([
  ['tenant auth token', demo.authToken],
  ['STREAM_TOKEN_SECRET', TEST_SECRET],
  ['caller number', CALLER],
  ['caller number without +', CALLER.slice(1)],
  ['caller number, form-encoded', encodeURIComponent(CALLER)],
  // Spoken in the call: transcripts are personal data and stay out of the log.
  ['number spoken by the caller', '5005550199'],
]);

/**
 * Open a media socket as Twilio would, send `connected` and `start` with these parameters, and
 * resolve with the close code the relay ends it with.
 */
async function openStream(o: {
  callSid: string;
  parameters: Record<string, string>;
  signature: string;
}): Promise<number> {
  const ws = new WebSocket(`${relay.url.replace(/^http/, 'ws')}/twilio/media`, {
    headers: { 'X-Twilio-Signature': o.signature },
    perMessageDeflate: false,
  });
  const closed = new Promise<number>((resolve, reject) => {
    ws.once('close', (code) => resolve(code));
    ws.once('error', reject);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const streamSid = randomSid('MZ');
  for (const m of streamOpening({ streamSid, callSid: o.callSid, accountSid: demo.accountSid, customParameters: o.parameters })) ws.send(m);
  return closed;
}

beforeAll(async () => {
  tracing = startTracing({ serviceName: 'switchboard', otlpEndpoint: undefined, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  // debug: the redaction check covers every line the relay can write in production at that level.
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void raw.push(s) } });
  relay = await startTestRelay({ LOG_LEVEL: 'debug' }, { log });
  const streamUrl = `${relay.url.replace(/^http/, 'ws')}/twilio/media`;

  callSid = randomSid('CA');
  report = await placeCall({
    baseUrl: relay.url,
    ...demo,
    from: CALLER,
    callSid,
    script: {
      turns: [{ say: 'My number is 5005550199, call tool end_call {"reason":"caller is done"}' }],
      maxCallMs: 20_000,
      hangupAfterMs: 10_000,
    },
  });
  const token = report.twiml?.kind === 'stream' ? report.twiml.parameters['token'] : undefined;
  if (token === undefined) throw new Error(`no stream token in the call's TwiML: ${report.errors.join('; ')}`);
  secrets.set('stream token (used by the call)', token);
  await eventually(() => lines().some((l) => l.msg === 'call ended'), 5000, '"call ended" log line');

  // Warn paths. A webhook whose signature does not match the tenant's auth token:
  const forged = await signedPost(
    relay,
    '/twilio/voice',
    { CallSid: randomSid('CA'), AccountSid: demo.accountSid, To: demo.to, From: CALLER },
    'not-the-tenant-auth-token',
  );
  expect(forged.status).toBe(403);

  // A media socket replaying the call's (consumed) token, one with a made-up token, and one whose
  // upgrade signature was made with the wrong auth token.
  const signature = upgradeSignature(streamUrl, demo.authToken);
  secrets.set('upgrade signature', signature);
  const replayed = await openStream({ callSid, parameters: { tenant: 'demo', token }, signature });
  const bogusToken = 'v1.' + 'A'.repeat(40) + '.' + 'B'.repeat(43);
  secrets.set('made-up stream token', bogusToken);
  const bogus = await openStream({ callSid: randomSid('CA'), parameters: { tenant: 'demo', token: bogusToken }, signature });

  // A fresh valid token (from a real webhook) offered over an upgrade signed with the wrong key.
  const fresh = randomSid('CA');
  const twiml = await signedPost(relay, '/twilio/voice', { CallSid: fresh, AccountSid: demo.accountSid, To: demo.to, From: CALLER });
  const freshToken = /<Parameter name="token" value="([^"]+)"\/>/.exec(twiml.body)?.[1];
  if (freshToken === undefined) throw new Error(`no token in ${twiml.body}`);
  secrets.set('stream token (fresh)', freshToken);
  const badSignature = upgradeSignature(streamUrl, 'not-the-tenant-auth-token');
  secrets.set('bad upgrade signature', badSignature);
  const unsigned = await openStream({ callSid: fresh, parameters: { tenant: 'demo', token: freshToken }, signature: badSignature });

  expect([replayed, bogus, unsigned]).toEqual([CloseCode.streamTokenInvalid, CloseCode.streamTokenInvalid, CloseCode.signatureInvalid]);
  // Each refusal is logged when its call ends: wait for all three before reading lines.
  await eventually(() => lines().filter((l) => l.msg === 'call ended').length >= 4, 5000, 'refused streams logged');
});

afterAll(async () => {
  await relay?.close();
  await tracing?.shutdown();
});

describe('call logs', () => {
  it('writes one "call ended" line per call with callSid, tenant, outcome, timings and trace ids', () => {
    expect(report.stage).toBe('connected');
    expect(report.errors).toEqual([]);
    // The token replay below reuses this CallSid on another stream: the streamSid tells them apart.
    const ended = lines().filter((l) => l.msg === 'call ended' && l['streamSid'] === report.streamSid);
    expect(ended).toHaveLength(1);
    const line = ended[0]!;
    expect(line).toMatchObject({
      level: 30,
      name: 'switchboard',
      callSid,
      tenant: 'demo',
      outcome: 'ended_by_assistant',
      closeCode: CloseCode.callEnded,
      toolCalls: 1,
    });
    expect(line['durationMs']).toBeGreaterThan(0);
    expect(line['durationMs']).toBeLessThan(report.durationMs + 1000);
    // One definition of a turn: the caller's (the greeting is not one), as `npm run call` counts them.
    expect(line['turns']).toBe(report.turns.length);
    expect(line['turns']).toBe(1);
    expect(line['framesIn']).toBeGreaterThan(0);
    expect(line['framesOut']).toBeGreaterThan(0);

    // The trace ids are the call span's, so a log search jumps straight to the trace.
    const span = exporter.getFinishedSpans().find((s) => s.name === SPAN.call && s.attributes['switchboard.call_sid'] === callSid);
    expect(span).toBeDefined();
    expect(line['trace_id']).toBe(span!.spanContext().traceId);
    expect(line['span_id']).toBe(span!.spanContext().spanId);
  });

  it('binds callSid and the trace id to every line the call writes', () => {
    const callLines = lines().filter((l) => l['streamSid'] === report.streamSid);
    expect(callLines.length).toBeGreaterThanOrEqual(1);
    const traceId = callLines.find((l) => l.msg === 'call ended')?.['trace_id'];
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    for (const l of callLines) expect(l, l.msg).toMatchObject({ callSid, trace_id: traceId });
    // The tool line also names its own span.
    const toolSpan = exporter.getFinishedSpans().find((s) => s.name === SPAN.tool && s.spanContext().traceId === traceId);
    expect(toolSpan).toBeDefined();
    expect(callLines.find((l) => l.msg === 'tool call')?.['tool_span_id']).toBe(toolSpan!.spanContext().spanId);
    // Each refused stream got its own call span, hence its own trace.
    const others = lines().filter((l) => l.msg === 'call ended' && l['streamSid'] !== report.streamSid);
    expect(others.every((l) => typeof l['trace_id'] === 'string' && l['trace_id'] !== traceId)).toBe(true);
  });

  it('warns on a forged webhook and on refused media streams, with a code and no details to abuse', () => {
    const warns = lines().filter((l) => l.level === 40);
    expect(warns.find((l) => l['code'] === 'signature_invalid')).toMatchObject({ tenant: 'demo', msg: 'voice webhook signature invalid' });
    const refused = warns.filter((l) => l['msg'] === 'media stream refused');
    expect(refused.map((l) => l['reason']).sort()).toEqual(
      expect.arrayContaining(['stream token already used', 'upgrade signature invalid']),
    );
    expect(refused.length).toBe(3);
    // A bad upgrade signature is logged as such, not as a token problem.
    expect(refused.find((l) => l['reason'] === 'upgrade signature invalid')?.['code']).toBe('signature_invalid');
    expect(refused.filter((l) => l['code'] === 'stream_token_invalid')).toHaveLength(2);
    const outcomes = lines()
      .filter((l) => l.msg === 'call ended' && l['streamSid'] !== report.streamSid)
      .map((l) => l['outcome']);
    expect(outcomes).toEqual(['rejected_token', 'rejected_token', 'rejected_token']);
  });

  it('never writes a secret, a token, a signature or the caller number', () => {
    expect(raw.length).toBeGreaterThan(5);
    const text = raw.join('');
    for (const [what, value] of secrets) {
      expect(value.length, what).toBeGreaterThan(8);
      expect(text.includes(value), `${what} appears in the log`).toBe(false);
    }
  });

  it('redacts those fields when code logs them as structured data', () => {
    // The same logger config the relay uses; the check above would pass vacuously if nothing tried.
    const out: string[] = [];
    const log = createLogger({ destination: { write: (s: string) => void out.push(s) } });
    log.warn(
      {
        from: CALLER,
        token: secrets.get('stream token (fresh)'),
        authToken: demo.authToken,
        headers: { authorization: `Bearer ${TEST_SECRET}`, 'x-twilio-signature': secrets.get('upgrade signature') },
        tenant: { authToken: demo.authToken, phone: CALLER },
      },
      'structured secrets',
    );
    const line = JSON.parse(out.join('')) as Record<string, unknown>;
    expect(line).toMatchObject({
      from: '[redacted]',
      token: '[redacted]',
      authToken: '[redacted]',
      headers: { authorization: '[redacted]', 'x-twilio-signature': '[redacted]' },
      tenant: { authToken: '[redacted]', phone: '[redacted]' },
    });
  });
});
