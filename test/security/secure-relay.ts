/**
 * A relay with the tenant security pieces wired as the composition root will wire them: the
 * store-backed registry, concurrency leases (webhook + lifecycle listener), and the admin routes.
 * Until app.ts registers the webhook and admin routes with leases itself, they run here on a
 * second uWS app sharing the relay's registry, store, metrics and PUBLIC_URL; the media socket is
 * the relay's own. Tests reach the webhooks at `hooks` and the media socket through the TwiML URL.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { us_listen_socket } from 'uWebSockets.js';
import { mediaStreamUrl, loadConfig, type Config } from '../../src/config.js';
import type { RelayContext } from '../../src/server/context.js';
import { bearerAuth } from '../../src/server/admin-auth.js';
import { startRelay, loadUws, type Relay } from '../../src/server/index.js';
import { registerAdminTenantRoutes } from '../../src/server/routes/admin-tenants.js';
import { registerTwilioWebhooks } from '../../src/server/routes/twilio-webhooks.js';
import type { CallStore } from '../../src/store/call-store.js';
import { MemoryCallStore } from '../../src/store/memory-store.js';
import { createRedis } from '../../src/store/redis-connection.js';
import { silentLogger } from '../../src/telemetry/index.js';
import { openTenants, type TenantRuntime } from '../../src/server/open-tenants.js';
import { BuiltinToolRunner } from '../../src/tools/index.js';
import { computeTwilioSignature } from '../../src/twilio/index.js';
import { TEST_SECRET } from '../helpers/relay.js';
import { freePort } from '../helpers/redis-server.js';

export interface SecureRelay {
  readonly relay: Relay;
  readonly config: Readonly<Config>;
  /** http base of the webhook and admin routes. */
  readonly hooks: string;
  readonly runtime: TenantRuntime;
  close(): Promise<void>;
}

export interface SecureRelayOptions {
  /** Relay environment on top of the test defaults (ADMIN_TOKEN, …). */
  env?: Record<string, string>;
  /** Where tenant secret references resolve. */
  tenantEnv?: NodeJS.ProcessEnv;
  tenantsFile?: string;
  /** Share tenants, leases and one-time tokens through this Redis (two relays = two pods). */
  redisUrl?: string;
  keyPrefix?: string;
  log?: Logger;
}

/**
 * The CallStore as pods sharing Redis see it for one-time tokens (SET NX), the rest in memory:
 * enough for replay across pods without depending on the Redis call store's other methods.
 */
function sharedOnce(store: CallStore, redis: Redis): CallStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'consumeOnce') {
        return async (id: string, ttlSeconds: number) => (await redis.set(`once:${id}`, '1', 'EX', ttlSeconds, 'NX')) === 'OK';
      }
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
}

export async function startSecureRelay(o: SecureRelayOptions = {}): Promise<SecureRelay> {
  const log = o.log ?? silentLogger();
  const port = await freePort();
  const config = loadConfig({
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    SIM_MODEL_MODE: 'loadtest',
    STREAM_TOKEN_SECRET: TEST_SECRET,
    LOG_LEVEL: 'silent',
    ...o.env,
  });
  const prefix = o.keyPrefix ?? 'sb:';
  const redis = o.redisUrl ? createRedis(o.redisUrl, { keyPrefix: prefix }) : undefined;
  const runtime = await openTenants({
    tenantsFile: o.tenantsFile,
    provider: config.model.provider,
    env: o.tenantEnv ?? {},
    log,
    ...(redis ? { redis, channel: `${prefix}tenants-changed` } : {}),
  });
  const memory = new MemoryCallStore();
  const store = redis ? sharedOnce(memory, redis) : memory;
  const relay = await startRelay(config, { log, tenants: runtime.registry, store, listeners: [runtime.leases] });

  const { uws } = loadUws({ allowFallback: false });
  const app = uws.App();
  const ctx: RelayContext = {
    app,
    config,
    log,
    metrics: relay.metrics,
    store,
    tenants: runtime.registry,
    tools: new BuiltinToolRunner(),
    clock: { now: () => Date.now(), mono: () => performance.now(), after: (ms, fn) => { const t = setTimeout(fn, ms); return () => clearTimeout(t); } },
    pod: 'test',
    streamUrl: mediaStreamUrl(config),
    isDraining: () => false,
    tenantsReady: () => true,
  };
  registerTwilioWebhooks(ctx, { leases: runtime.leases });
  registerAdminTenantRoutes(ctx, bearerAuth(config.adminToken), runtime.registry);
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json').end('{"error":{"code":"not_found","message":"no such route"}}');
  });
  const listen = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('cannot listen'))));
  });
  const hooks = `http://127.0.0.1:${uws.us_socket_local_port(listen)}`;
  return {
    relay,
    config,
    hooks,
    runtime,
    async close() {
      uws.us_listen_socket_close(listen);
      await relay.close();
      await runtime.close();
      await memory.close();
      redis?.disconnect();
    },
  };
}

// --- tenants and signed requests shared by the security tests ---------------------------------

export const ACME = { to: '+14155550100', accountSid: 'AC' + 'a'.repeat(32), authToken: 'acme-auth-token-value-123' };
export const BETA = { to: '+14155550200', accountSid: 'AC' + 'a'.repeat(32), authToken: 'beta-auth-token-value-456' };

/** A TENANTS_FILE with acme and beta (same account, auth tokens by env reference). */
export function writeTenantsFile(o: { acmeMaxConcurrentCalls?: number } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'sb-sec-'));
  const file = join(dir, 'tenants.yaml');
  writeFileSync(
    file,
    `tenants:
  - id: acme
    displayName: Acme
    phoneNumbers: ['${ACME.to}']
    maxConcurrentCalls: ${o.acmeMaxConcurrentCalls ?? 50}
    twilio: {accountSid: ${ACME.accountSid}, authToken: {env: ACME_TOKEN}}
  - id: beta
    displayName: Beta
    phoneNumbers: ['${BETA.to}']
    twilio: {accountSid: ${BETA.accountSid}, authToken: {env: BETA_TOKEN}}
`,
  );
  return file;
}
export const TENANT_ENV = { ACME_TOKEN: ACME.authToken, BETA_TOKEN: BETA.authToken };

/** POST a form webhook signed over the relay's PUBLIC_URL, as Twilio would. */
export async function signed(
  sr: SecureRelay,
  path: string,
  fields: Record<string, string>,
  o: { authToken?: string; signature?: string | null } = {},
): Promise<{ status: number; body: string }> {
  const sig = o.signature === undefined ? computeTwilioSignature(o.authToken ?? ACME.authToken, sr.config.publicUrl + path, fields) : o.signature;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (sig !== null) headers['x-twilio-signature'] = sig;
  const res = await fetch(sr.hooks + path, { method: 'POST', headers, body: new URLSearchParams(fields).toString() });
  return { status: res.status, body: await res.text() };
}

export const voiceFields = (callSid: string, to = ACME.to, accountSid = ACME.accountSid): Record<string, string> => ({
  AccountSid: accountSid,
  ApiVersion: '2010-04-01',
  CallSid: callSid,
  CallStatus: 'ringing',
  Direction: 'inbound',
  From: '+15005550100',
  To: to,
});

