/**
 * Drain by migration: a draining pod moves each live call to another pod through a Twilio call
 * update whose TwiML connects the stream to the service again with a resume token. This file owns
 * the order, the per-account pacing, the retries and the fall-back to waiting; the TwiML is the
 * caller's (`resumeTwiml`), and what happens on the old stream's `stop` is the call's own
 * (src/call/call-move.ts).
 */
import type { Logger } from 'pino';
import type { MigratableCall, MigrationReadiness } from '../call/index.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { errorMessage } from '../errors.js';
import type { CallStore } from '../store/index.js';
import type { RelayMetrics } from '../telemetry/index.js';
import { resumeStreamTwiml, type CallControl } from '../twilio/index.js';

/**
 * `switchboard_call_migrations_total{reason="drain",outcome}`: `migrated` (Twilio took the update);
 * the call stayed and drains as in `wait` mode: `refused` (401/403/4xx: credentials or permissions),
 * `rate_limited` (still 429 after the last attempt), `failed` (5xx, timeouts, the store could not
 * hand the call over), `busy` (a tool call or an answer outlasted MIGRATION_BUSY_WAIT_SECONDS), `opted_out`
 * (tenant `migration: false`), `deadline` (the drain ran out first); `ended` (the call ended by
 * itself, or Twilio said it was over).
 */
export type MigrationOutcome = 'migrated' | 'refused' | 'rate_limited' | 'failed' | 'busy' | 'opted_out' | 'deadline' | 'ended';

export const MIGRATION_OUTCOMES: readonly MigrationOutcome[] = ['migrated', 'refused', 'rate_limited', 'failed', 'busy', 'opted_out', 'deadline', 'ended'];

export interface MigratorOptions {
  control: Pick<CallControl, 'migrate'>;
  store: Pick<CallStore, 'beginMigration'>;
  /** The resume TwiML for this call (a fresh one-time token each time). */
  resumeTwiml(call: MigratableCall): string;
  clock: Clock;
  log: Logger;
  /** Counted once per call. */
  onOutcome?(outcome: MigrationOutcome, call: MigratableCall): void;
  /** Call updates in flight at once per Twilio account. */
  concurrencyPerAccount: number;
  /** Attempts per call update (429 / 5xx / network). */
  maxAttempts: number;
  /** How long a busy call is waited for. */
  busyWaitMs: number;
  /** No update is started after this time (clock ms): the drain's deadline. */
  deadline: number;
  /** Backoff after a failed attempt without Retry-After: base × 2^(attempt-1), ±50 % jitter. Default 500 ms. */
  backoffMs?: number;
  /** How often a busy call is looked at again (default 100 ms). */
  pollMs?: number;
  /** [0, 1): the jitter source (tests pin it). */
  random?: () => number;
}

/** Account-wide state: a slot counter, the pause a 429 imposes, and a refusal that spares the rest. */
interface Account {
  inFlight: number;
  waiters: (() => void)[];
  pausedUntil: number;
  refused: boolean;
}

/** One call's attempts so far and how the last one failed. */
interface Tries {
  n: number;
  last: 'rate_limited' | 'failed';
}

/** Retry-After beyond this is not waited for (the drain has minutes, not hours). */
const MAX_RETRY_AFTER_MS = 30_000;

/**
 * Move `calls` off this pod; resolves with each call's outcome once every call has one. Never
 * throws: a call that cannot be moved is left on the pod (it drains as in `wait` mode).
 */
export async function migrateCalls(calls: readonly MigratableCall[], o: MigratorOptions): Promise<Map<string, MigrationOutcome>> {
  const accounts = new Map<string, Account>();
  const results = new Map<string, MigrationOutcome>();
  const random = o.random ?? Math.random;
  const pollMs = o.pollMs ?? 100;
  const backoffMs = o.backoffMs ?? 500;
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => o.clock.after(Math.max(0, ms), resolve));
  const account = (sid: string): Account => {
    let a = accounts.get(sid);
    if (!a) {
      a = { inFlight: 0, waiters: [], pausedUntil: 0, refused: false };
      accounts.set(sid, a);
    }
    return a;
  };
  const acquire = async (a: Account): Promise<void> => {
    while (a.inFlight >= o.concurrencyPerAccount) await new Promise<void>((resolve) => a.waiters.push(resolve));
    a.inFlight++;
  };
  const release = (a: Account): void => {
    a.inFlight--;
    a.waiters.shift()?.();
  };

  /** Wait until the call is ready, or `until`; what stands in the way otherwise. */
  const whenReady = async (call: MigratableCall, until: number): Promise<MigrationReadiness> => {
    for (;;) {
      const r = call.migrationReadiness();
      if (r !== 'busy' || o.clock.now() >= until) return r;
      await sleep(Math.min(pollMs, until - o.clock.now()));
    }
  };

  const migrateOne = async (call: MigratableCall): Promise<MigrationOutcome> => {
    if (!call.tenant.migration) return 'opted_out';
    const busyUntil = Math.min(o.clock.now() + o.busyWaitMs, o.deadline);
    const a = account(call.tenant.twilio.accountSid);
    // Attempts count across rounds: a call that turns busy between retries keeps its budget.
    const tries: Tries = { n: 0, last: 'failed' };
    // Bounded: each round first waits for readiness, which gives up at busyUntil.
    for (;;) {
      const ready = await whenReady(call, busyUntil);
      if (ready === 'busy') return tries.n > 0 ? tries.last : o.clock.now() >= o.deadline ? 'deadline' : 'busy';
      if (ready !== 'ready') return 'ended';
      await acquire(a);
      let r: MigrationOutcome | 'busy-again';
      try {
        r = await update(call, a, tries);
      } finally {
        release(a);
      }
      if (r !== 'busy-again') return r;
    }
  };

  const update = async (call: MigratableCall, a: Account, tries: Tries): Promise<MigrationOutcome | 'busy-again'> => {
    const log = o.log.child({ callSid: call.callSid, tenant: call.tenant.id });
    while (tries.n < o.maxAttempts) {
      if (a.refused) return 'refused';
      const wait = a.pausedUntil - o.clock.now();
      if (wait > 0) await sleep(wait);
      if (o.clock.now() >= o.deadline) return 'deadline';
      // Ready may have changed while this call waited for a slot or a pause.
      const r = call.migrationReadiness();
      if (r === 'gone' || r === 'ending') return 'ended';
      if (r === 'busy') return 'busy-again';
      const twiml = o.resumeTwiml(call);
      try {
        await o.store.beginMigration(call.callSid);
      } catch (err) {
        log.warn({ code: 'store_unavailable', err: errorMessage(err) }, 'migration: the store cannot hand the call over; it stays');
        return 'failed';
      }
      call.beginMigration();
      const attempt = ++tries.n;
      const res = await o.control.migrate({ accountSid: call.tenant.twilio.accountSid, authToken: call.tenant.resolvedAuthToken }, call.callSid, twiml);
      if (res.kind === 'updated') return 'migrated';
      call.cancelMigration();
      switch (res.kind) {
        case 'already_ended':
          return 'ended';
        case 'refused':
          // Credentials or permissions: every other call of this account would be refused too.
          a.refused = true;
          log.warn({ code: 'unauthorized', status: res.status, twilioCode: res.twilioCode, err: res.message }, 'migration refused by Twilio; the call stays and drains');
          return 'refused';
        case 'rate_limited': {
          tries.last = 'rate_limited';
          const pause = Math.min(res.retryAfterMs ?? backoff(attempt), MAX_RETRY_AFTER_MS);
          // The whole account waits: more requests now would only earn more 429s.
          a.pausedUntil = Math.max(a.pausedUntil, o.clock.now() + jitter(pause));
          log.info({ code: 'rate_limited', attempt, retryAfterMs: res.retryAfterMs }, 'migration rate-limited by Twilio');
          break;
        }
        case 'failed':
          tries.last = 'failed';
          log.warn({ code: 'tool_failed', attempt, status: res.status, err: res.message }, 'migration call update failed');
          if (attempt < o.maxAttempts) await sleep(jitter(backoff(attempt)));
          break;
      }
    }
    log.warn({ outcome: tries.last, attempts: tries.n }, 'migration gave up; the call stays and drains');
    return tries.last;
  };

  const backoff = (attempt: number): number => backoffMs * 2 ** (attempt - 1);
  const jitter = (ms: number): number => Math.round(ms * (0.75 + random() / 2));

  await Promise.all(
    calls.map(async (call) => {
      let outcome: MigrationOutcome;
      try {
        outcome = await migrateOne(call);
      } catch (err) {
        o.log.error({ code: 'internal', callSid: call.callSid, err: errorMessage(err) }, 'migration failed unexpectedly; the call stays');
        outcome = 'failed';
      }
      results.set(call.callSid, outcome);
      o.onOutcome?.(outcome, call);
    }),
  );
  return results;
}

export interface DrainMigrationDeps {
  config: Pick<Config, 'publicUrl' | 'streamTokenSecret' | 'migration'>;
  /** The `<Stream url>`: PUBLIC_URL's media route, i.e. the service, so a ready pod takes the call. */
  streamUrl: string;
  control: Pick<CallControl, 'migrate'>;
  store: Pick<CallStore, 'beginMigration'>;
  metrics: Pick<RelayMetrics, 'callMigrations'>;
  clock: Clock;
  log: Logger;
}

/**
 * A drain in `migrate` mode: after MIGRATION_START_DELAY_MS, move `calls` with resume TwiML, counted
 * in `switchboard_call_migrations_total{reason="drain"}`. Resolves when every call has an outcome.
 */
export async function migrateForDrain(calls: readonly MigratableCall[], deadline: number, d: DrainMigrationDeps): Promise<Map<string, MigrationOutcome>> {
  const m = d.config.migration;
  if (m.startDelayMs > 0) await new Promise<void>((resolve) => d.clock.after(m.startDelayMs, resolve));
  const started = d.clock.now();
  d.log.info({ calls: calls.length }, 'draining by migration: moving live calls to other pods');
  const out = await migrateCalls(calls, {
    control: d.control,
    store: d.store,
    resumeTwiml: (c) =>
      resumeStreamTwiml({
        streamUrl: d.streamUrl,
        publicUrl: d.config.publicUrl,
        secret: d.config.streamTokenSecret,
        now: d.clock.now(),
        callSid: c.callSid,
        tenantId: c.tenant.id,
        ...(c.parties.to !== undefined ? { to: c.parties.to } : {}),
        ...(c.parties.fromMasked !== undefined ? { fromMasked: c.parties.fromMasked } : {}),
        reason: 'drain',
      }),
    clock: d.clock,
    log: d.log,
    onOutcome: (outcome) => d.metrics.callMigrations.labels('drain', outcome).inc(),
    concurrencyPerAccount: m.concurrencyPerAccount,
    maxAttempts: m.maxAttempts,
    busyWaitMs: m.busyWaitMs,
    deadline,
  });
  const tally: Partial<Record<MigrationOutcome, number>> = {};
  for (const o of out.values()) tally[o] = (tally[o] ?? 0) + 1;
  d.log.info({ ...tally, ms: d.clock.now() - started }, 'migration requests done');
  return out;
}
