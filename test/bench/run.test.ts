/**
 * `bench/run.ts` as a real process at a tiny level: the floor, Switchboard and the baseline start as
 * child processes, calls are held through the window, heaps are read after a forced GC through each
 * child's inspector, and the JSON and SVG files have the expected shape.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { imageNodeFlags, parseBenchArgs, type BenchReport } from '../../bench/run.js';

/** `bench/run.ts` with these arguments as its own process, to its exit. */
async function benchProcess(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  return { code, stdout, stderr };
}

describe('npm run bench --quick --floor', () => {
  const out = mkdtempSync(join(tmpdir(), 'bench-test-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs the floor and both relays at a small level and writes JSON and SVGs', async () => {
    const { code, stdout, stderr } = await benchProcess(['--quick', '--levels', '4', '--seconds', '3', '--settle', '1', '--no-pin', '--floor', '--out', out]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('== 4 concurrent calls ==');
    expect(stdout).toContain('UNPINNED: --no-pin given');
    const jsonPath = /JSON: (\S+)/.exec(stdout)?.[1];
    expect(jsonPath).toBeDefined();
    const report = JSON.parse(readFileSync(jsonPath!, 'utf8')) as BenchReport;
    expect(report.runs.map((r) => r.relay)).toEqual(['floor', 'switchboard', 'baseline']);
    for (const r of report.runs) {
      expect(r.level).toBe(4);
      expect(r.driver.callsHeld).toBe(4);
      expect(r.driver.callerToModel.sent).toBeGreaterThan(400); // 4 calls × 50 frames/s × ~3 s
      expect(r.driver.callerToModel.received).toBe(r.driver.callerToModel.sent);
      expect(r.driver.callerToModel.latencyMs.p50).toBeGreaterThan(0);
      expect(r.driver.modelToCaller.latencyMs.count).toBeGreaterThan(0);
      expect(r.relayCpuPercent).toBeGreaterThan(0);
      expect(r.rssMB).toBeGreaterThan(10);
      expect(r.heapMB).toBeGreaterThan(1);
      expect(r.heapSource).toBe('gc');
      expect(r.gcMemory?.heapUsed).toBe(Math.round((r.heapMB ?? 0) * 2 ** 20));
      expect(r.modelTlsUpgrades).toBe(0);
    }
    expect(stdout).toContain('harness floor p99');
    const floor = report.runs[0]!;
    expect(floor.switchboardHistogram).toBeNull();
    expect(floor.driver.modelToCaller.received).toBe(floor.driver.modelToCaller.sent);
    const sb = report.runs[1]!;
    expect(sb.switchboardHistogram?.callerToModel.count).toBeGreaterThan(0);
    expect(sb.switchboardDropped).toBe(0);
    expect(report.summary.perRelay.map((p) => p.relay)).toEqual(['floor', 'switchboard', 'baseline']);
    expect(report.files.svg).toHaveLength(4);
    for (const f of report.files.svg) expect(readFileSync(f, 'utf8')).toMatch(/^<svg /);
  }, 240_000);

  it('--tls: every relay, a compiled node process, reaches the model over wss trusting the run-time CA', async () => {
    const { code, stdout, stderr } = await benchProcess(['--tls', '--levels', '2', '--seconds', '4', '--settle', '1', '--no-pin', '--out', out]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/model leg: wss \(CA \S+ca\.pem via NODE_EXTRA_CA_CERTS\)/);
    const report = JSON.parse(readFileSync(/JSON: (\S+)/.exec(stdout)![1]!, 'utf8')) as BenchReport;
    expect(report.options.tls).toBe(true);
    expect(report.runs.map((r) => r.relay)).toEqual(['switchboard', 'baseline']);
    for (const r of report.runs) {
      // One model session per call, each upgraded on a TLS socket: the relay spoke wss, not ws.
      expect(r.modelTlsUpgrades).toBeGreaterThanOrEqual(2);
      expect(r.driver.callsHeld).toBe(2);
      expect(r.driver.callerToModel.received).toBe(r.driver.callerToModel.sent);
      expect(r.driver.modelToCaller.latencyMs.count).toBeGreaterThan(0);
    }
    expect(stdout).toContain('relays compiled to');
  }, 240_000);
});

describe('parseBenchArgs --only', () => {
  it('keeps the named relays, and refuses a name that is not one', () => {
    expect(parseBenchArgs(['--only', 'switchboard']).only).toEqual(['switchboard']);
    expect(parseBenchArgs(['--only', 'baseline, floor']).only).toEqual(['baseline', 'floor']);
    expect(parseBenchArgs([]).only).toBeUndefined();
    expect(() => parseBenchArgs(['--only', 'switchboard,nope'])).toThrow(/--only wants relays from/);
  });
});

describe('imageNodeFlags', () => {
  it('takes the node flags of the Dockerfile\'s last exec-form CMD, not the health check\'s', () => {
    const file = 'HEALTHCHECK --interval=10s \\\n  CMD ["node", "-e", "x"]\nCMD ["node", "--max-semi-space-size=2", "--stack-trace-limit=20", "dist/src/main.js"]\n';
    expect(imageNodeFlags(file)).toEqual(['--max-semi-space-size=2', '--stack-trace-limit=20']);
    expect(imageNodeFlags('CMD ["node", "dist/src/main.js"]')).toEqual([]);
    expect(() => imageNodeFlags('CMD node dist/src/main.js')).toThrow(/no CMD in exec form/);
    expect(() => imageNodeFlags('CMD ["npm", "start"]')).toThrow(/not \["node"/);
  });

  it('the repo\'s Dockerfile parses (what every Switchboard child of the bench starts with)', () => {
    const flags = imageNodeFlags(readFileSync('Dockerfile', 'utf8'));
    for (const f of flags) expect(f).toMatch(/^--[a-z-]+(=\S+)?$/);
  });
});
