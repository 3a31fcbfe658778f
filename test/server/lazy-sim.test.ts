/**
 * The simulated model is loaded only for MODEL_PROVIDER=sim: a relay process started for a real
 * provider must not load src/sim (nor anything under loadtest/). Nor does a start load the twilio SDK
 * (TwiML is written without it; REST call control imports it on first use) or the OpenTelemetry SDK
 * when no OTLP endpoint is set: both are fixed memory most pods never use. Each start runs
 * `src/main.ts` in its own process with a preload that records every module it resolved.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../helpers/redis-server.js';

const ROOT = join(import.meta.dirname, '../..');

/** Starts the relay process, waits until it listens, asks it for its module list, kills it and returns the URLs of the modules it loaded. */
async function urlsLoadedBy(env: Record<string, string>): Promise<string[]> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', './test/helpers/module-recorder.mjs', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  /** Resolves once `out` matches `text`; rejects if the process exits first or after 30 s. */
  const printed = (text: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${text} in time: ${out.slice(-1000)}`)), 30_000);
      const check = (): void => {
        if (!text.test(out)) return;
        clearTimeout(timer);
        resolve();
      };
      child.stdout.on('data', check);
      check();
      void exit.then(() => {
        clearTimeout(timer);
        reject(new Error(`relay exited before ${text}: ${out.slice(-1000)}`));
      });
    });
  let line: string | undefined;
  try {
    await printed(/"relay listening"/);
    child.kill('SIGUSR2');
    await printed(/^loaded-modules: .*\n/m);
    line = out.split('\n').find((l) => l.startsWith('loaded-modules: '));
  } finally {
    child.kill('SIGKILL');
    await exit;
  }
  if (!line) throw new Error(`no module list printed: ${out.slice(-1000)}`);
  return JSON.parse(line.slice('loaded-modules: '.length)) as string[];
}

/** The repo-relative source modules a start loaded (dependencies left out). */
async function modulesLoadedBy(env: Record<string, string>): Promise<string[]> {
  const root = new URL(`file://${ROOT}/`).href;
  return (await urlsLoadedBy(env)).filter((u) => u.startsWith(root) && !u.includes('/node_modules/')).map((u) => u.slice(root.length));
}

/** The npm packages a start loaded (`twilio`, `@opentelemetry/sdk-trace-base`, …). */
async function packagesLoadedBy(env: Record<string, string>): Promise<string[]> {
  const names = new Set<string>();
  for (const u of await urlsLoadedBy(env)) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u);
    if (m) names.add(m[1]!);
  }
  return [...names];
}

const OPENAI = {
  MODEL_PROVIDER: 'openai',
  OPENAI_API_KEY: 'sk-test-not-used',
  // Never dialled: a relay connects to the model per call, and this one takes none.
  OPENAI_REALTIME_URL: 'ws://127.0.0.1:9/v1/realtime',
};
/** Loaded on first use only (twilio) or only with a collector to export to (the OTel SDK). */
const LAZY_PACKAGES = ['twilio', '@opentelemetry/sdk-trace-base', '@opentelemetry/exporter-trace-otlp-http', '@opentelemetry/resources'];

describe('which modules a relay start loads', () => {
  it('with MODEL_PROVIDER=openai, nothing from src/sim or loadtest/', async () => {
    const loaded = await modulesLoadedBy(OPENAI);
    expect(loaded).toContain('src/server/app.ts');
    expect(loaded.filter((m) => m.startsWith('src/sim/') || m.startsWith('loadtest/'))).toEqual([]);
  }, 60_000);

  it('without an OTLP endpoint, neither the twilio SDK nor the OpenTelemetry SDK', async () => {
    const packages = await packagesLoadedBy(OPENAI);
    expect(packages).toContain('pino');
    expect(packages).toContain('@opentelemetry/api');
    expect(packages.filter((p) => LAZY_PACKAGES.includes(p))).toEqual([]);
  }, 60_000);

  it('with an OTLP endpoint, the OpenTelemetry SDK (and still not the twilio SDK)', async () => {
    // Nothing listens there; spans are batched and a failed export is only logged.
    const packages = await packagesLoadedBy({ ...OPENAI, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' });
    expect(packages).toContain('@opentelemetry/sdk-trace-base');
    expect(packages).toContain('@opentelemetry/exporter-trace-otlp-http');
    expect(packages).not.toContain('twilio');
  }, 60_000);

  it('with MODEL_PROVIDER=sim, the simulated model is loaded', async () => {
    const loaded = await modulesLoadedBy({ MODEL_PROVIDER: 'sim', SIM_MODEL_MODE: 'loadtest' });
    expect(loaded).toContain('src/sim/sim-model.ts');
  }, 60_000);
});
