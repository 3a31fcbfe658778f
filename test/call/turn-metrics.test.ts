import { describe, expect, it } from 'vitest';
import { TurnMetrics } from '../../src/call/turn-metrics.js';

const frame = Buffer.alloc(160, 0xff).toString('base64'); // 20 ms of μ-law

describe('TurnMetrics', () => {
  it('measures a turn from the append time of the audio the model says ended it', () => {
    const m = new TurnMetrics();
    for (let i = 0; i < 50; i++) m.appended(frame, 1000 + i * 20); // 1 s of audio, appended in real time
    expect(m.turnEnded(600, 5000)).toBe(1); // the end at 600 ms of audio: appended at t=1580
    expect(m.audioRelayed(1880)).toBeCloseTo(0.3);
    expect(m.audioRelayed(1900)).toBeUndefined(); // only the first audio after a turn end counts
    expect(m.summary()).toEqual({ turns: 1, connectMs: undefined, turnLatencyMsMax: 300, turnLatencyMsAvg: 300 });
  });

  it('falls back to the time the end was reported when the position is unknown, and forgets a lost session', () => {
    const m = new TurnMetrics();
    m.appended(frame, 100);
    m.turnEnded(5000, 700); // past what was appended
    expect(m.audioRelayed(800)).toBeCloseTo(0.1);
    m.turnEnded(0, 900);
    m.forgetTurn();
    expect(m.audioRelayed(1000)).toBeUndefined();
    m.restartStream();
    m.appended(frame, 2000);
    m.turnEnded(20, 9999);
    expect(m.audioRelayed(2050)).toBeCloseTo(0.05);
    expect(m.summary()).toMatchObject({ turns: 3, turnLatencyMsMax: 100, turnLatencyMsAvg: 75 });
  });
});
