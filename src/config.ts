/**
 * The only reader of process.env: every variable of README's Configuration table parsed once with zod, derived
 * defaults filled in, and the result frozen. Everything else receives `Config` or a slice of it.
 * Over 400 lines because it is the one place that reads the environment: one schema entry per variable.
 */
import { randomBytes } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { posix } from 'node:path';
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { SwitchboardError } from './errors.js';

// Not z.coerce.boolean(): it reads "false" as true.
const bool = (def: 'true' | 'false') =>
  z
    .enum(['true', 'false', '1', '0'], { message: 'must be true or false' })
    .default(def)
    .transform((v) => v === 'true' || v === '1');

/**
 * Every numeric variable goes through here, one rule for all: an empty or blank value is unset (the
 * default; Helm and Kubernetes often render an unset value as ""), otherwise the value must be a
 * whole number in decimal digits (an optional leading minus): 0x64, 1e2, 1.5 or "100ms" are refused
 * with the value quoted, never read as 0 or as something else.
 */
const int = (def: number, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      const t = v?.trim();
      if (t === undefined || t === '') return def;
      if (!/^-?\d+$/.test(t)) {
        const hint = /^-?\d*\.\d+$/.test(t) ? 'must be a whole number' : 'must be a number written in decimal digits';
        ctx.addIssue({ code: 'custom', message: `${hint} (e.g. ${def}), not ${JSON.stringify(t.slice(0, 40))}` });
        return z.NEVER;
      }
      return Number(t);
    })
    .pipe(
      z
        .number()
        .min(min, { message: `must be at least ${min}` })
        .max(max, { message: `must be at most ${max}` }),
    );

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const url = (protocols: readonly string[]) =>
  z.string().refine(
    (v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    { message: `must be a URL starting with ${protocols.map((p) => p + '//').join(' or ')}` },
  );

const Env = z.object({
  PORT: int(8080, 1, 65535),
  HOST: z.string().min(1).default('0.0.0.0'),
  PUBLIC_URL: optionalString.pipe(url(['http:', 'https:']).optional()),
  REDIS_URL: optionalString.pipe(url(['redis:', 'rediss:']).optional()),
  /** Redis AUTH kept out of REDIS_URL (a Secret of its own); REDIS_USERNAME is the ACL user (Redis 6+). */
  REDIS_USERNAME: optionalString,
  REDIS_PASSWORD: optionalString,
  /** PEM CA bundle for a rediss:// server certificate from a private CA (Memorystore, in-house). */
  REDIS_TLS_CA_FILE: optionalString,
  MODEL_PROVIDER: optionalString.pipe(
    z.enum(['openai', 'azure', 'sim'], { message: 'must be openai, azure or sim' }).optional(),
  ),
  OPENAI_API_KEY: optionalString,
  OPENAI_REALTIME_URL: z.string().default('wss://api.openai.com/v1/realtime').pipe(url(['wss:', 'ws:'])),
  OPENAI_REALTIME_MODEL: z.string().min(1).default('gpt-realtime'),
  AZURE_OPENAI_ENDPOINT: optionalString.pipe(url(['https:', 'wss:', 'http:', 'ws:']).optional()),
  AZURE_OPENAI_API_KEY: optionalString,
  AZURE_OPENAI_DEPLOYMENT: optionalString,
  /** Set only for preview (beta-shape) Azure deployments, e.g. 2025-04-01-preview. Unset = GA /openai/v1. */
  AZURE_OPENAI_API_VERSION: optionalString,
  /**
   * The caller-transcript model sent in session.update; on Azure a deployment name. `none` turns
   * caller transcription off. Unset: gpt-4o-mini-transcribe.
   */
  REALTIME_TRANSCRIPTION_MODEL: optionalString,
  TENANTS_FILE: optionalString,
  /** `seed`: the file adds tenants the store lacks; `reconcile`: the file is the truth (docs/operators.md). */
  TENANTS_FILE_MODE: z.enum(['seed', 'reconcile'], { message: 'must be seed or reconcile' }).default('seed'),
  ADMIN_TOKEN: optionalString.pipe(
    z
      .string()
      .min(16, { message: 'must be at least 16 characters' })
      .refine((v) => v.split(',').every((t) => t.trim().length >= 16), {
        message: 'each comma-separated token must be at least 16 characters',
      })
      .optional(),
  ),
  /** `{env: NAME}` references the admin API accepts must start with this (the relay's own variables never do). */
  ADMIN_SECRET_ENV_PREFIX: z.string().regex(/^[A-Z][A-Z0-9_]*$/, { message: 'must be an upper-case variable-name prefix' }).default('TENANT_'),
  /** `{file: PATH}` references the admin API accepts must lie inside this directory. */
  ADMIN_SECRET_DIR: z.string().startsWith('/', { message: 'must be an absolute path' }).default('/etc/switchboard/twilio-tokens'),
  STREAM_TOKEN_SECRET: optionalString.pipe(
    z.string().min(32, { message: 'must be at least 32 characters' }).optional(),
  ),
  /** The secret being rotated out: tokens it signed still verify (rolling restarts refuse no call). */
  STREAM_TOKEN_SECRET_PREVIOUS: optionalString.pipe(
    z.string().min(32, { message: 'must be at least 32 characters' }).optional(),
  ),
  TWILIO_VALIDATE_SIGNATURES: bool('true'),
  /**
   * Media-socket connection attempts per minute per client address (0 = no limit). Twilio connects
   * from a limited set of addresses, so keep this well above the peak call arrival rate.
   */
  MEDIA_CONNECT_PER_MINUTE: int(1200, 0, 1_000_000),
  MEDIA_CONNECT_BURST: int(300, 1, 1_000_000),
  /** Let tenant webhook tools reach private/loopback addresses (development only: SSRF guard off). */
  WEBHOOK_TOOLS_ALLOW_PRIVATE: bool('false'),
  /** Proxies in front of the relay that append to X-Forwarded-For (0 = trust no header). */
  TRUSTED_PROXY_HOPS: int(0, 0, 10),
  DRAIN_TIMEOUT_SECONDS: int(3600, 0, 86_400),
  /** This pod's name in call records, heartbeats and migrations; unset: the host name (a Kubernetes pod's name). */
  POD_NAME: optionalString,
  /** `migrate` (move live calls to other pods through Twilio call updates; resume after a crash) or `wait`. */
  DRAIN_MODE: optionalString.pipe(z.enum(['migrate', 'wait'], { message: 'must be migrate or wait' }).optional()),
  /** Twilio's REST API (call updates: transfers, hang-ups, migrations); a simulator or proxy in tests. */
  TWILIO_API_BASE_URL: z.string().default('https://api.twilio.com').pipe(url(['https:', 'http:'])),
  /** Call updates in flight at once per Twilio account while migrating (Twilio limits REST concurrency per account). */
  MIGRATION_CONCURRENCY_PER_ACCOUNT: int(5, 1, 100),
  /** Attempts per call update (429 waits Retry-After, network errors and 5xx back off); then the call stays and drains. */
  MIGRATION_MAX_ATTEMPTS: int(4, 1, 10),
  /** How long a call in a tool call or an answer is waited for before it is left to drain (a goodbye or transfer is left to finish). */
  MIGRATION_BUSY_WAIT_SECONDS: int(20, 0, 600),
  /** After SIGTERM, wait this long before moving calls, so the load balancer stops sending streams here first. */
  MIGRATION_START_DELAY_MS: int(0, 0, 60_000),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      message: 'must be one of fatal, error, warn, info, debug, trace, silent',
    })
    .default('info'),
  /** `json` or `pretty` (human lines); unset: pretty when stdout is a terminal, else JSON. */
  LOG_FORMAT: optionalString.pipe(z.enum(['json', 'pretty'], { message: 'must be json or pretty' }).optional()),
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalString.pipe(url(['http:', 'https:']).optional()),
  OTEL_SERVICE_NAME: z.string().min(1).default('switchboard'),
  UWS_ALLOW_FALLBACK: bool('false'),
  /**
   * Largest HTTP request head uWS accepts (request line and headers); past it, 431. uWS reads this
   * variable itself when its addon loads (its own default is 4 KiB); ours matches Node's http server.
   */
  UWS_HTTP_MAX_HEADERS_SIZE: int(16 * 1024, 4 * 1024, 1024 * 1024),
  /** `realistic` paces replies like a person; `loadtest` answers at once with short audio (bench, k6). */
  SIM_MODEL_MODE: z
    .enum(['realistic', 'loadtest'], { message: 'must be realistic or loadtest' })
    .default('realistic'),
  MODEL_CONNECT_TIMEOUT_MS: int(5000, 100, 60_000),
  MODEL_CONNECT_ATTEMPTS: int(3, 1, 10),
  MAX_CALL_SECONDS: int(3600, 10, 4 * 3600),
  /** ws ping to the model every this many ms; no pong within MODEL_KEEPALIVE_TIMEOUT_MS cuts the socket (0 = off). */
  MODEL_KEEPALIVE_INTERVAL_MS: int(15_000, 0, 600_000),
  MODEL_KEEPALIVE_TIMEOUT_MS: int(5000, 50, 60_000),
  /** The caller has been talking, or the model has owed an answer, this long with no model event: it is stuck (0 = off). */
  MODEL_STALL_TIMEOUT_MS: int(8000, 0, 600_000),
  /** Re-open the model session (with the conversation) at the first pause after this long, before the 60-min cap (0 = off). */
  MODEL_SESSION_RENEW_SECONDS: int(3300, 0, 3590),
  /** Live (authorised) calls this pod takes before refusing new streams (0 = no cap); set from the bench's knee. */
  MAX_ACTIVE_CALLS: int(0, 0, 100_000),
  /** Seconds from a media-socket upgrade to its authorised `start`; past it the socket closes with 4007. */
  MEDIA_START_TIMEOUT_SECONDS: int(10, 1, 300),
  /** Media sockets without an authorised `start` held at once (0 = no cap); past it upgrades get 503. */
  MAX_UNSTARTED_SOCKETS: int(500, 0, 100_000),
  /** Per-frame relay-time histogram; off only to measure what measuring costs. */
  FRAME_METRICS: bool('true'),
  /** uWS per-socket send buffer cap toward Twilio; past it outbound audio is dropped, not queued. */
  TWILIO_MAX_BACKPRESSURE_BYTES: int(512 * 1024, 16 * 1024, 64 * 1024 * 1024),
  /** Model audio per mark toward Twilio (or a mark per longer delta); 0 = a mark after every delta. */
  TWILIO_MARK_INTERVAL_MS: int(100, 0, 1000),
  /** Upstream `ws` bufferedAmount past which caller audio is dropped (oldest first) instead of queued. */
  MODEL_MAX_BUFFERED_BYTES: int(256 * 1024, 16 * 1024, 64 * 1024 * 1024),
  /** Caller frames (20 ms each) per append to the model: fewer messages, up to (N-1) × 20 ms later. */
  MODEL_APPEND_FRAMES: int(2, 1, 3),
  /** Most model audio (ms) joined into one media message toward Twilio once its buffer is ahead; 0 = one per delta. */
  TWILIO_COALESCE_MS: int(0, 0, 60),
  /** Largest accepted Twilio media-socket message. Twilio's media frames are ~300 bytes. */
  TWILIO_MAX_MESSAGE_BYTES: int(64 * 1024, 1024, 16 * 1024 * 1024),
  /** Seconds of caller audio kept while the model connects or reconnects (the ring's size). */
  CALLER_AUDIO_RING_SECONDS: int(5, 1, 60),
  /** How often live calls' usage is written to the per-tenant buckets: a crash loses at most this much. */
  USAGE_FLUSH_SECONDS: int(30, 1, 3600),
  /** How long per-tenant usage buckets are kept (billing export window). */
  USAGE_RETENTION_DAYS: int(400, 1, 3650),
  /** JSON or YAML price table replacing or adding models to the built-in one (docs/operators.md). */
  PRICE_TABLE_FILE: optionalString,
  /** The price-table entry calls are costed at; default: the configured model or Azure deployment. */
  USAGE_PRICE_MODEL: optionalString,
});

/** Every variable the relay reads (README "Configuration" lists exactly these; a test checks it). */
export const ENV_VARIABLES: readonly string[] = Object.keys(Env.shape);

export type ModelConfig =
  | { provider: 'openai'; url: string; apiKey: string; model: string }
  | { provider: 'azure'; url: string; apiKey: string; deployment: string; shape: 'ga' | 'beta' }
  | { provider: 'sim'; mode: 'realistic' | 'loadtest' };

export interface Config {
  port: number;
  host: string;
  /** Base URL Twilio reaches, without trailing slash. */
  publicUrl: string;
  redisUrl: string | undefined;
  redisUsername: string | undefined;
  redisPassword: string | undefined;
  redisTlsCaFile: string | undefined;
  model: ModelConfig;
  /**
   * REALTIME_TRANSCRIPTION_MODEL: a model (on Azure, a deployment) name; null when set to `none`
   * (no caller transcription); undefined when unset (the protocol default).
   */
  transcriptionModel: string | null | undefined;
  modelConnectTimeoutMs: number;
  modelConnectAttempts: number;
  /** ws ping interval and pong deadline on the model socket; interval 0 = off. */
  modelKeepaliveIntervalMs: number;
  modelKeepaliveTimeoutMs: number;
  modelStallTimeoutMs: number;
  modelSessionRenewSeconds: number;
  tenantsFile: string | undefined;
  tenantsFileMode: 'seed' | 'reconcile';
  adminToken: string | undefined;
  /** Prefix every `{env}` secret reference given through the admin API must have. */
  adminSecretEnvPrefix: string;
  /** Directory every `{file}` secret reference given through the admin API must lie in (normalised, no trailing /). */
  adminSecretDir: string;
  streamTokenSecret: string;
  /** True when STREAM_TOKEN_SECRET was not given: tokens only verify on this process. */
  streamTokenSecretEphemeral: boolean;
  previousStreamTokenSecrets: readonly string[];
  validateSignatures: boolean;
  mediaConnectPerMinute: number;
  mediaConnectBurst: number;
  trustedProxyHops: number;
  webhookToolsAllowPrivate: boolean;
  drainTimeoutSeconds: number;
  /** POD_NAME; undefined: the host name. */
  podName: string | undefined;
  /**
   * `migrate`: a drain moves live calls to other pods, and a call whose pod died resumes through the
   * after-stream redirect; `wait`: calls stay to their end. Unset: `migrate` with Redis (shared call
   * state), else `wait`.
   */
  drainMode: 'migrate' | 'wait';
  /** Twilio REST origin, without trailing slash. */
  twilioApiBaseUrl: string;
  migration: { concurrencyPerAccount: number; maxAttempts: number; busyWaitMs: number; startDelayMs: number };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Unset: decided by whether stdout is a terminal (telemetry/logger.ts prettyLogs). */
  logFormat: 'json' | 'pretty' | undefined;
  otlpEndpoint: string | undefined;
  serviceName: string;
  allowUwsFallback: boolean;
  httpMaxHeaderBytes: number;
  maxCallSeconds: number;
  maxActiveCalls: number;
  mediaStartTimeoutSeconds: number;
  maxUnstartedSockets: number;
  frameMetrics: boolean;
  twilioMaxBackpressureBytes: number;
  twilioMarkIntervalMs: number;
  modelMaxBufferedBytes: number;
  modelAppendFrames: number;
  twilioCoalesceMs: number;
  twilioMaxMessageBytes: number;
  callerAudioRingFrames: number;
  usageFlushSeconds: number;
  usageRetentionDays: number;
  priceTableFile: string | undefined;
  /** The price-table model name calls are costed at. */
  usagePriceModel: string;
  /**
   * The environment as read at start, for resolving tenant secrets given by reference
   * (`{env: NAME}`) without other modules reading process.env. Never logged or returned.
   */
  secretEnv: Readonly<Record<string, string | undefined>>;
}

/** Loopback IP literals only (127.0.0.0/8, ::1): a name such as `127.attacker.example` resolves anywhere. */
function isLoopbackUrl(u: string): boolean {
  const host = new URL(u).hostname;
  if (host === '[::1]') return true;
  return isIPv4(host) && host.startsWith('127.');
}

/** The process environment: read here only, handed to loadConfig by the entry points (main, check). */
export function processEnvironment(): NodeJS.ProcessEnv {
  return process.env;
}

/**
 * Parse and validate the environment. Throws one SwitchboardError listing every bad variable.
 * `secrets: false` (`npm run check -- --no-secrets`) does not require the provider's API key.
 */
export function loadConfig(env: NodeJS.ProcessEnv = processEnvironment(), opts: { secrets?: boolean } = {}): Readonly<Config> {
  const r = Env.safeParse(env);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `${i.path.join('.') || 'environment'}: ${i.message}`);
    throw new SwitchboardError('config_invalid', lines.join('\n'));
  }
  const e = r.data;
  const problems: string[] = [];

  const provider = e.MODEL_PROVIDER ?? (e.OPENAI_API_KEY ? 'openai' : 'sim');
  let model: ModelConfig;
  if (provider === 'openai') {
    if (!e.OPENAI_API_KEY && opts.secrets !== false) problems.push('OPENAI_API_KEY: required when MODEL_PROVIDER is openai');
    if (e.OPENAI_REALTIME_URL.startsWith('ws:') && !isLoopbackUrl(e.OPENAI_REALTIME_URL)) {
      problems.push('OPENAI_REALTIME_URL: plain ws:// is allowed only for loopback hosts; use wss://');
    }
    model = { provider, url: e.OPENAI_REALTIME_URL, apiKey: e.OPENAI_API_KEY ?? '', model: e.OPENAI_REALTIME_MODEL };
  } else if (provider === 'azure') {
    if (!e.AZURE_OPENAI_ENDPOINT) problems.push('AZURE_OPENAI_ENDPOINT: required when MODEL_PROVIDER is azure');
    if (!e.AZURE_OPENAI_API_KEY && opts.secrets !== false) problems.push('AZURE_OPENAI_API_KEY: required when MODEL_PROVIDER is azure');
    if (!e.AZURE_OPENAI_DEPLOYMENT) problems.push('AZURE_OPENAI_DEPLOYMENT: required when MODEL_PROVIDER is azure');
    const endpoint = e.AZURE_OPENAI_ENDPOINT ?? 'https://invalid.example';
    if (/^(http|ws):/.test(endpoint) && !isLoopbackUrl(endpoint)) {
      problems.push('AZURE_OPENAI_ENDPOINT: plain http/ws is allowed only for loopback hosts; use https://');
    }
    model = {
      provider,
      url: azureRealtimeUrl(endpoint, e.AZURE_OPENAI_DEPLOYMENT ?? '', e.AZURE_OPENAI_API_VERSION),
      apiKey: e.AZURE_OPENAI_API_KEY ?? '',
      deployment: e.AZURE_OPENAI_DEPLOYMENT ?? '',
      shape: e.AZURE_OPENAI_API_VERSION ? 'beta' : 'ga',
    };
  } else {
    model = { provider: 'sim', mode: e.SIM_MODEL_MODE };
  }
  if (e.TENANTS_FILE_MODE === 'reconcile' && !e.TENANTS_FILE) {
    problems.push('TENANTS_FILE_MODE: reconcile needs TENANTS_FILE (the file it makes the truth)');
  }
  problems.push(...redisProblems(e.REDIS_URL, e.REDIS_USERNAME, e.REDIS_PASSWORD, e.REDIS_TLS_CA_FILE));
  // A migrated call continues on another pod from the state in Redis; in memory, nothing to continue from.
  if (e.DRAIN_MODE === 'migrate' && !e.REDIS_URL) problems.push('DRAIN_MODE: migrate needs REDIS_URL (the new pod reads the call from Redis)');
  if (e.TWILIO_API_BASE_URL.startsWith('http:') && !isLoopbackUrl(e.TWILIO_API_BASE_URL)) {
    problems.push('TWILIO_API_BASE_URL: plain http:// is allowed only for loopback hosts; use https://');
  }
  if (problems.length > 0) throw new SwitchboardError('config_invalid', problems.join('\n'));

  const publicUrl = (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, '');
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    publicUrl,
    redisUrl: e.REDIS_URL,
    redisUsername: e.REDIS_USERNAME,
    redisPassword: e.REDIS_PASSWORD,
    redisTlsCaFile: e.REDIS_TLS_CA_FILE,
    model: Object.freeze(model),
    transcriptionModel: e.REALTIME_TRANSCRIPTION_MODEL === 'none' ? null : e.REALTIME_TRANSCRIPTION_MODEL,
    modelConnectTimeoutMs: e.MODEL_CONNECT_TIMEOUT_MS,
    modelConnectAttempts: e.MODEL_CONNECT_ATTEMPTS,
    modelKeepaliveIntervalMs: e.MODEL_KEEPALIVE_INTERVAL_MS,
    modelKeepaliveTimeoutMs: e.MODEL_KEEPALIVE_TIMEOUT_MS,
    modelStallTimeoutMs: e.MODEL_STALL_TIMEOUT_MS,
    modelSessionRenewSeconds: e.MODEL_SESSION_RENEW_SECONDS,
    tenantsFile: e.TENANTS_FILE,
    tenantsFileMode: e.TENANTS_FILE_MODE,
    adminToken: e.ADMIN_TOKEN,
    adminSecretEnvPrefix: e.ADMIN_SECRET_ENV_PREFIX,
    adminSecretDir: posix.resolve(e.ADMIN_SECRET_DIR),
    streamTokenSecret: e.STREAM_TOKEN_SECRET ?? randomBytes(32).toString('base64url'),
    streamTokenSecretEphemeral: e.STREAM_TOKEN_SECRET === undefined,
    previousStreamTokenSecrets: Object.freeze(e.STREAM_TOKEN_SECRET_PREVIOUS ? [e.STREAM_TOKEN_SECRET_PREVIOUS] : []),
    validateSignatures: e.TWILIO_VALIDATE_SIGNATURES,
    mediaConnectPerMinute: e.MEDIA_CONNECT_PER_MINUTE,
    mediaConnectBurst: e.MEDIA_CONNECT_BURST,
    trustedProxyHops: e.TRUSTED_PROXY_HOPS,
    webhookToolsAllowPrivate: e.WEBHOOK_TOOLS_ALLOW_PRIVATE,
    drainTimeoutSeconds: e.DRAIN_TIMEOUT_SECONDS,
    podName: e.POD_NAME,
    drainMode: e.DRAIN_MODE ?? (e.REDIS_URL ? 'migrate' : 'wait'),
    twilioApiBaseUrl: e.TWILIO_API_BASE_URL.replace(/\/+$/, ''),
    migration: Object.freeze({
      concurrencyPerAccount: e.MIGRATION_CONCURRENCY_PER_ACCOUNT,
      maxAttempts: e.MIGRATION_MAX_ATTEMPTS,
      busyWaitMs: e.MIGRATION_BUSY_WAIT_SECONDS * 1000,
      startDelayMs: e.MIGRATION_START_DELAY_MS,
    }),
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
    serviceName: e.OTEL_SERVICE_NAME,
    allowUwsFallback: e.UWS_ALLOW_FALLBACK,
    httpMaxHeaderBytes: e.UWS_HTTP_MAX_HEADERS_SIZE,
    maxCallSeconds: e.MAX_CALL_SECONDS,
    maxActiveCalls: e.MAX_ACTIVE_CALLS,
    mediaStartTimeoutSeconds: e.MEDIA_START_TIMEOUT_SECONDS,
    maxUnstartedSockets: e.MAX_UNSTARTED_SOCKETS,
    frameMetrics: e.FRAME_METRICS,
    twilioMaxBackpressureBytes: e.TWILIO_MAX_BACKPRESSURE_BYTES,
    twilioMarkIntervalMs: e.TWILIO_MARK_INTERVAL_MS,
    modelMaxBufferedBytes: e.MODEL_MAX_BUFFERED_BYTES,
    modelAppendFrames: e.MODEL_APPEND_FRAMES,
    twilioCoalesceMs: e.TWILIO_COALESCE_MS,
    twilioMaxMessageBytes: e.TWILIO_MAX_MESSAGE_BYTES,
    callerAudioRingFrames: e.CALLER_AUDIO_RING_SECONDS * 50,
    usageFlushSeconds: e.USAGE_FLUSH_SECONDS,
    usageRetentionDays: e.USAGE_RETENTION_DAYS,
    priceTableFile: e.PRICE_TABLE_FILE,
    // The simulated model stands in for gpt-realtime, and is costed as it.
    usagePriceModel:
      e.USAGE_PRICE_MODEL ?? (model.provider === 'openai' ? model.model : model.provider === 'azure' ? model.deployment : 'gpt-realtime'),
    secretEnv: Object.freeze({ ...env }),
  });
}

/** The Redis variables that only make sense together with REDIS_URL, each problem one line. */
function redisProblems(redisUrl: string | undefined, username: string | undefined, password: string | undefined, caFile: string | undefined): string[] {
  const problems: string[] = [];
  const given = [username && 'REDIS_USERNAME', password && 'REDIS_PASSWORD', caFile && 'REDIS_TLS_CA_FILE'].filter(Boolean);
  if (!redisUrl) {
    if (given.length > 0) problems.push(`${given.join(', ')}: set only with REDIS_URL`);
    return problems;
  }
  const u = new URL(redisUrl);
  if (password && u.password) problems.push('REDIS_PASSWORD: REDIS_URL already carries a password; give it in one place');
  if (username && u.username) problems.push('REDIS_USERNAME: REDIS_URL already carries a user name; give it in one place');
  if (caFile && u.protocol !== 'rediss:') problems.push('REDIS_TLS_CA_FILE: needs a rediss:// REDIS_URL (TLS)');
  if (caFile && !existsSync(caFile)) problems.push(`REDIS_TLS_CA_FILE: ${caFile} does not exist`);
  return problems;
}

/**
 * Azure's two URL forms (docs/wire-formats.md §6): GA `/openai/v1/realtime?model=<deployment>`, or the
 * preview `/openai/realtime?api-version=…&deployment=…`, which speaks the beta event shape.
 */
export function azureRealtimeUrl(endpoint: string, deployment: string, apiVersion: string | undefined): string {
  const base = new URL(endpoint);
  base.protocol = base.protocol === 'http:' || base.protocol === 'ws:' ? 'ws:' : 'wss:';
  const root = base.origin;
  const dep = encodeURIComponent(deployment);
  return apiVersion
    ? `${root}/openai/realtime?api-version=${encodeURIComponent(apiVersion)}&deployment=${dep}`
    : `${root}/openai/v1/realtime?model=${dep}`;
}

/** The wss (or ws, for a plain-http dev base) URL of the media socket, as written in TwiML. */
export function mediaStreamUrl(config: Pick<Config, 'publicUrl'>): string {
  return config.publicUrl.replace(/^http/, 'ws') + '/twilio/media';
}

/**
 * The one environment variable the relay writes: uWebSockets.js v20.57 reads UWS_HTTP_MAX_HEADERS_SIZE
 * from the environment when its addon loads, so the validated value is handed to it there.
 */
export function setUwsMaxHeaderBytes(bytes: number): void {
  process.env['UWS_HTTP_MAX_HEADERS_SIZE'] = String(bytes);
}
