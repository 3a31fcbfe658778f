/**
 * Bearer-token check for the /v1 admin API. Constant time over SHA-256 digests, so neither the
 * token's content nor its length leaks through timing. The routes decide what a refusal looks like.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { HttpResponse } from 'uWebSockets.js';
import { reply, track, type ReplyHandle } from './http.js';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * A checker for `Authorization` header values against ADMIN_TOKEN. Always false when the token is
 * unset or empty (the admin API is off). ADMIN_TOKEN may list several tokens separated by commas,
 * so a new token can be rolled out before the old one is removed (docs/operators.md).
 */
export function bearerAuth(adminToken: string | undefined): (authorizationHeader: string) => boolean {
  const tokens = (adminToken ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t.length > 0)
    .map(digest);
  if (tokens.length === 0) return () => false;
  return (header) => {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    const given = digest(m?.[1] ?? '');
    let ok = false;
    // Compare against every token (no early exit), so which one matched does not show in timing.
    for (const t of tokens) ok = timingSafeEqual(t, given) || ok;
    return ok && m !== null;
  };
}

/**
 * The synchronous start of every admin handler: abort tracking and the bearer check (uWS headers die
 * when the handler returns). Answers 401 itself and returns undefined when the token is wrong.
 */
export function adminGuard(auth: (authorizationHeader: string) => boolean): (res: HttpResponse, header: string) => ReplyHandle | undefined {
  return (res, header) => {
    const h = track(res);
    if (auth(header)) return h;
    reply(h, '401 Unauthorized', JSON.stringify({ error: { code: 'unauthorized', message: 'missing or wrong bearer token' } }), {
      'content-type': 'application/json',
      'www-authenticate': 'Bearer realm="switchboard-admin"',
    });
    return undefined;
  };
}
