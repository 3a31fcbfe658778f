/**
 * Twilio REST call control through the `twilio` SDK: hand a live call to a human by replacing its
 * TwiML, or hang it up. Which call and why is the tools' business; this file owns the REST calls.
 * The SDK is imported on the first REST call, not at start: most pods never make one, and it is a
 * large share of the relay's fixed memory (docs/performance.md).
 */
import type twilio from 'twilio';
import type { Logger } from 'pino';
import { errorMessage, SwitchboardError } from '../errors.js';
import { dialTwiml } from './twiml.js';

/** The credentials of the Twilio account that owns the call (a tenant's). */
export interface TwilioAccount {
  accountSid: string;
  authToken: string;
}

/** `updated`: Twilio accepted the change; `already_ended`: the call was gone (404 / 20404), nothing to do. */
export type CallControlResult = 'updated' | 'already_ended';

/**
 * How a call update for a migration went, as a value (the migrator decides what to retry):
 * `rate_limited` is a 429 (Twilio code 20429) with its Retry-After; `refused` a 4xx that no retry
 * fixes (credentials: 401 / 20003, permissions, a bad request); `failed` a 5xx, a timeout or no answer.
 */
export type CallUpdateOutcome =
  | { kind: 'updated' }
  | { kind: 'already_ended' }
  | { kind: 'rate_limited'; retryAfterMs: number | undefined }
  | { kind: 'refused'; status: number; twilioCode: number | undefined; message: string }
  | { kind: 'failed'; status: number | undefined; message: string };

export interface CallControl {
  /** Replace the call's TwiML with `[<Say>say</Say>]<Dial callerId>to</Dial>`: Twilio ends the media stream and dials. */
  transfer(account: TwilioAccount, callSid: string, o: { to: string; say?: string; callerId?: string }): Promise<CallControlResult>;
  /** `Status=completed`. */
  hangUp(account: TwilioAccount, callSid: string): Promise<CallControlResult>;
  /**
   * Replace the call's TwiML with `twiml` (a resume `<Connect><Stream>`): Twilio stops the current
   * media stream and runs it while the caller stays on the line. One attempt; never throws.
   */
  migrate(account: TwilioAccount, callSid: string, twiml: string): Promise<CallUpdateOutcome>;
}

export interface TwilioCallControlOptions {
  /**
   * Send REST requests here instead of https://api.twilio.com (tests: a local fake on
   * http://127.0.0.1:PORT). The SDK still builds, authenticates and encodes every request.
   */
  apiBaseUrl?: string;
  /** Per-request timeout (default 5 s): a transfer that hangs is worse than one that fails. */
  timeoutMs?: number;
  log?: Logger;
}

type TwilioClient = ReturnType<typeof twilio>;
type HttpClient = NonNullable<NonNullable<Parameters<typeof twilio>[2]>['httpClient']>;

/** `Retry-After` as seconds or an HTTP date, in ms from `now`; undefined when absent or unreadable. */
export function retryAfterMs(header: string | undefined, now: number): number | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  const v = header.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const CALL_SID_IN_URI = /\/Calls\/(CA[0-9a-fA-F]{32})\.json/;

/**
 * The SDK's own RequestClient, with the API origin swapped when a base URL is given (Twilio's client
 * offers `edge`/`region`, hostname rewrites within twilio.com, but no base URL; a custom `httpClient`
 * is its supported seam), and a 429's `Retry-After` kept per CallSid: the SDK's RestException drops
 * response headers, and a call has one update in flight at a time.
 */
function pacedHttpClient(sdk: typeof twilio, base: string | undefined, timeoutMs: number, retryAfter: Map<string, string>): HttpClient {
  const inner = new sdk.RequestClient({ timeout: timeoutMs });
  const origin = base === undefined ? undefined : new URL(base);
  return {
    async request(opts: Parameters<InstanceType<typeof twilio.RequestClient>['request']>[0]) {
      const u = new URL(opts.uri);
      if (origin) {
        u.protocol = origin.protocol;
        u.host = origin.host;
      }
      const res = await inner.request({ ...opts, uri: u.toString() });
      const sid = CALL_SID_IN_URI.exec(u.pathname)?.[1];
      if (sid !== undefined && res.statusCode === 429) {
        const h = (res.headers ?? {}) as Record<string, unknown>;
        const v = h['retry-after'] ?? h['Retry-After'];
        if (typeof v === 'string' || typeof v === 'number') retryAfter.set(sid, String(v));
      }
      return res;
    },
  } as unknown as HttpClient;
}

/** A REST error from the SDK: `status` (HTTP) and `code` (Twilio's, e.g. 20404). */
function restError(err: unknown): { status?: number; code?: number } {
  if (err && typeof err === 'object') {
    const e = err as { status?: unknown; code?: unknown };
    return {
      ...(typeof e.status === 'number' ? { status: e.status } : {}),
      ...(typeof e.code === 'number' ? { code: e.code } : {}),
    };
  }
  return {};
}

export class TwilioCallControl implements CallControl {
  private readonly clients = new Map<string, TwilioClient>();
  private readonly timeoutMs: number;
  /** CallSid -> Retry-After of its last 429, read once by migrate(). */
  private readonly retryAfter = new Map<string, string>();

  constructor(private readonly o: TwilioCallControlOptions = {}) {
    this.timeoutMs = o.timeoutMs ?? 5000;
  }

  private async client(a: TwilioAccount): Promise<TwilioClient> {
    const key = `${a.accountSid}:${a.authToken}`;
    let c = this.clients.get(key);
    if (!c) {
      const sdk = (await import('twilio')).default;
      c = this.clients.get(key); // another request may have made it while the SDK loaded
      if (c) return c;
      c = sdk(a.accountSid, a.authToken, {
        timeout: this.timeoutMs,
        // The SDK falls back to TWILIO_* variables; config.ts is our only reader of the environment.
        env: {},
        httpClient: pacedHttpClient(sdk, this.o.apiBaseUrl, this.timeoutMs, this.retryAfter),
      });
      this.clients.set(key, c);
    }
    return c;
  }

  transfer(account: TwilioAccount, callSid: string, o: { to: string; say?: string; callerId?: string }): Promise<CallControlResult> {
    const twiml = dialTwiml({ to: o.to, ...(o.say !== undefined ? { say: o.say } : {}), ...(o.callerId !== undefined ? { callerId: o.callerId } : {}) });
    return this.update(account, callSid, { twiml }, 'transfer');
  }

  hangUp(account: TwilioAccount, callSid: string): Promise<CallControlResult> {
    return this.update(account, callSid, { status: 'completed' }, 'hang_up');
  }

  async migrate(account: TwilioAccount, callSid: string, twiml: string): Promise<CallUpdateOutcome> {
    this.retryAfter.delete(callSid);
    try {
      await (await this.client(account)).calls(callSid).update({ twiml });
      this.o.log?.info({ callSid, op: 'migrate' }, 'twilio call updated');
      return { kind: 'updated' };
    } catch (err) {
      const { status, code } = restError(err);
      const header = this.retryAfter.get(callSid);
      this.retryAfter.delete(callSid);
      if (status === 404 || code === 20404 || code === 21220) return { kind: 'already_ended' };
      if (status === 429 || code === 20429) return { kind: 'rate_limited', retryAfterMs: retryAfterMs(header, Date.now()) };
      if (status !== undefined && status >= 400 && status < 500) {
        return { kind: 'refused', status, twilioCode: code, message: errorMessage(err) };
      }
      return { kind: 'failed', status, message: errorMessage(err) };
    }
  }

  private async update(
    account: TwilioAccount,
    callSid: string,
    params: { twiml: string } | { status: 'completed' },
    op: string,
  ): Promise<CallControlResult> {
    try {
      await (await this.client(account)).calls(callSid).update(params);
      this.o.log?.info({ callSid, op }, 'twilio call updated');
      return 'updated';
    } catch (err) {
      const { status, code } = restError(err);
      // 20404: the call no longer exists (hung up meanwhile). Nothing left to transfer or end.
      if (status === 404 || code === 20404) return 'already_ended';
      // 21220: "Call is not in-progress": it completed between our decision and the request.
      if (code === 21220) return 'already_ended';
      this.o.log?.warn({ code: 'tool_failed', callSid, op, status, twilioCode: code, err: errorMessage(err) }, 'twilio call update failed');
      throw new SwitchboardError('tool_failed', `twilio ${op} failed${status ? ` (HTTP ${status})` : ''}: ${errorMessage(err)}`, status === undefined || status >= 500 || status === 429, {
        cause: err,
      });
    }
  }
}
