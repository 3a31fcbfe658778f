/**
 * loadtest/lib/scenarios.js as pure functions: k6 executor options, the arrival schedule, per-call
 * scripts, call classification and the threshold logic shared by k6 and the Node driver.
 */
import { describe, expect, it } from 'vitest';
import {
  METRICS,
  SCENARIOS,
  arrivalOffsetsMs,
  callScript,
  classifyCall,
  evaluateThresholds,
  k6ScenarioOptions,
  scaleScenario,
  streamDialUrl,
  type CallFacts,
  type Summary,
} from '../../loadtest/lib/scenarios.js';

const facts = (o: Partial<CallFacts>): CallFacts => ({
  stage: 'connected',
  webhookStatus: 200,
  closeCode: 1000,
  endedBy: 'caller',
  errors: [],
  turns: [{}, {}],
  turnsPlanned: 2,
  ...o,
});

describe('scenarios', () => {
  it('has the six scenarios, each demanding completed calls', () => {
    expect(Object.keys(SCENARIOS)).toEqual(['smoke', 'steady', 'storm', 'soak', 'barge-in', 'rolling-restart']);
    for (const s of Object.values(SCENARIOS)) expect(s.thresholds[METRICS.callsCompleted]).toEqual(['count>0']);
  });

  it('maps plans to k6 executors', () => {
    expect(k6ScenarioOptions(SCENARIOS.smoke!)).toEqual({ executor: 'shared-iterations', vus: 5, iterations: 5, maxDuration: '60s' });
    expect(k6ScenarioOptions(SCENARIOS.steady!)).toMatchObject({ executor: 'constant-vus', vus: 100, duration: '300s' });
    expect(k6ScenarioOptions(SCENARIOS.storm!)).toMatchObject({
      executor: 'ramping-arrival-rate',
      startRate: 60,
      timeUnit: '1m',
      stages: [
        { duration: '10s', target: 60 },
        { duration: '10s', target: 1200 },
        { duration: '30s', target: 1200 },
        { duration: '10s', target: 60 },
      ],
    });
  });

  it('schedules arrivals as the integral of the ramping rate', () => {
    const plan = { kind: 'arrival' as const, startPerMin: 60, stages: [{ durationS: 10, targetPerMin: 60 }, { durationS: 10, targetPerMin: 180 }], preAllocatedVUs: 1, maxVUs: 1 };
    const at = arrivalOffsetsMs(plan);
    // 10 calls at 1/s, then a ramp 1/s -> 3/s over 10 s: 20 more.
    expect(at).toHaveLength(30);
    expect(at.slice(0, 3)).toEqual([0, 1000, 2000]);
    expect(at.every((t, i) => i === 0 || t >= (at[i - 1] ?? 0))).toBe(true);
    expect(at[at.length - 1]).toBeLessThanOrEqual(20_000);
    expect(arrivalOffsetsMs(plan, 5)).toHaveLength(5);
  });

  it('scales calls and squeezes time', () => {
    const s = scaleScenario(SCENARIOS.storm!, { scale: 0.5, durationS: 6 });
    expect(s.plan).toMatchObject({ startPerMin: 30, stages: [{ durationS: 1, targetPerMin: 30 }, { durationS: 1, targetPerMin: 600 }, { durationS: 3 }, { durationS: 1 }] });
    expect(scaleScenario(SCENARIOS.smoke!, { scale: 0.01 }).plan).toMatchObject({ vus: 1, iterations: 1 });
    expect(() => scaleScenario(SCENARIOS.smoke!, { scale: 0 })).toThrow(/scale/);
  });

  it('spreads barge-ins and key presses evenly over calls', () => {
    const mix = SCENARIOS.steady!.mix;
    const turns = Array.from({ length: 100 }, (_, i) => callScript(mix, i).turns.slice(1)).flat();
    expect(turns).toHaveLength(500);
    expect(turns.filter((t) => t.dtmf !== undefined)).toHaveLength(50);
    expect(turns.filter((t) => t.bargeInAfterMs !== undefined)).toHaveLength(50);
    expect(callScript(mix, 3).turns[0]).toEqual({ say: expect.any(String) as string });
    const bargeIn = callScript(SCENARIOS['barge-in']!.mix, 0).turns;
    expect(bargeIn.slice(1).every((t) => t.bargeInAfterMs === 300)).toBe(true);
  });

  it('dials the stream on BASE_URL, wherever the TwiML points', () => {
    expect(streamDialUrl('http://switchboard.switchboard.svc', 'wss://voice.example.com/twilio/media')).toBe('ws://switchboard.switchboard.svc/twilio/media');
    expect(streamDialUrl('https://voice.example.com', 'wss://voice.example.com/twilio/media')).toBe('wss://voice.example.com/twilio/media');
  });
});

describe('classifyCall', () => {
  it('tells completed, refused and failed calls apart', () => {
    expect(classifyCall(facts({})).outcome).toBe('completed');
    expect(classifyCall(facts({ endedBy: 'relay', closeCode: 4011 })).outcome).toBe('completed');
    expect(classifyCall(facts({ stage: 'not-connected' })).outcome).toBe('refused');
    expect(classifyCall(facts({ stage: 'rejected', webhookStatus: 503 })).outcome).toBe('refused');
    expect(classifyCall(facts({ endedBy: 'relay', closeCode: 4013 })).outcome).toBe('refused');
    expect(classifyCall(facts({ stage: 'rejected', webhookStatus: 403, errors: ['webhook answered HTTP 403'] }))).toEqual({ outcome: 'failed', reason: 'webhook answered HTTP 403' });
    expect(classifyCall(facts({ stage: 'unreachable' })).outcome).toBe('failed');
    expect(classifyCall(facts({ stage: 'stream-failed' })).outcome).toBe('failed');
    expect(classifyCall(facts({ endedBy: 'relay', closeCode: 4010 })).outcome).toBe('failed');
    expect(classifyCall(facts({ endedBy: 'timeout' })).outcome).toBe('failed');
    expect(classifyCall(facts({ errors: ['no reply to turn 1 within 10000 ms'] })).outcome).toBe('failed');
    expect(classifyCall(facts({ turns: [{}] })).reason).toBe('only 1 of 2 turns ran');
  });
});

describe('evaluateThresholds', () => {
  const summary: Summary = {
    metrics: {
      [METRICS.turnLatency]: { type: 'trend', values: { 'p(95)': 800, 'p(99)': 1200, avg: 400 } },
      [METRICS.callsCompleted]: { type: 'counter', values: { count: 10, rate: 1 } },
      [METRICS.failureRate]: { type: 'rate', values: { rate: 0.02, passes: 1, fails: 49 } },
    },
  };

  it('judges k6 expressions against the summary', () => {
    const r = evaluateThresholds(summary, {
      [METRICS.turnLatency]: ['p(95)<1000', { threshold: 'p(99)<=1000', abortOnFail: true }, 'avg>=400'],
      [METRICS.callsCompleted]: ['count>0'],
      [METRICS.failureRate]: ['rate<0.01'],
    });
    expect(r.results.map((t) => [t.expression, t.ok])).toEqual([
      ['p(95)<1000', true],
      ['p(99)<=1000', false],
      ['avg>=400', true],
      ['count>0', true],
      ['rate<0.01', false],
    ]);
    expect(r.ok).toBe(false);
  });

  it('counts unseen counters as zero, passes unseen trends, and fails nonsense', () => {
    const r = evaluateThresholds({ metrics: {} }, { [METRICS.callsCompleted]: ['count>0'], [METRICS.callsFailed]: ['count<1'], [METRICS.frameGap]: ['p(99)<150'] });
    expect(r.results.map((t) => [t.actual, t.ok])).toEqual([
      [0, false],
      [0, true],
      [null, true],
    ]);
    expect(evaluateThresholds(summary, { [METRICS.turnLatency]: ['p95 < 3'] }).ok).toBe(false);
  });
});
