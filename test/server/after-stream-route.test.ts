/**
 * The after-stream route answers a stored outcome it does not know (a newer pod's, a hand-edited
 * record) with the safe fallback, and says so in a log line: never a hang-up, never dead air.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { randomSid } from '../../src/sim/sim-caller.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { demo, signedPost, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

const APOLOGY = '<Say>Sorry, our assistant is unavailable. Connecting you to a person.</Say>';

/** A relay whose store holds an ended call with this outcome; its after-stream answer and log lines. */
async function afterStreamFor(outcome: string): Promise<{ callSid: string; status: number; body: string; lines: Record<string, unknown>[] }> {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  relay = await startTestRelay({}, { log });
  const callSid = randomSid('CA');
  await relay.store.startCall({ callSid, tenantId: 'demo', pod: 'p', startedAt: Date.now() });
  await relay.store.endCall(callSid, outcome, 60);
  const { status, body } = await signedPost(relay, '/twilio/after-stream', { CallSid: callSid, AccountSid: demo.accountSid, To: demo.to });
  return { callSid, status, body, lines };
}

describe('after-stream with a stored outcome it does not know', () => {
  it('answers with the fallback (a human, with an apology) and logs the unknown outcome', async () => {
    const { callSid, status, body, lines } = await afterStreamFor('beamed_up');
    expect(status).toBe(200);
    expect(body).toContain(APOLOGY);
    expect(body).toContain('<Dial');
    const line = lines.find((l) => l['outcome'] === 'beamed_up');
    expect(line).toMatchObject({ level: 40, callSid, code: 'internal' });
  });

  it('a known outcome is answered as before (ended_by_assistant hangs up), with no such line', async () => {
    const { body, lines } = await afterStreamFor('ended_by_assistant');
    expect(body).toContain('<Hangup/>');
    expect(lines.some((l) => l['code'] === 'internal')).toBe(false);
  });
});
