/**
 * Personal data in logs and in Redis: an unsigned webhook's attacker-chosen `To` is logged only as
 * a masked E.164 number (never 60 KB of it), and what the caller says is masked before it is stored
 * (phone numbers and card-number-like digit runs), not only when the admin API reads it back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { maskNumbersInJson, maskNumbersInText } from '../../src/store/index.js';
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

  /** One call over real sockets saying `said`, with Redis behind the relay; the stored transcript as JSON. */
  async function storedTranscript(said: string[], last: string): Promise<string> {
    redis = await startRedisServer();
    const r = (relay = await startTestRelay({ REDIS_URL: redis.url }));
    const callSid = randomSid('CA');
    const report = await placeCall({
      baseUrl: r.url,
      ...demo,
      callSid,
      script: { turns: said.map((say) => ({ say })), maxCallMs: 20_000, hangupAfterMs: 500, replyTimeoutMs: 5000 },
    });
    expect(report.stage).toBe('connected');
    let stored = '';
    await eventually(async () => {
      const rec = await r.store.getCall(callSid);
      stored = JSON.stringify(rec?.transcript ?? []);
      return stored.includes(last);
    }, 10_000, 'the caller turns stored');
    return stored;
  }

  it('caller phone and card numbers are masked in the transcript stored in Redis', async () => {
    const stored = await storedTranscript(['My number is 415 555 0100 and my card is 4111 1111 1111 1111'], 'card is');
    expect(stored).not.toContain('415 555 0100');
    expect(stored).not.toContain('4111 1111 1111 1111');
    expect(stored).toContain('******0100');
    expect(stored).toContain('************1111');
  });

  it('card numbers in other digit scripts or with other separators are masked in the transcript stored in Redis', async () => {
    const said = ['card ４１１１ １１１１ １１１１ １２３４ full width', 'card ٤١١١ ١١١١ ١١١١ ٥٦٧٨ arabic', 'card 4111/1111/1111/9012 slashes', 'card 4111\u00a01111\u00a01111\u00a03456 nbsp'];
    const stored = await storedTranscript(said, 'nbsp');
    for (const digits of ['４１１１', '٤١١١', '4111/1111', '4111\u00a01111']) expect(stored).not.toContain(digits);
    for (const last of ['1234', '5678', '9012', '3456']) expect(stored).toContain(`************${last}`);
  });
});

describe('maskNumbersInText', () => {
  it('masks card numbers written in full-width, Arabic-Indic or Extended Arabic-Indic digits', () => {
    for (const text of ['４１１１ １１１１ １１１１ １１１１', '٤١١١ ١١١١ ١١١١ ١١١١', '۴۱۱۱-۱۱۱۱-۱۱۱۱-۱۱۱۱', '𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏']) {
      expect(maskNumbersInText(`my card is ${text} ok`), text).toBe('my card is ************1111 ok');
    }
  });

  it('accepts any run of non-alphanumeric separators between digit groups', () => {
    for (const text of ['4111/1111/1111/1111', '4111_1111_1111_1111', '4111\u00a01111\u00a01111\u00a01111', '4111 - 1111 - 1111 - 1111', '4111.1111.1111.1111', '4111 -- 1111 // 1111 __ 1111', '4111\u202f1111\u20071111\u30001111']) {
      expect(maskNumbersInText(`card ${text}.`), JSON.stringify(text)).toBe('card ************1111.');
    }
  });

  it('masks a card run that other digits make longer than 19, and keeps dates, times, prices and small counts', () => {
    const masked = maskNumbersInText('4111-1111-1111-1111 / 12-27 / 123');
    expect(masked).not.toMatch(/4111|1111-1111/);
    expect(masked).toMatch(/\*+7123$/);
    for (const text of ['on 2024-05-01 at 10:30', 'it costs $1,250.00', 'room 12, floor 3', 'I have 3 kids and 2 dogs']) expect(maskNumbersInText(text)).toBe(text);
    expect(maskNumbersInText('call +44 20 7946 0958 now')).toBe('call +********0958 now');
    expect(maskNumbersInJson('{"card":"４１１１_１１１１_１１１１_１１１１","n":4111111111111111}')).toBe('{"card":"************1111","n":4111111111111111}');
  });
});
