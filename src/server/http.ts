/**
 * Small uWS HTTP helpers: bounded body reading with abort handling, corked replies, form parsing.
 * uWS responses must not be touched after abort, and async replies must be corked.
 */
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { errorMessage, SwitchboardError } from '../errors.js';

export interface ReplyHandle {
  aborted: boolean;
  res: HttpResponse;
}

/** Register abort tracking; must be called synchronously in the route handler. */
export function track(res: HttpResponse): ReplyHandle {
  const h: ReplyHandle = { aborted: false, res };
  res.onAborted(() => {
    h.aborted = true;
  });
  return h;
}

/** Read the whole body, failing with payload_too_large past `maxBytes` (the connection is closed). */
export function readBody(h: ReplyHandle, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    h.res.onData((ab, isLast) => {
      if (done) return;
      size += ab.byteLength;
      if (size > maxBytes) {
        done = true;
        reject(new SwitchboardError('payload_too_large', `body larger than ${maxBytes} bytes`));
        return;
      }
      // The ArrayBuffer is neutered after this callback: copy it.
      chunks.push(Buffer.from(Buffer.from(ab)));
      if (isLast) {
        done = true;
        resolve(Buffer.concat(chunks));
      }
    });
  });
}

export function reply(
  h: ReplyHandle,
  status: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  if (h.aborted) return;
  h.res.cork(() => {
    h.res.writeStatus(status);
    for (const [k, v] of Object.entries(headers)) h.res.writeHeader(k, v);
    h.res.end(body);
  });
}

export function replyJson(h: ReplyHandle, status: string, value: unknown): void {
  reply(h, status, JSON.stringify(value), { 'content-type': 'application/json' });
}

/** `{"error":{"code","message"}}`, with the offending `fields` when a body was refused field by field. */
export function replyError(h: ReplyHandle, status: string, code: string, message: string, fields?: readonly unknown[]): void {
  replyJson(h, status, { error: fields ? { code, message, fields } : { code, message } });
}

/** 413 payload_too_large for a body past its limit (from readBody); the connection closes, the rest unread. */
export function replyTooLarge(h: ReplyHandle, err: unknown): void {
  if (h.aborted) return;
  h.res.cork(() => {
    h.res
      .writeStatus('413 Payload Too Large')
      .writeHeader('content-type', 'application/json')
      .end(JSON.stringify({ error: { code: 'payload_too_large', message: errorMessage(err) } }), true);
  });
}

export function replyTwiml(h: ReplyHandle, xml: string, headers: Record<string, string> = {}): void {
  reply(h, '200 OK', xml, { 'content-type': 'text/xml', ...headers });
}

/** x-www-form-urlencoded -> name -> value (or values when a name repeats). */
export function parseForm(body: Buffer): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(body.toString('utf8'))) {
    const prev = out[k];
    if (prev === undefined) out[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[k] = [prev, v];
  }
  return out;
}

export function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Path and query exactly as requested: what Twilio signed, after the public base URL. */
export function pathAndQuery(req: HttpRequest): string {
  const q = req.getQuery();
  return q ? `${req.getUrl()}?${q}` : req.getUrl();
}

/** The TCP peer's address as uWS reports it, as text. */
export function remoteAddress(res: HttpResponse): string {
  return Buffer.from(res.getRemoteAddressAsText()).toString();
}
