/**
 * The Node adapter of the simulated Twilio caller: the signed webhook over fetch, the Media Stream
 * over `ws`, and one shared drift-corrected 20 ms ticker for every call in the process.
 * The protocol itself (pacing, playback, marks, barge-in) lives in loadtest/lib/caller-core.js.
 */
import { createHmac, randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import {
  CallerSession,
  buildVoiceWebhook,
  describeVerbs,
  emptyReport,
  parseTwiml,
  twilioSignature,
  type CallScript,
  type CallTurn,
  type CallerHooks,
  type CallerReport,
  type ParsedTwiml,
} from '../../loadtest/lib/caller-core.js';
import { FRAME_MS } from '../../loadtest/lib/audio.js';
import { errorMessage } from '../errors.js';
import { REFUSED_HEADER } from '../twilio/twiml.js';

export type { CallScript, CallTurn, CallerHooks, CallerReport, ParsedTwiml };

export interface PlaceCallOptions {
  /** http(s) base of the relay, for the webhook. */
  baseUrl: string;
  to: string;
  from?: string;
  accountSid: string;
  authToken: string;
  /** Default: random CA + 32 hex. */
  callSid?: string;
  script: CallScript;
  signal?: AbortSignal;
  /** Dial this instead of the TwiML's `<Stream url>` (still signed over the TwiML url, as Twilio would). */
  streamUrlOverride?: string;
  /** The base URL the relay believes Twilio used (its PUBLIC_URL), when it differs from `baseUrl`. */
  publicUrl?: string;
  /**
   * Follow the `<Redirect>` after `</Connect>` at this base URL instead (another pod behind the same
   * PUBLIC_URL, as a load balancer may route Twilio's request): the URL signed stays the TwiML's.
   */
  afterStreamBaseUrl?: string;
  /** Measurement taps on the media stream (the bench stamps and reads timestamps in the audio). */
  hooks?: CallerHooks;
}

/**
 * How far the call got: `unreachable` (no HTTP answer from the webhook), `rejected` (non-2xx
 * webhook), `not-connected` (TwiML without `<Connect><Stream>`), `stream-failed` (the upgrade was
 * refused or the socket failed before opening), `connected` (the Media Stream ran).
 */
export type CallStage = 'unreachable' | 'rejected' | 'not-connected' | 'stream-failed' | 'connected';

export interface CallReport extends CallerReport {
  stage: CallStage;
  webhookStatus: number | null;
  twiml: ParsedTwiml | null;
  /** What the caller heard from TwiML outside the stream (unknown number: the `<Say>` text). */
  spoken: string;
  /** Why the relay turned the call away instead of streaming (its `X-Switchboard-Refused` header). */
  refused?: string;
  /**
   * After the relay closed the stream, what the `<Redirect>` after `</Connect>` returned, as Twilio
   * would fetch it (signed POST): e.g. `<Hangup/>`, or an apology and a `<Dial>`.
   */
  afterStream?: string;
}

const hmacSha1Base64 = (key: string, data: string): string => createHmac('sha1', key).update(data, 'utf8').digest('base64');
const b64encode = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
const b64decode = (s: string): Uint8Array => Buffer.from(s, 'base64');

/** A random Twilio-style SID: prefix + 32 lowercase hex. */
export function randomSid(prefix: 'CA' | 'MZ' | 'AC'): string {
  return prefix + randomBytes(16).toString('hex');
}

/** The wss URL Twilio signs for the upgrade: the `<Stream url>` as written, no params. */
export function upgradeSignature(streamUrl: string, authToken: string): string {
  return twilioSignature(streamUrl, {}, authToken, hmacSha1Base64);
}

// --- shared ticker ---------------------------------------------------------------------------------
// Real calls' 20 ms frames arrive at unrelated phases. Firing every call on one 20 ms edge would
// send the relay bursts of N frames at once and measure queueing the driver made up, so calls are
// spread over PHASES slots of the frame period; each call still ticks exactly every 20 ms.

type TickFn = (nowMs: number) => void;
const PHASES = 10;
const SLOT_MS = FRAME_MS / PHASES;
const slots: Set<TickFn>[] = Array.from({ length: PHASES }, () => new Set<TickFn>());
let subscriberCount = 0;
let assigned = 0;
let nextSlot = 0;
let nextAt = 0;
let timer: NodeJS.Timeout | undefined;
/** A stalled loop catches up at most this many frame periods at once, then skips ahead. */
const MAX_CATCH_UP = 5;

function runTicker(): void {
  timer = undefined;
  const now = performance.now();
  for (let i = 0; i < MAX_CATCH_UP * PHASES && nextAt <= now; i++) {
    for (const fn of [...slots[nextSlot]!]) fn(now);
    nextSlot = (nextSlot + 1) % PHASES;
    nextAt += SLOT_MS;
  }
  // Absolute schedule: each slot is start + n·2 ms, so setTimeout jitter does not accumulate.
  if (nextAt <= now) nextAt = now + SLOT_MS;
  if (subscriberCount > 0) timer = setTimeout(runTicker, Math.max(0, nextAt - performance.now()));
}

function subscribe(fn: TickFn): () => void {
  const slot = slots[assigned++ % PHASES]!;
  slot.add(fn);
  subscriberCount++;
  if (timer === undefined) {
    nextAt = performance.now() + SLOT_MS;
    timer = setTimeout(runTicker, SLOT_MS);
  }
  return () => {
    if (slot.delete(fn)) subscriberCount--;
    if (subscriberCount === 0 && timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
  };
}

// --- placeCall ---------------------------------------------------------------------------------------

/**
 * Place one simulated call exactly as Twilio would: signed voice webhook, TwiML, signed Media Stream
 * upgrade, then the scripted conversation. Never rejects for call failures: the report says how far
 * the call got (`stage`) and why (`errors`).
 */
export async function placeCall(o: PlaceCallOptions): Promise<CallReport> {
  const callSid = o.callSid ?? randomSid('CA');
  const from = o.from ?? '+15005550100';
  const base = (stage: CallStage, extra: Partial<CallReport> = {}): CallReport => ({
    ...emptyReport(callSid),
    turnsPlanned: o.script.turns.length,
    stage,
    webhookStatus: null,
    twiml: null,
    spoken: '',
    ...extra,
  });

  const hook = buildVoiceWebhook({
    baseUrl: o.baseUrl,
    callSid,
    accountSid: o.accountSid,
    from,
    to: o.to,
    authToken: o.authToken,
    hmacSha1Base64,
    ...(o.publicUrl !== undefined ? { publicUrl: o.publicUrl } : {}),
  });
  let res: Response;
  let body: string;
  try {
    res = await fetch(hook.url, { method: 'POST', headers: hook.headers, body: hook.body, ...(o.signal ? { signal: o.signal } : {}) });
    body = await res.text();
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return base('unreachable', { errors: [`cannot reach ${hook.url}: ${errorMessage(err)}${cause}`] });
  }
  if (!res.ok) {
    return base('rejected', { webhookStatus: res.status, errors: [`webhook answered HTTP ${res.status}: ${body.slice(0, 200)}`] });
  }
  let twiml: ParsedTwiml;
  try {
    twiml = parseTwiml(body);
  } catch (err) {
    return base('rejected', { webhookStatus: res.status, errors: [errorMessage(err)] });
  }
  if (twiml.kind === 'other') {
    const refused = res.headers.get(REFUSED_HEADER);
    return base('not-connected', { webhookStatus: res.status, twiml, spoken: describeVerbs(twiml.verbs), ...(refused ? { refused } : {}) });
  }
  const spokenBefore = describeVerbs(twiml.before);
  const dialUrl = o.streamUrlOverride ?? twiml.streamUrl;
  const streamSid = randomSid('MZ');
  const session = new CallerSession({
    callSid,
    accountSid: o.accountSid,
    streamSid,
    parameters: twiml.parameters,
    script: o.script,
    b64encode,
    b64decode,
    clockMs: () => performance.now(),
    after: twiml.after,
    ...(o.hooks !== undefined ? { hooks: o.hooks } : {}),
  });
  const extra = (): Omit<CallReport, keyof CallerReport> => ({
    stage: 'connected',
    webhookStatus: res.status,
    twiml,
    spoken: spokenBefore,
  });

  const report = await new Promise<CallReport>((resolve) => {
    let opened = false;
    let settled = false;
    let unsubscribe: (() => void) | undefined;
    let hardStop: NodeJS.Timeout | undefined;
    const streamErrors: string[] = [];
    const ws = new WebSocket(dialUrl, {
      headers: { 'X-Twilio-Signature': upgradeSignature(twiml.streamUrl, o.authToken) },
      perMessageDeflate: false,
    });

    const send = (msgs: string[]): void => {
      if (ws.readyState !== WebSocket.OPEN) return;
      for (const m of msgs) ws.send(m);
    };
    const afterSend = (): void => {
      // Twilio closes the socket right after its `stop`.
      if (session.done && ws.readyState === WebSocket.OPEN) ws.close(1000, 'stop');
    };
    const settle = (): void => {
      if (settled) return;
      settled = true;
      unsubscribe?.();
      if (hardStop) clearTimeout(hardStop);
      o.signal?.removeEventListener('abort', onAbort);
      if (!opened) {
        resolve(base('stream-failed', { webhookStatus: res.status, twiml, spoken: spokenBefore, streamSid, errors: streamErrors }));
        return;
      }
      const r = session.report();
      resolve({ ...r, errors: [...r.errors, ...streamErrors], ...extra() });
    };
    const onAbort = (): void => {
      send(session.hangup());
      afterSend();
      if (!opened) ws.terminate();
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted) onAbort();

    ws.on('unexpected-response', (_req, response) => {
      streamErrors.push(`stream upgrade refused: HTTP ${response.statusCode ?? 0}`);
      response.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      // After a refused upgrade `ws` also reports "closed before the connection was established".
      if (!opened && streamErrors.length > 0) return;
      streamErrors.push(`stream socket error: ${errorMessage(err)}`);
    });
    ws.on('open', () => {
      opened = true;
      send(session.open());
      unsubscribe = subscribe((now) => {
        send(session.tick(now));
        afterSend();
      });
      // maxCallMs is enforced by the session's ticks; this only guards a relay that never closes after `stop`.
      hardStop = setTimeout(() => ws.terminate(), o.script.maxCallMs + 5_000);
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        streamErrors.push('31950 binary frame from the relay');
        return;
      }
      const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
      send(session.onMessage(text));
      afterSend();
    });
    ws.on('close', (code, reason) => {
      unsubscribe?.();
      unsubscribe = undefined;
      if (opened) session.onClose(code, reason.toString());
      settle();
    });
  });
  const redirect = twiml.after.find((v) => v.verb === 'Redirect');
  if (report.endedBy === 'relay' && redirect?.text) {
    report.afterStream = await followRedirect(o, redirect.text, { callSid, from });
  }
  return report;
}

/** Fetch the TwiML a `<Redirect>` points at exactly as Twilio does: signed form POST with the call's fields. */
async function followRedirect(o: PlaceCallOptions, url: string, call: { callSid: string; from: string }): Promise<string> {
  const params: Record<string, string> = {
    AccountSid: o.accountSid,
    ApiVersion: '2010-04-01',
    CallSid: call.callSid,
    CallStatus: 'in-progress',
    Direction: 'inbound',
    From: call.from,
    To: o.to,
  };
  // Signed over the URL Twilio was given; fetched at the relay's real address when they differ.
  const announced = o.publicUrl ?? o.baseUrl;
  const base = o.afterStreamBaseUrl ?? o.baseUrl;
  const target = url.startsWith(announced) ? base + url.slice(announced.length) : url;
  try {
    const res = await fetch(target, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(url, params, o.authToken, hmacSha1Base64) },
      body: new URLSearchParams(params).toString(),
    });
    const body = await res.text();
    if (!res.ok) return `(redirect answered HTTP ${res.status})`;
    const t = parseTwiml(body);
    return describeVerbs(t.kind === 'other' ? t.verbs : [...t.before, ...t.after]);
  } catch (err) {
    return `(redirect failed: ${errorMessage(err)})`;
  }
}
