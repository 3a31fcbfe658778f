/**
 * The relay's composition root: builds the stores, tenants, model connector, usage and routes from
 * config, listens, and keeps one list of what to close. Routes live in routes/, the calls on this
 * pod in live-calls.ts; protocol and business logic live elsewhere.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { TemplatedApp } from 'uWebSockets.js';
import type { BridgeDeps, BridgeLimits, CallLifecycleListener, ModelConnector } from '../call/index.js';
import { systemClock, type Clock } from '../clock.js';
import { mediaStreamUrl, type Config } from '../config.js';
import { CloseCode } from '../errors.js';
import type { SimModel } from '../sim/sim-model.js';
import { MemoryCallStore, MemoryUsageStore, RedisCallStore, RedisUsageStore, startPodHeartbeat, type CallStore, type UsageStore } from '../store/index.js';
import { createRedis } from '../store/redis-connection.js';
import { createLogger, createMetrics, type RelayMetrics } from '../telemetry/index.js';
import type { TenantDirectory } from '../tenants/index.js';
import { BuiltinToolRunner, callSummaryListener, type ToolRunner } from '../tools/index.js';
import { TwilioCallControl } from '../twilio/index.js';
import { BudgetGate, loadPriceTable, pricesFor, tokenRates, UsageTracker, type PriceTable } from '../usage/index.js';
import { bearerAuth } from './admin-auth.js';
import type { RelayContext } from './context.js';
import { Disposers } from './disposers.js';
import { assertCanListen, listenExclusive } from './listen.js';
import { LiveCalls } from './live-calls.js';
import { MIGRATION_OUTCOMES, migrateForDrain } from './migrator.js';
import { modelFromConfig } from './model-connector.js';
import { ConnectionRateLimiter } from './rate-limit.js';
import { registerAdminCallRoutes, usageReader } from './routes/admin-calls.js';
import { registerAdminTenantRoutes, type AdminTenantRegistry } from './routes/admin-tenants.js';
import { registerAdminUsageRoutes } from './routes/admin-usage.js';
import { registerMediaStreamRoute } from './routes/media-stream.js';
import { registerOpsRoutes } from './routes/ops.js';
import { registerTwilioWebhooks, type WebhookLeases } from './routes/twilio-webhooks.js';
import { createStreamAuthoriser } from './stream-auth.js';
import { openDeferredTenants } from './tenants-runtime.js';
import { loadUws } from './uws.js';

export interface RelayOptions {
  log?: Logger;
  metrics?: RelayMetrics;
  store?: CallStore;
  tenants?: TenantDirectory;
  tools?: ToolRunner;
  clock?: Clock;
  pod?: string;
  /** Use this model connector instead of the one derived from config (tests, bench). */
  model?: ModelConnector;
  /** Told when calls start and end (leases, summaries). */
  listeners?: readonly CallLifecycleListener[];
  /** Per-tenant concurrency leases for the voice webhook (built from config when `tenants` is not given). */
  leases?: WebhookLeases;
  /** The registry behind /v1/tenants (built from config when `tenants` is not given). */
  adminTenants?: AdminTenantRegistry;
  /** Where usage per call and tenant is kept (built from config: Redis when REDIS_URL is set). */
  usageStore?: UsageStore;
}

export interface Relay {
  readonly port: number;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly metrics: RelayMetrics;
  readonly store: CallStore;
  readonly log: Logger;
  readonly sim: SimModel | undefined;
  readonly native: boolean;
  activeCalls(): number;
  readonly draining: boolean;
  /** Stop taking new streams and wait for live calls to end, up to the drain timeout. */
  drain(timeoutMs?: number): Promise<{ remaining: number }>;
  /** Close everything now (live calls end with 1001). */
  close(): Promise<void>;
}

export async function startRelay(config: Readonly<Config>, opts: RelayOptions = {}): Promise<Relay> {
  const { uws, native, build: uwsBuild } = loadUws({ allowFallback: config.allowUwsFallback, maxHeaderBytes: config.httpMaxHeaderBytes });
  const log = opts.log ?? createLogger({ level: config.logLevel });
  // Before anything opens: a bad price table or a taken port stops the start (a relay that cannot
  // listen must not first apply its tenants file to Redis).
  const priceTable = loadPriceTable(config.priceTableFile);
  await assertCanListen(config.host, config.port);
  if (!native)
    log.warn(
      { code: 'uws_native_missing' },
      'running on the slow uWebSockets.js JS fallback (UWS_ALLOW_FALLBACK=1)',
    );
  if (config.streamTokenSecretEphemeral) {
    log.warn('STREAM_TOKEN_SECRET is not set: stream tokens verify only on this process (dev only)');
  }
  // Everything opened from here on is added to `disposers`: stop runs them in reverse, and so
  // does a start that fails half-way (nothing may outlive a relay that never started).
  const disposers = new Disposers();
  try {
    return await compose(config, opts, { uws, native, uwsBuild, log, priceTable, disposers });
  } catch (err) {
    await disposers.run(log).catch(() => undefined);
    throw err;
  }
}

interface Started {
  uws: ReturnType<typeof loadUws>['uws'];
  native: boolean;
  uwsBuild: string;
  log: Logger;
  priceTable: PriceTable;
  disposers: Disposers;
}

async function compose(config: Readonly<Config>, opts: RelayOptions, started: Started): Promise<Relay> {
  const { uws, native, log, priceTable, disposers } = started;
  const clock = opts.clock ?? systemClock;
  const pod = opts.pod ?? config.podName ?? hostname();

  const metrics = opts.metrics ?? createMetrics();
  if (!opts.metrics) disposers.add('metrics', () => metrics.close());
  metrics.maxActiveCalls.set(config.maxActiveCalls);
  if (config.drainMode === 'migrate') for (const o of MIGRATION_OUTCOMES) metrics.callMigrations.labels('drain', o).inc(0);

  // One Redis connection for state, tenants and leases when REDIS_URL is set.
  const redis = config.redisUrl
    ? createRedis(config.redisUrl, {
        log: log.child({ component: 'redis' }),
        username: config.redisUsername,
        password: config.redisPassword,
        tlsCaFile: config.redisTlsCaFile,
      })
    : undefined;
  const store = opts.store ?? (redis ? new RedisCallStore(redis, { log: log.child({ component: 'call-store' }) }) : new MemoryCallStore());
  // The Redis call store owns (and quits) the shared connection; a given store is the caller's.
  if (!opts.store) disposers.add('call-store', () => store.close());
  else if (redis) disposers.add('redis', () => redis.disconnect());
  const usageStore =
    opts.usageStore ?? (redis ? new RedisUsageStore(redis, { retentionDays: config.usageRetentionDays }) : new MemoryUsageStore());

  // Tenants come up in the background when Redis is down at start: the pod starts unready.
  const tenantRt = opts.tenants
    ? undefined
    : await openDeferredTenants({ tenantsFile: config.tenantsFile, provider: config.model.provider, tenantsFileMode: config.tenantsFileMode, allowPrivateWebhooks: config.webhookToolsAllowPrivate, env: config.secretEnv, log, redis, clock });
  if (tenantRt) disposers.add('tenants', () => tenantRt.close());
  const tenants: TenantDirectory = opts.tenants ?? tenantRt!.directory;

  const configured = opts.model ? { model: opts.model, sim: undefined } : await modelFromConfig(config, log);
  const { model, sim } = configured;
  if (sim) disposers.add('sim-model', () => sim.close());

  // Heartbeat this pod's calls and reap those of pods that died (any survivor may do it, once).
  disposers.add(
    'heartbeat',
    startPodHeartbeat({ store, pod, clock, log, onReaped: (r) => metrics.callsTotal.labels('abandoned', 'unknown').inc(r.calls.length) }),
  );
  const { budgets, usage } = usageRuntime(config, { priceTable, usageStore, metrics, clock, log, tenants });
  // The calls that end at stop write their usage; it (and any retry) must land before Redis goes.
  disposers.add('usage', () => usage.close());

  const callControl = new TwilioCallControl({ apiBaseUrl: config.twilioApiBaseUrl, log: log.child({ component: 'call-control' }) });
  const tools =
    opts.tools ??
    new BuiltinToolRunner({
      store,
      clock,
      callControl,
      webhooks: { env: config.secretEnv, allowPrivateNetworks: config.webhookToolsAllowPrivate },
    });
  const streamUrl = mediaStreamUrl(config);
  const calls = new LiveCalls({ maxActiveCalls: config.maxActiveCalls, log });
  const bridge: BridgeDeps = {
    usage,
    listeners: [...(opts.listeners ?? []), ...(tenantRt ? [tenantRt.listener] : []), callSummaryListener(store, log, clock)],
    clock,
    store,
    tools,
    metrics,
    log,
    model,
    authorise: createStreamAuthoriser({
      tenants,
      store,
      secret: config.streamTokenSecret,
      previousSecrets: config.previousStreamTokenSecrets,
      validateSignatures: config.validateSignatures,
      streamUrl,
      now: () => clock.now(),
      pod,
      metrics,
      log,
    }),
    admit: calls.admit,
    pod,
    limits: bridgeLimits(config),
  };

  const app: TemplatedApp = uws.App();
  const ctx: RelayContext = {
    app,
    config,
    log,
    metrics,
    store,
    tenants,
    tools,
    clock,
    pod,
    streamUrl,
    isDraining: () => calls.draining,
    tenantsReady: () => tenantRt?.ready() ?? true,
  };
  const admin = bearerAuth(config.adminToken);
  const leases = opts.leases ?? tenantRt?.leases;
  const adminTenants = opts.adminTenants ?? tenantRt?.admin;
  registerTwilioWebhooks(ctx, { budgets, ...(leases ? { leases } : {}) });
  registerOpsRoutes(ctx);
  if (adminTenants) registerAdminTenantRoutes(ctx, admin, adminTenants);
  registerAdminCallRoutes(ctx, admin, usageReader(usageStore, usage));
  registerAdminUsageRoutes(ctx, admin, { store: usageStore, tracker: usage, priceTable, priceModel: config.usagePriceModel });
  registerMediaStreamRoute(ctx, {
    calls,
    bridge,
    limiter:
      config.mediaConnectPerMinute > 0
        ? new ConnectionRateLimiter({ perMinute: config.mediaConnectPerMinute, burst: config.mediaConnectBurst, now: () => Date.now() })
        : undefined,
    compressionDisabled: uws.DISABLED,
  });
  app.any('/*', (res) => {
    res
      .writeStatus('404 Not Found')
      .writeHeader('content-type', 'application/json')
      .end('{"error":{"code":"not_found","message":"no such route"}}');
  });

  const listenSocket = await listenExclusive(uws, app, config.host, config.port);
  disposers.add('listen-socket', () => uws.us_listen_socket_close(listenSocket));
  disposers.add('calls', () => {
    calls.finish('all', 'drained', CloseCode.goingAway, 'relay closing');
    calls.endSockets(CloseCode.goingAway, 'relay closing');
  });
  const port = uws.us_socket_local_port(listenSocket);
  logStartup(config, log, {
    port,
    provider: model.provider,
    simStarted: sim !== undefined,
    tenantsPending: tenantRt !== undefined && !tenantRt.ready(),
    tenantCount: tenants.list().length,
    native,
    uwsBuild: started.uwsBuild,
  });

  let closed = false;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    metrics,
    store,
    log,
    sim,
    native,
    activeCalls: () => calls.live,
    get draining() {
      return calls.draining;
    },
    async drain(timeoutMs = config.drainTimeoutSeconds * 1000) {
      calls.draining = true;
      log.info({ live: calls.live, unstarted: calls.unstarted, timeoutMs }, 'draining: refusing new streams, waiting for live calls');
      // Sockets without an authorised start are no calls: close them now, not at the drain timeout.
      calls.finish('unstarted', 'drained', CloseCode.draining, 'relay draining');
      if (config.drainMode === 'migrate' && calls.live > 0) {
        // Moved calls leave this pod as Twilio stops their streams; the rest run on as in `wait` mode.
        void migrateForDrain(calls.migratable(), clock.now() + timeoutMs, { config, streamUrl, control: callControl, store, metrics, clock, log: log.child({ component: 'migrator' }) });
      }
      await calls.waitUntilNoLive(timeoutMs, clock);
      const remaining = calls.live;
      calls.finish('all', 'drained', CloseCode.goingAway, 'drain timeout');
      return { remaining };
    },
    async close() {
      if (closed) return;
      closed = true;
      calls.draining = true;
      await disposers.run(log);
    },
  };
}

/** Per-call usage (tokens, audio, cost) and the tenant budgets it feeds. */
function usageRuntime(
  config: Readonly<Config>,
  d: { priceTable: PriceTable; usageStore: UsageStore; metrics: RelayMetrics; clock: Clock; log: Logger; tenants: TenantDirectory },
): { budgets: BudgetGate; usage: UsageTracker } {
  const prices = pricesFor(d.priceTable, config.usagePriceModel);
  if (!prices) {
    d.log.warn({ model: config.usagePriceModel, takenOn: d.priceTable.takenOn }, 'no price-table entry for the model: estimated costs are 0 (PRICE_TABLE_FILE, USAGE_PRICE_MODEL)');
  }
  const budgets = new BudgetGate({
    store: d.usageStore,
    metrics: d.metrics.usage,
    clock: d.clock,
    log: d.log.child({ component: 'budget' }),
    voicemailActionUrl: `${config.publicUrl}/twilio/voicemail`,
  });
  const usage = new UsageTracker({
    store: d.usageStore,
    clock: d.clock,
    metrics: d.metrics.usage,
    log: d.log.child({ component: 'usage' }),
    rates: prices ? tokenRates(prices) : undefined,
    flushMs: config.usageFlushSeconds * 1000,
    onRecorded: (tenantId) => {
      const t = d.tenants.byId(tenantId);
      if (t?.budget) void budgets.refresh(t);
    },
  });
  return { budgets, usage };
}

function bridgeLimits(config: Readonly<Config>): BridgeLimits {
  return {
    twilioMaxBackpressureBytes: config.twilioMaxBackpressureBytes,
    twilioMarkIntervalMs: config.twilioMarkIntervalMs,
    modelMaxBufferedBytes: config.modelMaxBufferedBytes,
    modelAppendFrames: config.modelAppendFrames,
    twilioCoalesceMs: config.twilioCoalesceMs,
    twilioMaxMessageBytes: config.twilioMaxMessageBytes,
    callerAudioRingFrames: config.callerAudioRingFrames,
    maxCallMs: config.maxCallSeconds * 1000,
    modelConnectTimeoutMs: config.modelConnectTimeoutMs * Math.max(1, config.modelConnectAttempts),
    frameMetrics: config.frameMetrics,
    windDownMs: 15_000,
    modelSessionRenewMs: config.modelSessionRenewSeconds * 1000,
    startTimeoutMs: config.mediaStartTimeoutSeconds * 1000,
    modelStallMs: config.modelStallTimeoutMs,
  };
}

/** The one start-up summary: what this process serves and with what, in one line. */
function logStartup(
  config: Readonly<Config>,
  log: Logger,
  s: { port: number; provider: string; simStarted: boolean; tenantsPending: boolean; tenantCount: number; native: boolean; uwsBuild: string },
): void {
  log.info(
    {
      port: s.port,
      host: config.host,
      publicUrl: config.publicUrl,
      provider: s.provider,
      ...(config.model.provider === 'sim' && s.simStarted ? { simMode: config.model.mode } : {}),
      tenants: s.tenantsPending ? 'pending (tenant store unreachable)' : s.tenantCount,
      tenantsFile: config.tenantsFile ?? (config.model.provider === 'sim' ? 'none (demo tenant)' : 'none'),
      tenantsFileMode: config.tenantsFileMode,
      adminApi: config.adminToken ? 'on' : 'off',
      redis: config.redisUrl ? 'on' : 'off (in-memory)',
      drain: config.drainMode,
      drainTimeoutSeconds: config.drainTimeoutSeconds,
      maxActiveCalls: config.maxActiveCalls || 'no cap',
      uws: s.native ? `native (${s.uwsBuild})` : `JS fallback (slow, ${s.uwsBuild})`,
      node: process.version,
    },
    'relay listening',
  );
}
