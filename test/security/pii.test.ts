/**
 * Personal data in logs and in Redis: an unsigned webhook's attacker-chosen `To` is logged only as
 * a masked E.164 number (never 60 KB of it), and what the caller says is masked before it is stored
 * (phone numbers and card-number-like digit runs), not only when the admin API reads it back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { createLogger } from '../../src/telemetry/index.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { demo, eventually, startTestRelay } from '../helpers/relay.js';

let relay: Relay | undefined;
let redis: RedisServer | undefined;
afterEach(async () => {
  await relay?.close();
  await redis?.stop();
  relay = redis = undefined;
});

describe('personal data', () => {
  it('an unsigned webhook to an unknown number logs `To` masked, and a junk `To` not at all', async () => {
    const lines: string[] = [];
    relay = await startTestRelay({}, { log: createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(s) } }) });
    const post = (to: string) =>
      fetch(`${relay!.url}/twilio/voice`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ CallSid: randomSid('CA'), AccountSid: demo.accountSid, To: to, From: '+15550001111' }).toString(),
      });
    const junk = 'A'.repeat(60_000);
    await post(junk);
    await post('+15559990123');
    await eventually(() => lines.filter((l) => l.includes('"tenant_unknown"')).length === 2, 2000, 'two log lines');
    const logged = lines.filter((l) => l.includes('"tenant_unknown"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const l of lines) expect(l.length, 'no log line carries the 60 KB field').toBeLessThan(2000);
    expect(logged[0]?.['to']).toBe('[not E.164]');
    expect(logged[1]?.['to']).toBe('+*******0123');
  });

  it('caller phone and card numbers are masked in the transcript stored in Redis', async () => {
    redis = await startRedisServer();
    relay = await startTestRelay({ REDIS_URL: redis.url });
    const callSid = randomSid('CA');
    const report = await placeCall({
      baseUrl: relay.url,
      ...demo,
      callSid,
      script: { turns: [{ say: 'My number is 415 555 0100 and my card is 4111 1111 1111 1111' }], maxCallMs: 10_000, hangupAfterMs: 500, replyTimeoutMs: 5000 },
    });
    expect(report.stage).toBe('connected');
    const r = relay;
    let stored = '';
    await eventually(async () => {
      const rec = await r.store.getCall(callSid);
      stored = JSON.stringify(rec?.transcript ?? []);
      return stored.includes('card is');
    }, 5000, 'the caller turn stored');
    expect(stored).not.toContain('415 555 0100');
    expect(stored).not.toContain('4111 1111 1111 1111');
    expect(stored).toContain('******0100');
    expect(stored).toContain('************1111');
  });
});
