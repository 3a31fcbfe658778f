/**
 * Twilio REST call control through the `twilio` SDK: hand a live call to a human by replacing its
 * TwiML, or hang it up. Which call and why is the tools' business; this file owns the REST calls.
 */
import twilio from 'twilio';
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

export interface CallControl {
  /** Replace the call's TwiML with `[<Say>say</Say>]<Dial callerId>to</Dial>`: Twilio ends the media stream and dials. */
  transfer(account: TwilioAccount, callSid: string, o: { to: string; say?: string; callerId?: string }): Promise<CallControlResult>;
  /** `Status=completed`. */
  hangUp(account: TwilioAccount, callSid: string): Promise<CallControlResult>;
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

/**
 * The SDK's own RequestClient with the API origin swapped. Twilio's client offers `edge`/`region`
 * (hostname rewrites within twilio.com) but no base URL; a custom `httpClient` is its supported seam.
 */
function rebasedHttpClient(base: string, timeoutMs: number): HttpClient {
  const inner = new twilio.RequestClient({ timeout: timeoutMs });
  const origin = new URL(base);
  return {
    request(opts: Parameters<InstanceType<typeof twilio.RequestClient>['request']>[0]) {
      const u = new URL(opts.uri);
      u.protocol = origin.protocol;
      u.host = origin.host;
      return inner.request({ ...opts, uri: u.toString() });
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

  constructor(private readonly o: TwilioCallControlOptions = {}) {
    this.timeoutMs = o.timeoutMs ?? 5000;
  }

  private client(a: TwilioAccount): TwilioClient {
    const key = `${a.accountSid}:${a.authToken}`;
    let c = this.clients.get(key);
    if (!c) {
      c = twilio(a.accountSid, a.authToken, {
        timeout: this.timeoutMs,
        // The SDK falls back to TWILIO_* variables; config.ts is our only reader of the environment.
        env: {},
        ...(this.o.apiBaseUrl !== undefined ? { httpClient: rebasedHttpClient(this.o.apiBaseUrl, this.timeoutMs) } : {}),
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

  private async update(
    account: TwilioAccount,
    callSid: string,
    params: { twiml: string } | { status: 'completed' },
    op: string,
  ): Promise<CallControlResult> {
    try {
      await this.client(account).calls(callSid).update(params);
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
