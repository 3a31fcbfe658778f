/**
 * The Node adapter of the simulated Twilio caller: the signed webhook over fetch, the Media Stream
 * over `ws`, paced by the shared 20 ms ticker (frame-ticker.ts); REST call updates and
 * after-stream redirects move the call to new streams.
 * The protocol itself, shared with k6, is plain JS: the caller's script (pacing, turns, barge-in)
 * in portable/caller-core.js over the stream's playback and marks in portable/caller-stream.js, the
 * webhook, TwiML and what follows a stream in portable/twilio-http.js.
 */
import { createHmac, randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import {
  CallerSession,
  emptyReport,
  type CallScript,
  type CallTurn,
  type CallerHooks,
  type CallerReport,
  type LegReport,
} from './portable/caller-core.js';
import {
  MAX_LEGS,
  afterLeg,
  buildVoiceWebhook,
  describeVerbs,
  parseTwiml,
  twilioSignature,
  type AfterLeg,
  type CallUpdate,
  type FetchAnswer,
  type FetchRequest,
  type ParsedTwiml,
} from './portable/twilio-http.js';
import { errorMessage } from '../errors.js';
import { REFUSED_HEADER } from '../twilio/twiml.js';
import { subscribe } from './frame-ticker.js';
import { fetchTwiml } from './twiml-fetch.js';

export type { CallScript, CallTurn, CallUpdate, CallerHooks, CallerReport, LegReport, ParsedTwiml };

/** What a live call does when Twilio acts on an update (called before the HTTP answer). */
export interface CallHandle {
  update(u: CallUpdate): void;
}

/**
 * Where a caller registers its call for Twilio's REST updates (the simulated Twilio API of the
 * tests and `npm run load`, in-process). Returns the unregister function.
 */
export interface CallRegistry {
  registerCall(callSid: string, handle: CallHandle, accountSid?: string): () => void;
}

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
  /**
   * The (fake) Twilio REST API this call is known to: REST call updates reach the call through it
   * as they would through Twilio (`stop`, close, run the new TwiML). Without it, no update can.
   */
  twilioApi?: CallRegistry;
  /** At most this many Media Streams per call (moves by update or redirect); default 5. */
  maxLegs?: number;
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
   * would fetch it (signed POST): e.g. `<Hangup/>`, or an apology and a `<Dial>`. Unset when it
   * connected a new stream (then `legs` has it).
   */
  afterStream?: string;
  /** What the TwiML of the REST update that ended the call's last stream ran (a `<Dial>`, a `<Hangup/>`). */
  afterUpdate?: string;
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

// --- placeCall ---------------------------------------------------------------------------------------

interface LegResult {
  opened: boolean;
  /** The REST update that ended this stream, if one did. */
  update?: CallUpdate;
  errors: string[];
}

/**
 * Place one simulated call exactly as Twilio would: signed voice webhook, TwiML, signed Media Stream
 * upgrade, then the scripted conversation. When Twilio would move the call (a REST update's TwiML,
 * or the after-stream `<Redirect>` after the relay closed the stream, connecting again) it opens the
 * new stream and the script goes on there; `legs` lists the streams. Never rejects for call
 * failures: the report says how far the call got (`stage`) and why (`errors`).
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

  // Twilio knows the call from the moment it rings: updates can reach it from then on.
  let live: { update: (u: CallUpdate) => void } | undefined;
  let pending: CallUpdate | undefined;
  const unregister = o.twilioApi?.registerCall(
    callSid,
    {
      update(u) {
        if (live) live.update(u);
        else pending = u;
      },
    },
    o.accountSid,
  );
  try {
    return await runCall();
  } finally {
    unregister?.();
  }

  async function runCall(): Promise<CallReport> {
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
    let res: { status: number; ok: boolean; refused: string | undefined };
    let body: string;
    try {
      // On a connection of its own, as Twilio's webhooks arrive through an ingress (see twiml-fetch.ts).
      const answer = await fetchTwiml(hook.url, { method: 'POST', headers: hook.headers, body: hook.body, ...(o.signal ? { signal: o.signal } : {}) });
      const refused = answer.headers[REFUSED_HEADER.toLowerCase()];
      res = { status: answer.status, ok: answer.status >= 200 && answer.status < 300, refused: Array.isArray(refused) ? refused[0] : refused };
      body = answer.body;
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
      const refused = res.refused;
      return base('not-connected', { webhookStatus: res.status, twiml, spoken: describeVerbs(twiml.verbs), ...(refused ? { refused } : {}) });
    }
    const spokenBefore = describeVerbs(twiml.before);
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
      url: twiml.streamUrl,
      ...(o.hooks !== undefined ? { hooks: o.hooks } : {}),
    });
    const maxLegs = o.maxLegs ?? MAX_LEGS;
    const errors: string[] = [];
    let afterStream: string | undefined;
    let afterUpdate: string | undefined;
    let leg: Extract<ParsedTwiml, { kind: 'stream' }> = twiml;
    let dialUrl = o.streamUrlOverride ?? twiml.streamUrl;
    for (let n = 1; ; n++) {
      const r = await runLeg(session, dialUrl, leg.streamUrl);
      errors.push(...r.errors);
      if (n === 1 && !r.opened) {
        return base('stream-failed', { webhookStatus: res.status, twiml, spoken: spokenBefore, streamSid, errors });
      }
      if (!r.opened) {
        session.legFailed(r.errors[0] ?? 'the socket did not open');
        break;
      }
      // An update after the caller hung up finds no call to act on.
      const update = session.resumable ? (r.update ?? takePending()) : undefined;
      // What Twilio runs next: the update's TwiML, or (the relay closed the stream) the TwiML after </Connect>.
      const step = await drive(
        afterLeg({
          resumable: session.resumable,
          after: leg.after,
          call: { accountSid: o.accountSid, callSid, from, to: o.to, authToken: o.authToken, hmacSha1Base64 },
          ...(update ? { update } : {}),
        }),
      );
      if (step.kind === 'end') {
        if (step.via === 'update') afterUpdate = step.heard;
        else if (step.via === 'redirect' && step.fetched) afterStream = step.heard;
        break;
      }
      if (o.signal?.aborted) break;
      if (n >= maxLegs) {
        errors.push(`call moved more than ${maxLegs - 1} times: not following it further`);
        break;
      }
      leg = step.twiml;
      if (!session.beginLeg({ streamSid: randomSid('MZ'), parameters: leg.parameters, after: leg.after, url: leg.streamUrl, via: step.via })) break;
      dialUrl = dialFor(leg.streamUrl);
    }
    const r = session.report();
    const report: CallReport = { ...r, errors: [...r.errors, ...errors], stage: 'connected', webhookStatus: res.status, twiml, spoken: spokenBefore };
    if (afterStream !== undefined) report.afterStream = afterStream;
    if (afterUpdate !== undefined) report.afterUpdate = afterUpdate;
    return report;
  }

  function takePending(): CallUpdate | undefined {
    const u = pending;
    pending = undefined;
    return u;
  }

  /** A new stream's URL, dialled at the relay's real address when the TwiML names the public one. */
  function dialFor(streamUrl: string): string {
    const ws = (u: string): string => u.replace(/^http/i, 'ws').replace(/\/+$/, '');
    const announced = ws(o.publicUrl ?? o.baseUrl);
    if (o.streamUrlOverride !== undefined) {
      const path = /^wss?:\/\/[^/]+(\/.*)?$/i.exec(streamUrl)?.[1] ?? '/twilio/media';
      return ws(o.baseUrl) + path;
    }
    return streamUrl.startsWith(announced) ? ws(o.baseUrl) + streamUrl.slice(announced.length) : streamUrl;
  }

  /** Make the TwiML fetches afterLeg() asks for as Twilio would, at the relay's real address. */
  async function drive(gen: Generator<FetchRequest, AfterLeg, FetchAnswer>): Promise<AfterLeg> {
    // Signed over the URL Twilio was given; fetched at the relay's real address when they differ.
    const announced = o.publicUrl ?? o.baseUrl;
    const target = o.afterStreamBaseUrl ?? o.baseUrl;
    for (let r = gen.next(); ; ) {
      if (r.done) return r.value;
      const req = r.value;
      const at = req.url.startsWith(announced) ? target + req.url.slice(announced.length) : req.url;
      let answer: FetchAnswer;
      try {
        answer = await fetchTwiml(at, req);
      } catch (err) {
        answer = { status: 0, body: '', error: errorMessage(err) };
      }
      r = gen.next(answer);
    }
  }

  /** One Media Stream, open until it closes or a REST update ends it. */
  function runLeg(session: CallerSession, dialUrl: string, streamUrl: string): Promise<LegResult> {
    return new Promise<LegResult>((resolve) => {
      let opened = false;
      let settled = false;
      let update: CallUpdate | undefined;
      let unsubscribe: (() => void) | undefined;
      let hardStop: NodeJS.Timeout | undefined;
      const errors: string[] = [];
      const ws = new WebSocket(dialUrl, {
        headers: { 'X-Twilio-Signature': upgradeSignature(streamUrl, o.authToken) },
        perMessageDeflate: false,
      });
      const send = (msgs: string[]): void => {
        if (settled || ws.readyState !== WebSocket.OPEN) return;
        for (const m of msgs) ws.send(m);
      };
      const afterSend = (): void => {
        // Twilio closes the socket right after its `stop`.
        if (session.done && ws.readyState === WebSocket.OPEN) ws.close(1000, 'stop');
      };
      const settle = (): void => {
        if (settled) return;
        settled = true;
        live = undefined;
        unsubscribe?.();
        unsubscribe = undefined;
        if (hardStop) clearTimeout(hardStop);
        o.signal?.removeEventListener('abort', onAbort);
        resolve({ opened, errors, ...(update ? { update } : {}) });
      };
      // Twilio acts on an update at once: `stop`, close, and the new TwiML runs without waiting
      // for the old socket's close handshake.
      const applyUpdate = (): void => {
        send(session.stopForUpdate());
        afterSend();
        settle();
      };
      live = {
        update(u) {
          update = u;
          if (opened) applyUpdate();
        },
      };
      function onAbort(): void {
        send(session.hangup());
        afterSend();
        if (!opened) ws.terminate();
      }
      o.signal?.addEventListener('abort', onAbort, { once: true });
      if (o.signal?.aborted) onAbort();

      ws.on('unexpected-response', (_req, response) => {
        errors.push(`stream upgrade refused: HTTP ${response.statusCode ?? 0}`);
        response.resume();
        ws.terminate();
      });
      ws.on('error', (err) => {
        // After a refused upgrade `ws` also reports "closed before the connection was established".
        if (settled || (!opened && errors.length > 0)) return;
        errors.push(`stream socket error: ${errorMessage(err)}`);
      });
      ws.on('open', () => {
        if (settled) return ws.terminate();
        opened = true;
        send(session.open());
        if (update) return applyUpdate();
        unsubscribe = subscribe((now) => {
          send(session.tick(now));
          afterSend();
        });
        // maxCallMs is enforced by the session's ticks; this only guards a relay that never closes after `stop`.
        hardStop = setTimeout(() => ws.terminate(), o.script.maxCallMs + 5_000);
      });
      ws.on('message', (data, isBinary) => {
        if (settled) return;
        if (isBinary) {
          errors.push('31950 binary frame from the relay');
          return;
        }
        const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
        send(session.onMessage(text));
        afterSend();
      });
      ws.on('close', (code, reason) => {
        if (settled) return;
        if (opened) session.onClose(code, reason.toString());
        settle();
      });
    });
  }
}
