/**
 * A local stand-in for Twilio's REST call API, for tests, `npm run load` and outside harnesses
 * (point the relay's TWILIO_API_BASE_URL at it). Loopback only. It answers
 * `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` as api.twilio.com does:
 * HTTP Basic auth (401, code 20003), unknown or ended call (404, 20404), more than `maxConcurrent`
 * requests of one account in flight (429, 20429, `Retry-After`), a bad form (400), else 200 with the
 * call resource. Every request is recorded.
 *
 * Calls register while they are live. On an update it does what Twilio does to the call: the
 * current Media Stream gets `stop` and closes, then the new TwiML runs (a `<Connect><Stream>` opens
 * a new stream; `<Dial>`, `<Say>`, `<Hangup/>` end the stream life); `Status=completed` hangs up.
 * That happens before the HTTP answer, which can trail it by `answerDelayMs`.
 *
 * Callers reach it two ways: in-process (placeCall registers a handle) or, for callers that cannot
 * receive HTTP (k6), by polling `GET /sim/calls/{CallSid}/updates?after=N` while their stream runs
 * (`DELETE /sim/calls/{CallSid}` when the call is over). docs/wire-formats.md describes both.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { callUpdateFromForm, parseTwiml, type CallUpdate } from '../../src/sim/portable/twilio-http.js';
import type { CallHandle, CallRegistry } from '../../src/sim/sim-caller.js';

export type { CallHandle, CallRegistry, CallUpdate };

export interface RecordedRequest {
  method: string;
  path: string;
  authorization: string;
  contentType: string;
  form: Record<string, string>;
  /** From the path (empty when the path is not a call resource). */
  accountSid: string;
  callSid: string;
  /** Date.now() when the request arrived and when it was answered (0 until then). */
  receivedAt: number;
  answeredAt: number;
  /** The HTTP status answered (0 until then). */
  status: number;
  /** This account's requests in flight when it arrived, itself included. */
  inFlight: number;
}

export interface FakeTwilioApiOptions {
  /**
   * AccountSid -> auth token the API accepts (Basic auth user and password; the path's account
   * must be the user). Omitted: any Basic credentials whose user is the path's AccountSid.
   */
  accounts?: Record<string, string>;
  /** Requests of one account in flight beyond this get 429 / 20429 (default 100). */
  maxConcurrent?: number;
  /** `Retry-After` seconds on a 429 (default 1). */
  retryAfterS?: number;
  /** Answer each request this long after acting on it (default 0). */
  answerDelayMs?: number;
}

export interface FakeTwilioApi extends CallRegistry {
  /** http://127.0.0.1:PORT — the relay's TWILIO_API_BASE_URL. */
  url: string;
  requests: RecordedRequest[];
  /** Answer every request with this status/body until cleared (e.g. 404 / 20404, 503). */
  failWith(status: number, body: Record<string, unknown>, retryAfterS?: number): void;
  clearFailure(): void;
  /** Answer the next `n` call requests with 429 / 20429 and `Retry-After` (a 429 storm). */
  rateLimit(n: number, retryAfterS?: number): void;
  /** Resolves with the next request recorded. */
  next(): Promise<RecordedRequest>;
  /** `live`, `ended` (hung up or unregistered), or undefined for a call never registered. */
  callState(callSid: string): 'live' | 'ended' | undefined;
  /** The CallSids of the calls live now (registered or polling, not ended). */
  liveCalls(): string[];
  /** Answer each request this long after acting on it. */
  answerDelayMs: number;
  /** The most requests of one account ever in flight at once. */
  readonly maxInFlightSeen: number;
  close(): Promise<void>;
}

interface CallEntry {
  accountSid: string | undefined;
  handle: CallHandle | undefined;
  /** Updates for a polling caller, numbered from 1. */
  queue: Array<{ seq: number; update: CallUpdate }>;
  seq: number;
  ended: boolean;
}

const CALL_PATH = /^\/2010-04-01\/Accounts\/(AC[0-9a-fA-F]{32})\/Calls\/(CA[0-9a-fA-F]{32})\.json$/;
const SIM_PATH = /^\/sim\/calls\/(CA[0-9a-fA-F]{32})(\/updates)?$/;
/** A request body larger than this is refused (413): TwiML is at most a few KB. */
const MAX_BODY = 64 * 1024;
/** Updates kept per polling call (a bound; a caller polls every few hundred ms). */
const MAX_QUEUE = 32;

function twilioError(status: number, code: number, message: string): Record<string, unknown> {
  return { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status };
}

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => resolve(size > MAX_BODY ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(undefined));
  });
}

function basicUser(header: string): { user: string; password: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Whether the TwiML leaves the call up without a stream (a `<Dial>` bridges it elsewhere). */
function keepsCallUp(twiml: string): boolean {
  const t = parseTwiml(twiml);
  return t.kind === 'stream' || t.verbs.some((v) => v.verb === 'Dial' || v.verb === 'Redirect');
}

export async function startFakeTwilioApi(opts: FakeTwilioApiOptions = {}): Promise<FakeTwilioApi> {
  const maxConcurrent = opts.maxConcurrent ?? 100;
  const requests: RecordedRequest[] = [];
  const waiters: ((r: RecordedRequest) => void)[] = [];
  const calls = new Map<string, CallEntry>();
  const inFlight = new Map<string, number>();
  let failure: { status: number; body: Record<string, unknown>; retryAfterS: number | undefined } | undefined;
  let limited = 0;
  let limitedRetryAfterS = opts.retryAfterS ?? 1;
  let maxInFlightSeen = 0;

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    res.statusCode = status;
    res.setHeader('content-type', 'application/json');
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    res.end(JSON.stringify(body));
  };

  function entry(callSid: string): CallEntry {
    let e = calls.get(callSid);
    if (!e) {
      e = { accountSid: undefined, handle: undefined, queue: [], seq: 0, ended: false };
      calls.set(callSid, e);
    }
    return e;
  }

  function deliver(e: CallEntry, u: CallUpdate): void {
    if (e.handle) {
      e.handle.update(u);
      return;
    }
    e.seq++;
    e.queue.push({ seq: e.seq, update: u });
    if (e.queue.length > MAX_QUEUE) e.queue.shift();
  }

  /** The sim control channel for polling callers (k6). */
  function simRoute(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const m = SIM_PATH.exec(url.pathname);
    if (!m) return send(res, 404, { message: `no such route: ${url.pathname}` });
    const e = entry(m[1]!);
    if (req.method === 'DELETE' && !m[2]) {
      e.ended = true;
      e.queue = [];
      return send(res, 200, { ended: true });
    }
    if (req.method !== 'GET' || !m[2]) return send(res, 405, { message: 'GET /sim/calls/{CallSid}/updates or DELETE /sim/calls/{CallSid}' });
    const account = url.searchParams.get('account');
    if (account) e.accountSid = account;
    const after = Number(url.searchParams.get('after') ?? '0');
    const updates = e.queue.filter((q) => q.seq > (Number.isFinite(after) ? after : 0));
    send(res, 200, { callSid: m[1], ended: e.ended, updates });
  }

  async function callRoute(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const m = CALL_PATH.exec(url.pathname);
    const rec: RecordedRequest = {
      method: req.method ?? '',
      path: url.pathname,
      authorization: req.headers.authorization ?? '',
      contentType: req.headers['content-type'] ?? '',
      form: {},
      accountSid: m?.[1] ?? '',
      callSid: m?.[2] ?? '',
      receivedAt: Date.now(),
      answeredAt: 0,
      status: 0,
      inFlight: 0,
    };
    const account = rec.accountSid;
    const busy = (inFlight.get(account) ?? 0) + 1;
    inFlight.set(account, busy);
    maxInFlightSeen = Math.max(maxInFlightSeen, busy);
    rec.inFlight = busy;
    const body = await readBody(req);
    rec.form = Object.fromEntries(new URLSearchParams(body ?? ''));
    requests.push(rec);
    waiters.shift()?.(rec);

    const [status, answer, headers] = act(rec, body, busy, req.method ?? '');
    const finish = (): void => {
      inFlight.set(account, (inFlight.get(account) ?? 1) - 1);
      rec.status = status;
      rec.answeredAt = Date.now();
      send(res, status, answer, { 'Twilio-Concurrent-Requests': String(busy), ...headers });
    };
    // Refusals (bad credentials, over the limit) answer at once; what was acted on can trail.
    if (fake.answerDelayMs > 0 && status !== 401 && status !== 429) setTimeout(finish, fake.answerDelayMs);
    else finish();
  }

  /** Decide the answer and act on the call (before answering, as Twilio stops the stream first). */
  function act(rec: RecordedRequest, body: string | undefined, busy: number, method: string): [number, unknown, Record<string, string>?] {
    if (!rec.callSid) return [404, twilioError(404, 20404, `The requested resource ${rec.path} was not found`)];
    if (body === undefined) return [413, twilioError(413, 20001, 'request body too large')];
    const creds = basicUser(rec.authorization);
    const known = opts.accounts;
    const authed = creds !== undefined && creds.user === rec.accountSid && (known === undefined ? creds.password !== '' : known[rec.accountSid] === creds.password);
    if (!authed) return [401, twilioError(401, 20003, 'Authenticate'), { 'WWW-Authenticate': 'Basic realm="Twilio API"' }];
    const retry = (s: number): Record<string, string> => ({ 'Retry-After': String(s) });
    if (limited > 0) {
      limited--;
      return [429, twilioError(429, 20429, 'Too Many Requests'), retry(limitedRetryAfterS)];
    }
    if (busy > maxConcurrent) return [429, twilioError(429, 20429, 'Too Many Requests'), retry(opts.retryAfterS ?? 1)];
    if (failure) return [failure.status, failure.body, failure.retryAfterS !== undefined ? retry(failure.retryAfterS) : {}];
    const e = calls.get(rec.callSid);
    const gone = (): [number, unknown] => [404, twilioError(404, 20404, `The requested resource ${rec.path} was not found`)];
    if (!e || (e.accountSid !== undefined && e.accountSid !== rec.accountSid)) return gone();
    const resource = (status: string): Record<string, unknown> => ({
      sid: rec.callSid,
      account_sid: rec.accountSid,
      status,
      api_version: '2010-04-01',
      uri: rec.path,
    });
    if (method === 'GET') return [200, resource(e.ended ? 'completed' : 'in-progress')];
    if (method !== 'POST') return [405, twilioError(405, 20004, 'Method not allowed')];
    if (e.ended) return gone();
    const parsed = callUpdateFromForm(rec.form);
    if (!parsed.ok) return [400, twilioError(400, parsed.code, parsed.message)];
    const u = parsed.update;
    if (u.kind === 'status' || (u.kind === 'twiml' && !keepsCallUp(u.twiml))) e.ended = true;
    deliver(e, u);
    return [200, resource(u.kind === 'status' ? 'completed' : 'in-progress')];
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname.startsWith('/sim/')) {
      req.resume();
      simRoute(req, res, url);
      return;
    }
    callRoute(req, res, url).catch((err: unknown) => send(res, 500, twilioError(500, 20500, String(err))));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const fake: FakeTwilioApi = {
    url: `http://127.0.0.1:${port}`,
    requests,
    failWith(status, body, retryAfterS) {
      failure = { status, body, retryAfterS };
    },
    clearFailure() {
      failure = undefined;
    },
    rateLimit(n, retryAfterS = opts.retryAfterS ?? 1) {
      limited = n;
      limitedRetryAfterS = retryAfterS;
    },
    next: () => new Promise((resolve) => waiters.push(resolve)),
    registerCall(callSid, handle, accountSid) {
      const e = entry(callSid);
      e.handle = handle;
      e.accountSid = accountSid;
      e.ended = false;
      return () => {
        if (e.handle === handle) {
          e.handle = undefined;
          e.ended = true;
        }
      };
    },
    callState(callSid) {
      const e = calls.get(callSid);
      return e ? (e.ended ? 'ended' : 'live') : undefined;
    },
    liveCalls: () => [...calls].filter(([, e]) => !e.ended).map(([sid]) => sid),
    answerDelayMs: opts.answerDelayMs ?? 0,
    get maxInFlightSeen() {
      return maxInFlightSeen;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return fake;
}
