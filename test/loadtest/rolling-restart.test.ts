/**
 * `npm run load -- --scenario rolling-restart` on a small scale: it starts redis-server, two relay
 * processes behind the loopback service and the simulated Twilio API, places calls, restarts each
 * relay (SIGTERM, wait for exit, start a new one) and reports honestly what happened to the calls.
 */
import { describe, expect, it } from 'vitest';
import { METRICS, SCENARIOS, scaleScenario } from '../../loadtest/lib/scenarios.js';
import { parseLoadArgs } from '../../loadtest/node-driver.js';
import { formatRollingRestart, runRollingRestart } from '../../loadtest/rolling-restart.js';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER } from '../../src/tenants/tenant.js';

describe('rolling-restart scenario', () => {
  it('restarts every relay under calls, none lost, and reports calls, moves and the time to empty each relay', async () => {
    const events: string[] = [];
    const r = await runRollingRestart({
      scenario: 'rolling-restart',
      url: 'http://127.0.0.1:1',
      to: DEMO_NUMBER,
      accountSid: DEMO_ACCOUNT_SID,
      authToken: DEMO_AUTH_TOKEN,
      json: false,
      allowRemote: false,
      scale: 0.1,
      durationS: 24,
      relays: 2,
      drainTimeoutS: 40,
      onEvent: (l) => events.push(l),
    });
    const text = formatRollingRestart(r);
    expect(r.problems, text).toEqual([]);
    expect(r.calls.placed).toBeGreaterThanOrEqual(3);
    expect(r.calls.completed).toBe(r.calls.placed);
    expect(r.lost).toBe(0);
    // Both original relays were restarted, each emptied before it exited, none needed SIGKILL.
    expect(r.restarts).toHaveLength(2);
    for (const s of r.restarts) {
      expect(s).toMatchObject({ signal: 'SIGTERM', killed: false, exitCode: 0 });
      expect(s.emptyMs).not.toBeNull();
      expect(s.emptyMs!).toBeLessThanOrEqual(s.exitMs);
    }
    // Calls were live on the relays when they got SIGTERM.
    expect(r.restarts.reduce((n, s) => n + (s.callsAtSignal ?? 0), 0)).toBeGreaterThan(0);
    // Whatever the relays' drain mode, the report counts what happened: moved calls have gaps.
    expect(r.summary.metrics[METRICS.moves]?.values.count ?? 0).toBeGreaterThanOrEqual(r.moved);
    expect(r.summary.metrics[METRICS.moveGap]?.values.count ?? 0).toBe(r.summary.metrics[METRICS.moves]?.values.count ?? 0);
    expect(text).toMatch(/rolling restart of 2 relays/);
    expect(text).toMatch(/calls completed \d+, lost 0, moved \d+/);
    expect(events.filter((e) => e.startsWith('SIGTERM'))).toHaveLength(2);
  }, 180_000);

  it('keeps the restarts in place when the run is squeezed, and checks its own options', () => {
    const s = scaleScenario(SCENARIOS['rolling-restart']!, { durationS: 45 });
    expect(s.restart).toEqual({ relays: 3, firstAtS: 5, everyS: 2.5 });
    expect(parseLoadArgs(['--scenario', 'rolling-restart', '--relays', '1'])).toMatchObject({ ok: false });
    expect(parseLoadArgs(['--scenario', 'rolling-restart', '--drain-mode', 'later'])).toMatchObject({ ok: false });
    expect(parseLoadArgs(['--scenario', 'rolling-restart', '--relays', '3', '--drain-mode', 'wait', '--drain-timeout', '30'])).toMatchObject({
      ok: true,
      options: { relays: 3, drainMode: 'wait', drainTimeoutS: 30 },
    });
  });
});
