/**
 * `npm run call` as a person runs it: a child process against a real relay. The greeting and each
 * turn reach stdout while the call is still running (not all at once at the end), a barge-in's cut
 * reply ends in `…`, the relay's figures are exact means and bucket bounds, and `--json` is one line
 * of JSON that parses even behind npm's banner.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { callOutcome, exitCode, formatTurn, verdictLine } from '../../src/sim/call-cli.js';
import { emptyReport } from '../../src/sim/portable/caller-core.js';
import type { CallReport } from '../../src/sim/sim-caller.js';
import { startTestRelay } from '../helpers/relay.js';

let relay: Relay;
beforeAll(async () => {
  // No tenants file: the simulated model's built-in demo tenant, the one `npm run call` dials by default.
  relay = await startTestRelay({ SIM_MODEL_MODE: 'realistic', TENANTS_FILE: '' });
});
afterAll(async () => {
  await relay.close();
});

interface Line {
  atMs: number;
  text: string;
}

function cli(args: string[], viaNpm = false): Promise<{ code: number | null; lines: Line[]; stdout: string; stderr: string; endMs: number }> {
  const t0 = performance.now();
  const [cmd, argv] = viaNpm ? ['npm', ['run', 'call', '--', ...args]] : [process.execPath, ['--import', 'tsx', 'src/sim/call-cli.ts', ...args]];
  const child = spawn(cmd, argv, { env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) lines.push({ atMs: performance.now() - t0, text });
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, lines, stdout, stderr, endMs: performance.now() - t0 })));
}

describe('npm run call', () => {
  it('prints the greeting and each turn as they happen, and marks a reply cut by a barge-in with …', async () => {
    const r = await cli(['--url', relay.url, '--script', 'barge-in']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const at = (re: RegExp): Line => {
      const l = r.lines.find((x) => re.test(x.text));
      if (!l) throw new Error(`no line matching ${re}:\n${r.stdout}`);
      return l;
    };
    const greeting = at(/^ {2}Greeting: "/);
    const turn1 = at(/^ {2}Turn 1/);
    const turn3 = at(/^ {2}Turn 3/);
    const done = at(/^Call completed\.$/);
    // Streamed: each arrives while the call still runs, seconds apart, not in one burst at the end.
    expect(greeting.atMs).toBeLessThan(turn1.atMs);
    expect(turn1.atMs + 1000).toBeLessThan(turn3.atMs);
    expect(greeting.atMs + 2000).toBeLessThan(done.atMs);
    // Turn 2 barged into turn 1's reply: what the caller heard of it was cut short.
    const heard1 = r.lines[r.lines.indexOf(turn1) + 2]!.text;
    expect(heard1).toMatch(/^ {4}heard: {3}(".*…"|\(cut off before a word\))$/);
    expect(r.stdout).toContain('  Turn 2 [barge-in, clear received]');
    // The goodbye of turn 3 is end_call's: it is listed with the tools that answered.
    expect(r.stdout).toMatch(/^ {2}Tools heard: (.+, )?end_call$/m);
    // Each turn once: the summary does not repeat what was streamed.
    expect(r.stdout.match(/^ {2}Turn 1/gm)).toHaveLength(1);
    expect(r.stdout).toMatch(/turn latency \(speech stopped -> first audio sent\): mean [\d.]+ ms over \d turns; p50 ≤ [\d.]+ ms, p99 ≤ [\d.]+ ms/);
    expect(r.stdout).toMatch(/frame time caller_to_model: mean [\d.]+ ms over \d+ frames; p50 ≤ [\d.]+ ms, p99 ≤ [\d.]+ ms/);
  }, 90_000);

  it('--json prints one line of JSON, the last line of stdout even behind npm\'s banner', async () => {
    const r = await cli(['--url', relay.url, '--script', 'tools', '--json'], true);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    const result = JSON.parse(lines[lines.length - 1]!) as { ok: boolean; report: { turns: unknown[] }; relayLatency: { turn: { count: number; meanMs: number } } };
    expect(result.ok).toBe(true);
    expect(result.report.turns).toHaveLength(4);
    expect(result.relayLatency.turn.count).toBeGreaterThan(0);
    expect(result.relayLatency.turn.meanMs).toBeGreaterThan(0);
  }, 90_000);

  it('--help lists the options for npm run call and npm run load', async () => {
    const call = await cli(['--help']);
    expect(call.code).toBe(0);
    expect(call.stdout).toContain('--stream-url URL');
    const load = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'loadtest/node-driver.ts', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.once('exit', (code) => resolve({ code, out }));
    });
    expect(load.code).toBe(0);
    expect(load.out).toMatch(/^npm run load -- --scenario NAME/);
    expect(load.out).toContain('smoke');
  });

  it('marks a cut reply with one … even when the words themselves end in one', () => {
    const turn = (heard: string): CallReport['turns'][number] => ({ said: 'Hi', heard, turnLatencyMs: 1000, bargeIn: false, clearReceived: false, playedMsAtClear: null });
    expect(formatTurn(0, turn('Tool quote_price answered: {"maxPrice":…'), true)[2]).toBe('    heard:   "Tool quote_price answered: {"maxPrice":…"');
    expect(formatTurn(0, turn('Our prices start at'), true)[2]).toBe('    heard:   "Our prices start at…"');
    expect(formatTurn(0, turn('Goodbye.'), false)[2]).toBe('    heard:   "Goodbye."');
  });

  it('says a call the relay refused on purpose was refused, and why, with its own exit code', () => {
    const notConnected = (refused?: string): CallReport => ({
      ...emptyReport('CA1'),
      stage: 'not-connected',
      webhookStatus: 200,
      twiml: null,
      spoken: 'Sorry, we cannot take your call right now.',
      ...(refused ? { refused } : {}),
    });
    const budget = callOutcome(notConnected('budget'));
    expect(verdictLine(budget)).toBe(
      'Call refused (budget): the tenant is over its budget; the caller heard its budget message instead of the model: "Sorry, we cannot take your call right now."',
    );
    expect(exitCode(budget)).toBe(3);
    const busy = callOutcome(notConnected('busy'));
    expect(verdictLine(busy)).toMatch(/^Call refused \(busy\): the tenant is at its concurrency limit/);
    expect(exitCode(busy)).toBe(4);
    const other = callOutcome(notConnected());
    expect(verdictLine(other)).toMatch(/^Call failed: relay answered without a media stream/);
    expect(exitCode(other)).toBe(1);
  });
});
