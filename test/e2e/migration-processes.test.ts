/**
 * Live call migration with real relay processes (`node --import tsx src/main.ts`, as the image runs):
 * three relays on one real Redis behind the loopback service (a Kubernetes Service whose endpoints
 * follow /readyz), the fake Twilio REST API as TWILIO_API_BASE_URL, simulated callers. SIGTERM moves
 * every live call of a relay to the others and the relay exits long before the chart's 120 s grace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomSid, type CallReport, type CallScript } from '../../src/sim/sim-caller.js';
import { routeTo, startTestDeployment, type TestDeployment } from '../helpers/deployment.js';
import { killProcess, startRelayProcess, type ProcessRelay } from '../helpers/process-relay.js';
import { eventually, metricValue } from '../helpers/relay.js';

interface PodProcess extends ProcessRelay {
  name: string;
}

let d: TestDeployment;
const procs: PodProcess[] = [];

async function startPod(name: string): Promise<PodProcess> {
  const p = {
    name,
    ...(await startRelayProcess({
      ...d.relayEnv(),
      POD_NAME: name,
      DRAIN_MODE: 'migrate',
      DRAIN_TIMEOUT_SECONDS: '60',
      // No preStop sleep here: give the service (polling /readyz every second) time to drop the relay.
      MIGRATION_START_DELAY_MS: '2500',
    })),
  };
  procs.push(p);
  return p;
}

async function metrics(p: PodProcess): Promise<string> {
  return (await fetch(`${p.url}/metrics`)).text();
}

beforeAll(async () => {
  d = await startTestDeployment();
}, 60_000);

afterAll(async () => {
  await Promise.all(procs.map((p) => killProcess(p.child)));
  await d.close();
}, 60_000);

const script: CallScript = {
  turns: [{ say: 'Hi, do you serve postcode 10001?' }, { say: 'What does drain cleaning cost?' }, { say: 'Is there a call-out fee?' }],
  hangupAfterMs: 300,
  maxCallMs: 60_000,
  replyTimeoutMs: 8000,
};
const GREETING = 'Thanks for calling Demo Plumbing';

/** Place `n` calls through the service; resolves the reports' promises once each had its first answer. */
function placeCalls(n: number): { sids: string[]; reports: Promise<CallReport[]>; answered: Promise<void> } {
  const sids = Array.from({ length: n }, () => randomSid('CA'));
  let count = 0;
  let done!: () => void;
  const answered = new Promise<void>((resolve) => (done = resolve));
  const reports = Promise.all(
    sids.map((callSid) =>
      d.placeCall({
        callSid,
        script,
        hooks: {
          onTurn: (i) => {
            if (i === 0 && ++count === n) done();
          },
        },
      }),
    ),
  );
  return { sids, reports, answered };
}

/** Point the service at exactly these relays, once they answer ready (three cold processes: slower). */
async function route(...to: PodProcess[]): Promise<void> {
  await routeTo(d.svc, to.map((p) => p.url), 15_000);
}

function expectEveryTurnAnsweredOnce(r: CallReport): void {
  expect(r.turns.map((t) => t.said)).toEqual(script.turns.map((t) => t.say));
  for (const t of r.turns) {
    expect(t.heard).not.toBe('');
    // Nobody greeted the caller a second time.
    expect(t.heard).not.toContain(GREETING);
  }
}

describe('SIGTERM with DRAIN_MODE=migrate (three relay processes, one Redis)', () => {
  it('moves every live call to the other relays with its conversation; the relay exits within seconds', async () => {
    // One at a time: three cold tsx starts at once can outlast the helper's start timeout on a busy machine.
    const a = await startPod('relay-a');
    const b = await startPod('relay-b');
    const c = await startPod('relay-c');
    await route(a);
    const CALLS = 4;
    const { sids, reports: allReports, answered } = placeCalls(CALLS);
    const exited = new Promise<number | null>((resolve) => a.child.once('exit', (code) => resolve(code)));
    // Every call has had its first answer (a tool ran on A): a rollout replaces A.
    await answered;
    await route(a, b, c);
    const sigtermAt = Date.now();
    a.child.kill('SIGTERM');
    const code = await exited;
    const exitMs = Date.now() - sigtermAt;
    const reports = await allReports;

    expect(code).toBe(0);
    // The chart's migrate-mode grace is 120 s; the relay is gone long before.
    expect(exitMs).toBeLessThan(30_000);
    for (const r of reports) {
      expect(r.errors).toEqual([]);
      expect(r.legs.map((l) => [l.via, l.end])).toEqual([
        ['webhook', 'stop-by-twilio-update'],
        ['update', 'caller-hangup'],
      ]);
      expect(r.legs[1]!.gapMs).not.toBeNull();
      expectEveryTurnAnsweredOnce(r);
    }
    for (const callSid of sids) {
      await eventually(async () => (await d.calls.getCall(callSid))?.outcome === 'caller_hung_up', 10_000, `${callSid} ended`);
      const rec = (await d.calls.getCall(callSid))!;
      expect(rec.pods[0]).toBe('relay-a');
      expect(['relay-b', 'relay-c']).toContain(rec.pods[1]);
      expect(rec.migrations).toMatchObject([{ from: 'relay-a', reason: 'drain' }]);
      // The tool answered on A is not run again after the move.
      expect(rec.tools.filter((t) => t.name === 'check_service_area')).toHaveLength(1);
    }
    // One update per call; the receiving relays counted each resumed call.
    expect(d.api.requests.filter((r) => sids.includes(r.callSid)).map((r) => r.status)).toEqual(Array(CALLS).fill(200));
    // The receiving relays count what they took over.
    const resumed = await Promise.all([b, c].map(async (p) => metricValue(await metrics(p), 'switchboard_call_migrations_total', { reason: 'drain', outcome: 'resumed' })));
    expect(resumed[0]! + resumed[1]!).toBeGreaterThan(0);
  }, 180_000);
});
