/**
 * TwiML documents the relay answers with: connect the call to our media stream (with a spoken
 * fallback), say-and-hang-up, and dial a human. Written by a small builder (twiml-xml.ts) that prints
 * what the twilio SDK's VoiceResponse prints, so the SDK is not loaded at start (docs/performance.md).
 */
import { SwitchboardError } from '../errors.js';
import { mintResumeToken, RESUME_TOKEN_TTL_MS, type MigrationReason } from './resume-token.js';
import { issueStreamToken } from './stream-token.js';
import { twimlDocument, type TwimlNode } from './twiml-xml.js';

/** Twilio's limit on one `<Parameter>`: name plus value must stay under 500 characters. */
export const MAX_STREAM_PARAMETER_CHARS = 500;

/**
 * Response header of a voice webhook answered without a stream on purpose: `budget` (the tenant is
 * over its budget) or `busy` (at its concurrency limit). Twilio ignores it; `npm run call` reports it.
 */
export const REFUSED_HEADER = 'x-switchboard-refused';

/**
 * `<Connect><Stream url statusCallback><Parameter…/></Stream></Connect>` followed by what runs once the
 * relay closes the media socket: a `<Redirect>` to the relay (which answers according to how the call
 * ended: hang up, dial a human, or apologise), or a spoken fallback and `<Hangup/>`.
 *
 * The stream URL must be `wss://` (Twilio refuses `ws://`; plain `ws://` is accepted only for a
 * loopback dev relay whose PUBLIC_URL is http) and carry no query string: Twilio drops it
 * (docs/wire-formats.md §1), so per-call data goes in `parameters`.
 * @throws SwitchboardError `twilio_protocol` for a bad stream URL or an oversized parameter.
 */
export function connectStreamTwiml(o: {
  streamUrl: string;
  statusCallbackUrl?: string;
  parameters: Record<string, string>;
  /** POSTed by Twilio (signed) after the socket closes. */
  afterStreamUrl?: string;
  /** Spoken after the socket closes (before the redirect, if any). */
  fallbackSay?: string;
}): string {
  if (o.streamUrl.includes('?')) {
    throw new SwitchboardError('twilio_protocol', 'the <Stream> url cannot carry a query string: Twilio drops it; use parameters');
  }
  if (o.streamUrl.includes('://') && !o.streamUrl.startsWith('wss://') && !isLoopbackWs(o.streamUrl)) {
    throw new SwitchboardError('twilio_protocol', `the <Stream> url must use wss:// (got ${o.streamUrl.split('://')[0] ?? ''}://)`);
  }
  const params: TwimlNode[] = [];
  for (const [name, value] of Object.entries(o.parameters)) {
    if (name.length + value.length >= MAX_STREAM_PARAMETER_CHARS) {
      throw new SwitchboardError(
        'twilio_protocol',
        `stream parameter "${name.slice(0, 40)}" is ${name.length + value.length} chars; name + value must be under ${MAX_STREAM_PARAMETER_CHARS}`,
      );
    }
    params.push({ name: 'Parameter', attrs: { name, value } });
  }
  const body: TwimlNode[] = [
    { name: 'Connect', children: [{ name: 'Stream', attrs: { url: o.streamUrl, statusCallback: o.statusCallbackUrl }, children: params }] },
  ];
  if (o.fallbackSay !== undefined) body.push({ name: 'Say', text: o.fallbackSay });
  if (o.afterStreamUrl !== undefined) body.push({ name: 'Redirect', attrs: { method: 'POST' }, text: o.afterStreamUrl });
  else if (o.fallbackSay !== undefined) body.push({ name: 'Hangup' });
  return twimlDocument(body);
}

/** Stream tokens live long enough for Twilio to open the socket after fetching TwiML. */
export const STREAM_TOKEN_TTL_MS = 30_000;

/** One call's stream as the relay hands it to Twilio: where, and the stream-auth `<Parameter>`s. */
export interface CallStreamOptions {
  /** The `<Stream url>` (PUBLIC_URL's media route: the service, so any ready pod takes it). */
  streamUrl: string;
  /** PUBLIC_URL: the status callback and the after-stream redirect live under it. */
  publicUrl: string;
  /** STREAM_TOKEN_SECRET. */
  secret: string;
  now: number;
  callSid: string;
  tenantId: string;
  /** The number called (one of the tenant's), for the call record. */
  to?: string;
  /** The caller's number already masked to its last 4 digits (never the full number). */
  fromMasked?: string;
}

/**
 * The voice webhook's answer: `<Connect><Stream>` with the tenant, a one-time stream token bound to
 * the CallSid, `to` and the masked `from`, then the after-stream `<Redirect>`.
 */
export function callStreamTwiml(o: CallStreamOptions, extra: Record<string, string> = {}, tokenTtlMs = STREAM_TOKEN_TTL_MS): string {
  const token = issueStreamToken(o.secret, { callSid: o.callSid, tenantId: o.tenantId }, { now: o.now, ttlMs: tokenTtlMs });
  return connectStreamTwiml({
    streamUrl: o.streamUrl,
    statusCallbackUrl: `${o.publicUrl}/twilio/status`,
    parameters: {
      tenant: o.tenantId,
      token,
      ...(o.to !== undefined ? { to: o.to } : {}),
      ...(o.fromMasked !== undefined ? { from: o.fromMasked } : {}),
      ...extra,
    },
    afterStreamUrl: `${o.publicUrl}/twilio/after-stream`,
  });
}

/**
 * The TwiML that moves a live call to whichever pod the service picks: the call's usual stream
 * TwiML plus `<Parameter name="resume">` holding a one-time resume token (why it moves, bound to the
 * CallSid, RESUME_TOKEN_TTL_MS). Used for a drain's call update and a crash's after-stream answer.
 */
export function resumeStreamTwiml(o: CallStreamOptions & { reason: MigrationReason }): string {
  const resume = mintResumeToken(o.secret, { callSid: o.callSid, tenantId: o.tenantId, reason: o.reason }, { now: o.now });
  return callStreamTwiml(o, { resume }, RESUME_TOKEN_TTL_MS);
}

/** ws:// to a loopback host: only a local dev relay (PUBLIC_URL http://localhost…) produces it. */
function isLoopbackWs(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'ws:' && (u.hostname === 'localhost' || u.hostname.startsWith('127.') || u.hostname === '[::1]');
  } catch {
    return false;
  }
}

/** `<Say>text</Say><Hangup/>`: unknown numbers, refused calls, the end of a call. */
export function sayHangupTwiml(text: string): string {
  return twimlDocument([{ name: 'Say', text }, { name: 'Hangup' }]);
}

/** `[<Say>say</Say>]<Dial callerId timeout>to</Dial>`: hand the call to a human (REST update or redirect). */
export function dialTwiml(o: { to: string; callerId?: string; say?: string; timeoutSeconds?: number }): string {
  const body: TwimlNode[] = o.say !== undefined ? [{ name: 'Say', text: o.say }] : [];
  body.push({ name: 'Dial', attrs: { callerId: o.callerId, timeout: o.timeoutSeconds }, text: o.to });
  return twimlDocument(body);
}

/**
 * `<Say>say</Say><Record action…/><Say>…</Say><Hangup/>`: take a voicemail. Without an `action`
 * Twilio posts the recording back to the current document's URL (the voice webhook) and loops; the
 * words after `<Record>` run only when the caller recorded nothing.
 */
export function voicemailTwiml(o: { say: string; actionUrl: string; maxSeconds: number }): string {
  return twimlDocument([
    { name: 'Say', text: o.say },
    { name: 'Record', attrs: { action: o.actionUrl, method: 'POST', maxLength: o.maxSeconds, playBeep: true, finishOnKey: '#' } },
    { name: 'Say', text: 'We did not receive a message. Goodbye.' },
    { name: 'Hangup' },
  ]);
}
