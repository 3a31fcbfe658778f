/**
 * A TwiML fetch as Twilio makes it (the voice webhook, a `<Redirect>`, an update's `Url`), on a
 * connection of its own.
 * Twilio reaches the relays through an ingress whose connections to Twilio outlive any pod, so a
 * request after a pod died goes to a pod that lives. Through the loopback service (a TCP proxy) a
 * pooled keep-alive connection stays tied to the relay it was first proxied to, and the first
 * request after that relay was killed would go down its dead connection: global fetch's pool
 * would make the simulated Twilio fail redirects the real one does not.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** Bounded: Twilio gives up on a TwiML fetch after 15 s. */
const TIMEOUT_MS = 15_000;

export function fetchTwiml(
  url: string,
  init: { method: string; headers: Record<string, string>; body: string | null; signal?: AbortSignal },
): Promise<{ status: number; body: string; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    // A sized body, as Twilio sends it (not chunked).
    const headers = init.body === null ? init.headers : { ...init.headers, 'content-length': String(Buffer.byteLength(init.body)) };
    const req = request(url, { method: init.method, headers, agent: false, timeout: TIMEOUT_MS, ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(init.body ?? undefined);
  });
}
