/**
 * What tests of calls that move between pods share: one real Redis, the loopback service in front
 * of the relays (their common PUBLIC_URL, as a Kubernetes Service whose endpoints follow /readyz),
 * the fake Twilio REST API that moves calls (TWILIO_API_BASE_URL), and a reader of the call records.
 * Relays join it in-process (startTestRelay) or as processes (startRelayProcess) with relayEnv().
 */
import { startFakeTwilioApi, type FakeTwilioApi, type FakeTwilioApiOptions } from './fake-twilio-api.js';
import { startLoopbackService, type LoopbackService } from './loopback-service.js';
import { placeCall, type CallReport, type PlaceCallOptions } from '../../src/sim/sim-caller.js';
import { RedisCallStore } from '../../src/store/index.js';
import { startRedisServer, type RedisServer } from './redis-server.js';
import { demo } from './relay.js';

/**
 * Point the service at exactly these relays (base URLs): the others leave it at once; resolves once
 * every one of these answers ready (bounded).
 */
export async function routeTo(svc: LoopbackService, urls: readonly string[], timeoutMs = 8000): Promise<void> {
  for (const b of svc.backends()) if (!urls.includes(b.url)) svc.remove(b.url);
  for (const u of urls) svc.add(u);
  await svc.waitFor((bs) => bs.length === urls.length && bs.every((b) => b.ready), timeoutMs, `${urls.join(', ')} ready`);
}

export interface TestDeployment {
  readonly redis: RedisServer;
  readonly svc: LoopbackService;
  /** The fake Twilio REST API; startApi() replaces it. */
  readonly api: FakeTwilioApi;
  /** The call records, as any pod reads them. */
  readonly calls: RedisCallStore;
  /** A relay's place in it: PUBLIC_URL (the service), REDIS_URL, TWILIO_API_BASE_URL. */
  relayEnv(): Record<string, string>;
  /** Point the service at exactly these relays, once they answer ready. */
  routeTo(...urls: string[]): Promise<void>;
  /** A call to the demo tenant through the service, moved by Twilio as this deployment's API is told. */
  placeCall(o: Omit<PlaceCallOptions, 'baseUrl' | 'to' | 'accountSid' | 'authToken' | 'twilioApi'>): Promise<CallReport>;
  /** A fresh fake Twilio API (other accounts, say) in place of the current one, which is closed. */
  startApi(opts: FakeTwilioApiOptions): Promise<FakeTwilioApi>;
  close(): Promise<void>;
}

/**
 * Start it: the API knows the demo tenant's account unless `api` says otherwise. The service polls
 * /readyz once a second: on a busy machine a slower answer than two polls would take a relay out.
 */
export async function startTestDeployment(o: { api?: FakeTwilioApiOptions } = {}): Promise<TestDeployment> {
  const redis = await startRedisServer();
  const svc = await startLoopbackService({ pollMs: 1000 });
  let api = await startFakeTwilioApi(o.api ?? { accounts: { [demo.accountSid]: demo.authToken } });
  const calls = RedisCallStore.connect(redis.url);
  return {
    redis,
    svc,
    get api() {
      return api;
    },
    calls,
    relayEnv: () => ({ PUBLIC_URL: svc.url, REDIS_URL: redis.url, TWILIO_API_BASE_URL: api.url }),
    routeTo: (...urls) => routeTo(svc, urls),
    placeCall: (call) => placeCall({ baseUrl: svc.url, ...demo, twilioApi: api, ...call }),
    async startApi(opts) {
      await api.close();
      api = await startFakeTwilioApi(opts);
      return api;
    },
    async close() {
      await calls.close();
      await api.close();
      await svc.close();
      await redis.stop();
    },
  };
}
