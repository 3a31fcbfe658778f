/**
 * `npm run load`: the Node driver's smoke and storm scenarios, scaled down, against a real relay;
 * the threshold logic failing a run whose calls fail or are refused; the CLI's exit status.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLoadArgs, runLoad, type LoadOptions, type Progress } from '../../loadtest/node-driver.js';
import { METRICS } from '../../loadtest/lib/scenarios.js';
import type { Relay } from '../../src/server/app.js';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER } from '../../src/tenants/tenant.js';
import { startTestRelay } from '../helpers/relay.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
let relay: Relay;

beforeAll(async () => {
  relay = await startTestRelay({ TENANTS_FILE: '' }); // the built-in demo tenant the load scripts call
});
afterAll(async () => {
  await relay.close();
});

const opts = (o: Partial<LoadOptions> & { scenario: string }): LoadOptions => ({
  url: relay.url,
  to: DEMO_NUMBER,
  accountSid: DEMO_ACCOUNT_SID,
  authToken: DEMO_AUTH_TOKEN,
  json: false,
  allowRemote: false,
  ...o,
});

const count = (r: Awaited<ReturnType<typeof runLoad>>, name: string): number => r.summary.metrics[name]?.values.count ?? 0;

describe('node driver against a real relay', () => {
  it('smoke: five calls complete, marks are echoed, barge-ins get clear, thresholds hold', async () => {
    const progress: Progress[] = [];
    const r = await runLoad({ ...opts({ scenario: 'smoke' }), onProgress: (p) => progress.push(p) });
    expect(r.problems).toEqual([]);
    expect(r.calls).toEqual({ placed: 5, completed: 5, failed: 0, refused: 0, dropped: 0 });
    expect(count(r, METRICS.turns)).toBe(10);
    expect(count(r, METRICS.marksEchoed)).toBeGreaterThan(0);
    expect(count(r, METRICS.bargeIns)).toBeGreaterThan(0);
    expect(count(r, METRICS.clears)).toBeGreaterThanOrEqual(count(r, METRICS.bargeIns));
    expect(r.summary.metrics[METRICS.turnLatency]?.values.count).toBe(10);
    expect(r.thresholds.every((t) => t.ok)).toBe(true);
    expect(r.ok).toBe(true);
    // A call takes seconds: the terminal saw calls up while they ran.
    expect(progress.some((p) => p.up > 0)).toBe(true);
  });

  it('storm: an arrival-rate spike of about twenty calls, all completed', async () => {
    const r = await runLoad(opts({ scenario: 'storm', scale: 0.3, durationS: 5 }));
    expect(r.problems).toEqual([]);
    expect(r.calls.placed).toBeGreaterThanOrEqual(15);
    expect(r.calls.placed).toBeLessThanOrEqual(30);
    expect(r.calls.completed).toBe(r.calls.placed);
    expect(r.calls.dropped).toBe(0);
    expect(count(r, METRICS.marksEchoed)).toBeGreaterThan(0);
    expect(r.ok).toBe(true);
  });

  it('fails the run when the auth token is wrong (calls failed)', async () => {
    const r = await runLoad(opts({ scenario: 'smoke', scale: 0.4, authToken: 'wrong-token' }));
    expect(r.calls).toMatchObject({ placed: 2, completed: 0, failed: 2 });
    expect(r.problems[0]?.reason).toContain('HTTP 403');
    expect(r.ok).toBe(false);
    expect(r.thresholds.filter((t) => !t.ok).map((t) => t.metric)).toEqual(expect.arrayContaining([METRICS.callsFailed, METRICS.callsCompleted]));
  });

  it('fails the run when the number is unknown (calls refused)', async () => {
    const r = await runLoad(opts({ scenario: 'smoke', scale: 0.4, to: '+15550001234' }));
    expect(r.calls).toMatchObject({ placed: 2, completed: 0, refused: 2 });
    expect(r.ok).toBe(false);
    expect(r.thresholds.filter((t) => !t.ok).map((t) => t.metric)).toEqual(expect.arrayContaining([METRICS.callsRefused]));
  });

  it('exits 1 from the command line when thresholds fail, with a summary', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'loadtest/node-driver.ts', '--scenario', 'smoke', '--scale', '0.2', '--url', relay.url, '--auth-token', 'wrong-token'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(out).toContain('FAIL calls_failed count<1');
    expect(out).toContain('FAIL: thresholds crossed');
    expect(code).toBe(1);
  });
});

describe('parseLoadArgs', () => {
  it('refuses a non-loopback target unless --allow-remote is given', () => {
    const r = parseLoadArgs(['--scenario', 'storm', '--url', 'https://voice.example.com']);
    expect(r).toEqual({ ok: false, error: expect.stringContaining('--allow-remote') as string });
    const ok = parseLoadArgs(['--scenario', 'storm', '--url', 'https://voice.example.com', '--allow-remote']);
    expect(ok.ok).toBe(true);
  });

  it('reads scale, duration and the target, and names the scenarios on a bad one', () => {
    const r = parseLoadArgs(['--scenario', 'soak', '--url', 'http://[::1]:9000/', '--scale', '0.5', '--duration', '30', '--json']);
    expect(r).toEqual({
      ok: true,
      options: expect.objectContaining({ scenario: 'soak', url: 'http://[::1]:9000', scale: 0.5, durationS: 30, json: true }) as LoadOptions,
    });
    expect(parseLoadArgs(['--scenario', 'nope'])).toEqual({ ok: false, error: expect.stringContaining('smoke, steady, storm, soak, barge-in, rolling-restart') as string });
    expect(parseLoadArgs(['--scenario', 'smoke', '--scale', '-1'])).toMatchObject({ ok: false });
    expect(parseLoadArgs([])).toMatchObject({ ok: false });
  });
});
