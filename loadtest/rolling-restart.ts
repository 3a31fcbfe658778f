/**
 * `npm run load -- --scenario rolling-restart`: a storm of simulated calls while relays restart one
 * at a time, on loopback. It sets the deployment up itself (test/helpers/local-cluster.ts): one
 * redis-server, N relay processes behind the loopback service (their shared PUBLIC_URL), the
 * simulated Twilio REST API as their TWILIO_API_BASE_URL. Then, during the run, each original relay
 * gets SIGTERM, is waited for (SIGKILL after DRAIN_TIMEOUT_SECONDS + 10 s), and a new one is
 * started, as a rollout does. It reports calls completed, lost and moved, the move gaps, and per
 * restart the live calls at SIGTERM, the time until the relay held no connection and until it exited.
 */
import { join } from 'node:path';
import { startLocalCluster, type RelayStop } from '../test/helpers/local-cluster.js';
import { METRICS } from './lib/scenarios.js';
import { formatSummary, resolveScenario, runLoad, type LoadOptions, type LoadResult, type Progress } from './node-driver.js';

export interface RollingRestartResult extends LoadResult {
  relays: number;
  drainMode: string;
  restarts: RelayStop[];
  /** Calls that failed (refusals apart): dropped or broken by the restarts, or by anything else. */
  lost: number;
}

const TENANTS_FILE = join(import.meta.dirname, '../examples/loadtest-tenants.yaml');
/** DRAIN_TIMEOUT_SECONDS for the relays unless --drain-timeout says otherwise: above the longest scripted call. */
const DEFAULT_DRAIN_TIMEOUT_S = 60;

export async function runRollingRestart(
  o: LoadOptions & { onProgress?: (p: Progress) => void; onEvent?: (line: string) => void; signal?: AbortSignal },
): Promise<RollingRestartResult> {
  const scenario = resolveScenario(o);
  const plan = scenario.restart;
  if (!plan) throw new Error(`scenario ${scenario.name} restarts no relays`);
  const relays = o.relays ?? plan.relays;
  const drainTimeoutS = o.drainTimeoutS ?? DEFAULT_DRAIN_TIMEOUT_S;
  const say = (line: string): void => o.onEvent?.(line);
  const cluster = await startLocalCluster({
    relays,
    accounts: { [o.accountSid]: o.authToken },
    env: {
      TENANTS_FILE,
      DRAIN_TIMEOUT_SECONDS: String(drainTimeoutS),
      ...(o.drainMode !== undefined ? { DRAIN_MODE: o.drainMode } : {}),
    },
  });
  say(`${relays} relays up behind ${cluster.service.url} (Redis ${cluster.redisUrl}, Twilio API ${cluster.api.url})`);
  const restarts: RelayStop[] = [];
  const stopRestarts = new AbortController();
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      stopRestarts.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
    });
  try {
    const restarter = (async () => {
      await sleep(plan.firstAtS * 1000);
      for (const r of [...cluster.relays]) {
        if (stopRestarts.signal.aborted) return;
        say(`SIGTERM ${r.url}`);
        const stop = await cluster.stopRelay(r, { signal: 'SIGTERM', graceMs: (drainTimeoutS + 10) * 1000 });
        restarts.push(stop);
        say(
          `${r.url}: ${stop.callsAtSignal ?? '?'} calls at SIGTERM, empty after ${stop.emptyMs ?? '?'} ms, exited after ${stop.exitMs} ms` +
            `${stop.killed ? ' (SIGKILLed at the grace period)' : ''}`,
        );
        const fresh = await cluster.startRelay();
        say(`new relay ${fresh.url} ready`);
        await sleep(plan.everyS * 1000);
      }
    })();
    // The storm goes through the service; signatures are over its URL, every relay's PUBLIC_URL.
    const { publicUrl: _ignored, ...load } = o;
    const result = await runLoad({ ...load, url: cluster.service.url, twilioApi: cluster.api });
    stopRestarts.abort();
    await restarter;
    return { ...result, relays, drainMode: o.drainMode ?? 'the relays\' default', restarts, lost: result.calls.failed };
  } finally {
    stopRestarts.abort();
    await cluster.close();
  }
}

const ms = (v: number | null | undefined): string => (v === null || v === undefined || Number.isNaN(v) ? '-' : `${Math.round(v)}`);

/** The end-of-run report: the load summary, then the restarts and the move figures. */
export function formatRollingRestart(r: RollingRestartResult): string {
  const gap = r.summary.metrics[METRICS.moveGap]?.values;
  const audio = r.summary.metrics[METRICS.moveAudioGap]?.values;
  const lines = [formatSummary(r), '', `rolling restart of ${r.relays} relays (DRAIN_MODE: ${r.drainMode}):`];
  lines.push(`  calls completed ${r.calls.completed}, lost ${r.lost}, moved ${r.moved}, refused ${r.calls.refused}`);
  lines.push(`  move gap (stop -> new start) p50 ${ms(gap?.med)} ms, p99 ${ms(gap?.['p(99)'])} ms, n ${gap?.count ?? 0}`);
  lines.push(`  to first audio on the new stream p50 ${ms(audio?.med)} ms, p99 ${ms(audio?.['p(99)'])} ms`);
  for (const s of r.restarts) {
    lines.push(
      `  ${s.url}: ${s.callsAtSignal ?? '?'} calls at ${s.signal}, empty in ${ms(s.emptyMs)} ms, exited in ${s.exitMs} ms (code ${s.exitCode ?? '-'})${s.killed ? ', SIGKILLed' : ''}`,
    );
  }
  return lines.join('\n');
}
