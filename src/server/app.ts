/**
 * The relay process's network surface: uWS routes for Twilio webhooks, the media socket, health,
 * metrics and drain. Wires sockets to CallBridge; protocol and business logic live elsewhere.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket, WebSocket } from 'uWebSockets.js';
import { CallBridge, type AdmissionRefusal, type CallLifecycleListener, type ModelConnector, type TwilioSocket } from '../call/index.js';
import { systemClock, type Clock } from '../clock.js';
import { mediaStreamUrl, type Config } from '../config.js';
import { CloseCode } from '../errors.js';
import { connectRealtime, modelEndpoint } from '../model/index.js';
import { startSimModel, type SimModel } from '../sim/sim-model.js';
import { MemoryCallStore, MemoryUsageStore, RedisCallStore, RedisUsageStore, startPodHeartbeat, type CallStore, type UsageStore } from '../store/index.js';
import { createLogger, createMetrics, type RelayMetrics } from '../telemetry/index.js';
import type { TenantDirectory } from '../tenants/index.js';
import { openDeferredTenants } from './tenants-runtime.js';
import { createRedis } from '../store/redis-connection.js';
import { bearerAuth } from './admin-auth.js';
import { clientAddress, ConnectionRateLimiter } from './rate-limit.js';
import { registerAdminTenantRoutes, type AdminTenantRegistry } from './routes/admin-tenants.js';
import { BuiltinToolRunner, callSummaryListener, type ToolRunner } from '../tools/index.js';
import { TwilioCallControl } from '../twilio/index.js';
import { registerAdminCallRoutes, usageReader } from './routes/admin-calls.js';
import { registerAdminUsageRoutes } from './routes/admin-usage.js';
import { BudgetGate, loadPriceTable, pricesFor, tokenRates, UsageTracker } from '../usage/index.js';
import type { RelayContext } from './context.js';
import { registerOpsRoutes } from './routes/ops.js';
import { registerTwilioWebhooks, type WebhookLeases } from './routes/twilio-webhooks.js';
import { createStreamAuthoriser } from './stream-auth.js';
import { assertCanListen, listenExclusive } from './listen.js';
import { MIGRATION_OUTCOMES, migrateForDrain } from './migrator.js';
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

interface SocketData {
  bridge: CallBridge | undefined;
  signature: string | undefined;
  remote: string;
  refuse: { code: number; reason: string } | undefined;
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
  const metrics = opts.metrics ?? createMetrics();
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
  const usageStore =
    opts.usageStore ?? (redis ? new RedisUsageStore(redis, { retentionDays: config.usageRetentionDays }) : new MemoryUsageStore());
  // Tenants come up in the background when Redis is down at start: the pod starts unready.
  const tenantRt = opts.tenants
    ? undefined
    : await openDeferredTenants({ tenantsFile: config.tenantsFile, provider: config.model.provider, tenantsFileMode: config.tenantsFileMode, allowPrivateWebhooks: config.webhookToolsAllowPrivate, env: config.secretEnv, log, redis, clock: opts.clock ?? systemClock });
  const tenants: TenantDirectory = opts.tenants ?? tenantRt!.directory;
  const leases = opts.leases ?? tenantRt?.leases;
  const adminTenants = opts.adminTenants ?? tenantRt?.admin;
  const listeners = [...(opts.listeners ?? []), ...(tenantRt ? [tenantRt.listener] : []), callSummaryListener(store, log)];
  const limiter =
    config.mediaConnectPerMinute > 0
      ? new ConnectionRateLimiter({ perMinute: config.mediaConnectPerMinute, burst: config.mediaConnectBurst, now: () => Date.now() })
      : undefined;
  const clock = opts.clock ?? systemClock;
  const callControl = new TwilioCallControl({ apiBaseUrl: config.twilioApiBaseUrl, log: log.child({ component: 'call-control' }) });
  const tools =
    opts.tools ??
    new BuiltinToolRunner({
      store,
      clock,
      callControl,
      webhooks: { env: config.secretEnv, allowPrivateNetworks: config.webhookToolsAllowPrivate },
    });
  const pod = opts.pod ?? config.podName ?? hostname();
  const streamUrl = mediaStreamUrl(config);

  if (config.streamTokenSecretEphemeral) {
    log.warn('STREAM_TOKEN_SECRET is not set: stream tokens verify only on this process (dev only)');
  }

  let sim: SimModel | undefined;
  let model = opts.model;
  if (!model) {
    let simUrl: string | undefined;
    if (config.model.provider === 'sim') {
      sim = await startSimModel({ mode: config.model.mode, log: log.child({ component: 'sim-model' }) });
      simUrl = sim.url;
      log.debug({ mode: config.model.mode, url: sim.url }, 'simulated model started (MODEL_PROVIDER=sim)');
    }
    const ep = modelEndpoint(config.model, simUrl);
    if (ep.provider === 'azure' && config.transcriptionModel === undefined) {
      log.warn('REALTIME_TRANSCRIPTION_MODEL is not set: on Azure it must name a transcription deployment, else no caller transcripts');
    }
    model = {
      provider: ep.provider,
      shape: ep.shape,
      ...(config.transcriptionModel !== undefined ? { transcriptionModel: config.transcriptionModel } : {}),
      connect: (signal, callLog) =>
        connectRealtime(ep, {
          timeoutMs: config.modelConnectTimeoutMs,
          attempts: config.modelConnectAttempts,
          signal,
          log: callLog,
          ...(config.modelKeepaliveIntervalMs > 0
            ? { keepalive: { intervalMs: config.modelKeepaliveIntervalMs, timeoutMs: config.modelKeepaliveTimeoutMs } }
            : {}),
        }),
    };
  }

  const authorise = createStreamAuthoriser({
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
  });

  const bridges = new Set<CallBridge>();
  const sockets = new Set<WebSocket<SocketData>>();
  let draining = false;
  let drainWaiters: (() => void)[] = [];
  // Authorised calls (what capacity, the gauge and a drain count) and sockets still without an
  // authorised start (held briefly, capped separately: they must not take the pod).
  let live = 0;
  let unstarted = 0;
  const admit = (): AdmissionRefusal | undefined => {
    if (draining) return { code: CloseCode.draining, reason: 'relay draining', outcome: 'drained' };
    if (config.maxActiveCalls > 0 && live >= config.maxActiveCalls) {
      // Past the pod's measured knee every call would get worse: refuse this one, Twilio runs the
      // after-stream redirect (apology, or the tenant's human), and the HPA adds pods.
      log.warn({ code: 'rate_limited', live, max: config.maxActiveCalls }, 'pod at capacity: media stream refused');
      return { code: CloseCode.overCapacity, reason: 'pod at capacity', outcome: 'rejected_capacity' };
    }
    live++;
    unstarted--;
    return undefined;
  };
  const onEnded = (b: CallBridge): void => {
    bridges.delete(b);
    if (b.admitted) live--;
    else unstarted--;
    if (live === 0) {
      const w = drainWaiters;
      drainWaiters = [];
      for (const f of w) f();
    }
  };

  const usageMetrics = metrics.usage;
  const prices = pricesFor(priceTable, config.usagePriceModel);
  if (!prices) {
    log.warn({ model: config.usagePriceModel, takenOn: priceTable.takenOn }, 'no price-table entry for the model: estimated costs are 0 (PRICE_TABLE_FILE, USAGE_PRICE_MODEL)');
  }
  const budgets = new BudgetGate({
    store: usageStore,
    metrics: usageMetrics,
    clock,
    log: log.child({ component: 'budget' }),
    voicemailActionUrl: `${config.publicUrl}/twilio/voicemail`,
  });
  const usage = new UsageTracker({
    store: usageStore,
    clock,
    metrics: usageMetrics,
    log: log.child({ component: 'usage' }),
    rates: prices ? tokenRates(prices) : undefined,
    flushMs: config.usageFlushSeconds * 1000,
    onRecorded: (tenantId) => {
      const t = tenants.byId(tenantId);
      if (t?.budget) void budgets.refresh(t);
    },
  });

  const bridgeDeps = {
    usage,
    listeners,
    clock,
    store,
    tools,
    metrics,
    log,
    model,
    authorise,
    admit,
    pod,
    limits: {
      twilioMaxBackpressureBytes: config.twilioMaxBackpressureBytes,
      modelMaxBufferedBytes: config.modelMaxBufferedBytes,
      twilioMaxMessageBytes: config.twilioMaxMessageBytes,
      callerAudioRingFrames: config.callerAudioRingFrames,
      maxCallMs: config.maxCallSeconds * 1000,
      modelConnectTimeoutMs: config.modelConnectTimeoutMs * Math.max(1, config.modelConnectAttempts),
      frameMetrics: config.frameMetrics,
      windDownMs: 15_000,
      modelSessionRenewMs: config.modelSessionRenewSeconds * 1000,
      startTimeoutMs: config.mediaStartTimeoutSeconds * 1000,
      modelStallMs: config.modelStallTimeoutMs,
    },
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
    isDraining: () => draining,
    tenantsReady: () => tenantRt?.ready() ?? true,
  };
  registerTwilioWebhooks(ctx, { budgets, ...(leases ? { leases } : {}) });
  registerOpsRoutes(ctx);
  if (adminTenants) registerAdminTenantRoutes(ctx, bearerAuth(config.adminToken), adminTenants);
  registerAdminCallRoutes(ctx, bearerAuth(config.adminToken), usageReader(usageStore, usage));
  registerAdminUsageRoutes(ctx, bearerAuth(config.adminToken), { store: usageStore, tracker: usage, priceTable, priceModel: config.usagePriceModel });
  // Heartbeat this pod's calls and reap those of pods that died (any survivor may do it, once).
  const stopHeartbeat = startPodHeartbeat({
    store,
    pod,
    clock,
    log,
    onReaped: (r) => metrics.callsTotal.labels('abandoned', 'unknown').inc(r.calls.length),
  });

  app.ws<SocketData>('/twilio/media', {
    compression: uws.DISABLED,
    // Twice the bridge's own limit: frames between 1x and 2x reach the bridge, which closes with
    // 1009 and counts them; past 2x uWS drops the connection itself (see close below).
    maxPayloadLength: config.twilioMaxMessageBytes * 2,
    // Twilio streams 50 messages/s; 30 s of silence on the socket means it is dead.
    idleTimeout: 32,
    sendPingsAutomatically: true,
    // Hard cap above our own soft cap (the bridge drops audio past twilioMaxBackpressureBytes).
    maxBackpressure: config.twilioMaxBackpressureBytes * 2,
    closeOnBackpressureLimit: false,
    maxLifetime: Math.ceil(config.maxCallSeconds / 60) + 1,
    upgrade(res: HttpResponse, req: HttpRequest, context) {
      // Headers die when this callback returns: read everything first.
      const peer = Buffer.from(res.getRemoteAddressAsText()).toString();
      const remote = clientAddress(peer, req.getHeader('x-forwarded-for') || undefined, config.trustedProxyHops);
      if (limiter && !limiter.admit(remote)) {
        metrics.webhooks.labels('media_upgrade', 'rate_limited').inc();
        log.warn({ code: 'rate_limited', remote }, 'media socket connection attempts over the limit');
        res.writeStatus('429 Too Many Requests').end();
        return;
      }
      if (config.maxUnstartedSockets > 0 && unstarted >= config.maxUnstartedSockets) {
        metrics.webhooks.labels('media_upgrade', 'too_many_unstarted').inc();
        log.warn({ code: 'rate_limited', remote, unstarted }, 'too many media sockets without an authorised start: upgrade refused');
        res.writeStatus('503 Service Unavailable').end();
        return;
      }
      const data: SocketData = {
        bridge: undefined,
        signature: req.getHeader('x-twilio-signature') || undefined,
        remote,
        refuse: draining ? { code: CloseCode.draining, reason: 'relay draining' } : undefined,
      };
      res.upgrade(
        data,
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open(ws) {
      const data = ws.getUserData();
      if (data.refuse) {
        log.info({ code: 'draining', remote: data.remote }, 'media stream refused');
        ws.end(data.refuse.code, data.refuse.reason);
        return;
      }
      sockets.add(ws);
      const twilio: TwilioSocket = {
        send: (text) => ws.send(text, false),
        bufferedAmount: () => ws.getBufferedAmount(),
        cork: (fn) => {
          ws.cork(fn);
        },
        end: (code, reason) => ws.end(code, reason),
      };
      const bridge = new CallBridge(twilio, bridgeDeps, data.signature, onEnded);
      data.bridge = bridge;
      bridges.add(bridge);
      unstarted++;
    },
    message(ws, message, isBinary) {
      ws.getUserData().bridge?.onTwilioMessage(Buffer.from(message), isBinary);
    },
    drain(ws) {
      ws.getUserData().bridge?.onTwilioDrain();
    },
    close(ws, code, message) {
      sockets.delete(ws);
      const bridge = ws.getUserData().bridge;
      if (!bridge) return;
      // uWS force-closes (1006) on frames it refuses before any message callback; those are
      // protocol errors, not hang-ups.
      if (code === 1006) {
        const why = Buffer.from(message).toString();
        if (why === 'Received invalid UTF-8') return bridge.onTwilioRefused('invalid_utf8', why);
        if (why === 'Received too big message') return bridge.onTwilioRefused('too_large', why);
      }
      bridge.onTwilioClose(code);
    },
  });

  app.any('/*', (res) => {
    res
      .writeStatus('404 Not Found')
      .writeHeader('content-type', 'application/json')
      .end('{"error":{"code":"not_found","message":"no such route"}}');
  });

  let listenSocket: us_listen_socket;
  try {
    listenSocket = await listenExclusive(uws, app, config.host, config.port);
  } catch (err) {
    // Release what was opened before the listen: nothing may outlive a relay that never started.
    await usage.close();
    stopHeartbeat();
    await sim?.close();
    await tenantRt?.close();
    if (!opts.metrics) metrics.close();
    if (!opts.store) await store.close();
    else redis?.disconnect();
    throw err;
  }
  const port = uws.us_socket_local_port(listenSocket);
  // The one start-up summary: what this process serves and with what, in one line.
  log.info(
    {
      port,
      host: config.host,
      publicUrl: config.publicUrl,
      provider: model.provider,
      ...(config.model.provider === 'sim' && !opts.model ? { simMode: config.model.mode } : {}),
      tenants: tenantRt && !tenantRt.ready() ? 'pending (tenant store unreachable)' : tenants.list().length,
      tenantsFile: config.tenantsFile ?? (config.model.provider === 'sim' ? 'none (demo tenant)' : 'none'),
      tenantsFileMode: config.tenantsFileMode,
      adminApi: config.adminToken ? 'on' : 'off',
      redis: config.redisUrl ? 'on' : 'off (in-memory)',
      drain: config.drainMode,
      drainTimeoutSeconds: config.drainTimeoutSeconds,
      maxActiveCalls: config.maxActiveCalls || 'no cap',
      uws: native ? `native (${uwsBuild})` : `JS fallback (slow, ${uwsBuild})`,
      node: process.version,
    },
    'relay listening',
  );

  let closed = false;
  const relay: Relay = {
    port,
    url: `http://127.0.0.1:${port}`,
    metrics,
    store,
    log,
    sim,
    native,
    activeCalls: () => live,
    get draining() {
      return draining;
    },
    async drain(timeoutMs = config.drainTimeoutSeconds * 1000) {
      draining = true;
      log.info({ live, unstarted, timeoutMs }, 'draining: refusing new streams, waiting for live calls');
      // Sockets without an authorised start are no calls: close them now, not at the drain timeout.
      for (const b of [...bridges]) if (!b.admitted) b.finish('drained', CloseCode.draining, 'relay draining');
      if (config.drainMode === 'migrate' && live > 0) {
        // Moved calls leave this pod as Twilio stops their streams; the rest run on as in `wait` mode.
        const movable = [...bridges].flatMap((b) => b.migratable() ?? []);
        void migrateForDrain(movable, clock.now() + timeoutMs, { config, streamUrl, control: callControl, store, metrics, clock, log: log.child({ component: 'migrator' }) });
      }
      if (live > 0) {
        await new Promise<void>((resolve) => {
          const cancel = clock.after(timeoutMs, resolve);
          drainWaiters.push(() => {
            cancel();
            resolve();
          });
        });
      }
      const remaining = live;
      for (const b of [...bridges]) b.finish('drained', CloseCode.goingAway, 'drain timeout');
      return { remaining };
    },
    async close() {
      if (closed) return;
      closed = true;
      draining = true;
      for (const b of [...bridges]) b.finish('drained', CloseCode.goingAway, 'relay closing');
      for (const ws of [...sockets]) {
        try {
          ws.end(CloseCode.goingAway, 'relay closing');
        } catch {
          // already closed
        }
      }
      uws.us_listen_socket_close(listenSocket);
      // The calls just ended wrote their usage; wait for it (and any retry) before Redis goes.
      await usage.close();
      stopHeartbeat();
      await sim?.close();
      if (!opts.metrics) metrics.close();
      await tenantRt?.close();
      if (!opts.store) await store.close(); // the Redis call store owns (and quits) the shared connection
      else redis?.disconnect();
    },
  };
  return relay;
}
