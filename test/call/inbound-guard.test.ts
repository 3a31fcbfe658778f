/**
 * The media socket's guard against messages Twilio never sends: each invalid one is counted, only
 * the first is logged, and the stream is closed past the budget, before `start`, or at once for one
 * too large; an event of an unknown kind is counted, logged once and ignored.
 */
import { describe, expect, it } from 'vitest';
import { InboundGuard, MAX_INVALID_MESSAGES } from '../../src/call/inbound-guard.js';
import { CloseCode } from '../../src/errors.js';
import { metricSum } from '../../src/sim/prom-text.js';
import { createLogger, createMetrics } from '../../src/telemetry/index.js';

function setup(): { guard: InboundGuard; lines: Record<string, unknown>[]; log: ReturnType<typeof createLogger>; metrics: () => Promise<string> } {
  const m = createMetrics({ defaultMetrics: false });
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { guard: new InboundGuard(m), lines, log, metrics: () => m.registry.metrics() };
}

describe('InboundGuard', () => {
  it(`tolerates ${MAX_INVALID_MESSAGES - 1} invalid messages after start, logs only the first, and closes 4001 at the ${MAX_INVALID_MESSAGES}th`, async () => {
    const { guard, lines, log, metrics } = setup();
    for (let i = 1; i < MAX_INVALID_MESSAGES; i++) expect(guard.invalid('bad_json', `#${i}`, log, false)).toBeUndefined();
    expect(guard.invalid('bad_json', 'last', log, false)).toEqual({ code: CloseCode.invalidMessage, reason: 'invalid messages' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, code: 'twilio_message_invalid', reason: 'bad_json', detail: '#1' });
    expect(metricSum(await metrics(), 'switchboard_twilio_messages_invalid_total', { reason: 'bad_json' })).toBe(MAX_INVALID_MESSAGES);
  });

  it('closes at once before start (4001) and for a message too large (1009), counted by reason', async () => {
    const { guard, log, metrics } = setup();
    expect(guard.invalid('bad_json', 'x', log, true)).toEqual({ code: CloseCode.invalidMessage, reason: 'invalid messages' });
    const other = setup();
    expect(other.guard.invalid('too_large', 'x', other.log, false)).toEqual({ code: CloseCode.messageTooBig, reason: 'message too large' });
    expect(metricSum(await metrics(), 'switchboard_twilio_messages_invalid_total', { reason: 'bad_json' })).toBe(1);
    expect(metricSum(await other.metrics(), 'switchboard_twilio_messages_invalid_total', { reason: 'too_large' })).toBe(1);
  });

  it('counts every event of an unknown kind and logs only the first', async () => {
    const { guard, lines, log, metrics } = setup();
    guard.unknown('dtmf2', log);
    guard.unknown('dtmf3', log);
    guard.unknown('dtmf4', log);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, detail: 'dtmf2' });
    expect(metricSum(await metrics(), 'switchboard_twilio_events_unknown_total')).toBe(3);
  });
});
