/**
 * The call half of the /v1 admin API: live and recent calls across all pods (filtered, paged newest
 * first), and one call's state, transcript, tool calls and summary, read from the shared store with
 * phone numbers masked.
 */
import { errorMessage } from '../../errors.js';
import { CALL_OUTCOMES } from '../../call/index.js';
import {
  maskNumbersInJson,
  maskNumbersInText,
  type CallCursor,
  type CallListState,
  type CallQuery,
  type CallRecord,
  type UsageStore,
  type UsageTotals,
} from '../../store/index.js';
import { usageView, type UsageTracker } from '../../usage/index.js';
import { adminGuard } from '../admin-auth.js';
import type { RelayContext } from '../context.js';
import { replyError, replyJson, type ReplyHandle } from '../http.js';
import { TENANT_ID, TIME_FORMAT, parseTime } from './admin-query.js';

const CALL_SID = /^CA[0-9a-fA-F]{32}$/;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;
const STATES: readonly CallListState[] = ['live', 'ended', 'all'];
/** `from`: the caller's last 4 digits, or a whole number (compared by its masked form). */
const CALLER = /^\+?\d{4,15}$/;
const E164 = /^\+[1-9]\d{6,14}$/;
const CURSOR = /^(\d{1,15}):(CA[0-9a-fA-F]{32})$/;

/** The opaque `nextCursor` of a listing page. */
export function encodeCursor(c: CallCursor): string {
  return Buffer.from(`${c.startedAt}:${c.callSid}`).toString('base64url');
}

function decodeCursor(s: string): CallCursor | undefined {
  const m = CURSOR.exec(Buffer.from(s, 'base64url').toString('latin1'));
  return m ? { startedAt: Number(m[1]), callSid: m[2]! } : undefined;
}

/** GET /v1/calls' query string as a store query, or what is wrong with it. */
export function parseCallQuery(q: URLSearchParams): { ok: true; query: CallQuery } | { ok: false; message: string } {
  const bad = (message: string): { ok: false; message: string } => ({ ok: false, message });
  const get = (name: string): string | undefined => {
    const v = q.get(name);
    return v === null || v === '' ? undefined : v;
  };
  const state = (get('state') ?? 'live') as CallListState;
  if (!STATES.includes(state)) return bad('state must be live, ended or all');
  const limitRaw = q.get('limit');
  const limit = limitRaw === null ? DEFAULT_LIMIT : Number(limitRaw);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) return bad(`limit must be a whole number from 1 to ${MAX_LIMIT}`);
  const query: CallQuery = { state, limit };
  const tenant = get('tenant');
  if (tenant !== undefined) {
    if (!TENANT_ID.test(tenant)) return bad('tenant must be a tenant id');
    query.tenantId = tenant;
  }
  const outcome = get('outcome');
  if (outcome !== undefined) {
    if (!(CALL_OUTCOMES as readonly string[]).includes(outcome)) return bad(`outcome must be one of ${CALL_OUTCOMES.join(', ')}`);
    query.outcome = outcome;
  }
  const from = get('from');
  if (from !== undefined) {
    if (!CALLER.test(from)) return bad('from must be the caller\'s last 4 digits or a whole number (+15551234567)');
    query.from = from;
  }
  const to = get('to');
  if (to !== undefined) {
    if (!E164.test(to)) return bad('to must be an E.164 number (+15551234567)');
    query.to = to;
  }
  for (const name of ['since', 'until'] as const) {
    const v = get(name);
    if (v === undefined) continue;
    const t = parseTime(v);
    if (t === undefined) return bad(`since and until must be ${TIME_FORMAT}`);
    query[name] = t;
  }
  if (query.since !== undefined && query.until !== undefined && query.since >= query.until) return bad('since must be before until');
  const cursor = get('cursor');
  if (cursor !== undefined) {
    const c = decodeCursor(cursor);
    if (!c) return bad('cursor must be a nextCursor of an earlier page');
    query.cursor = c;
  }
  return { ok: true, query };
}

/** One line of GET /v1/calls: no transcript, no tool payloads. */
export function callListView(r: CallRecord): Record<string, unknown> {
  return {
    callSid: r.callSid,
    tenantId: r.tenantId,
    pod: r.pod,
    phase: r.phase,
    startedAt: new Date(r.startedAt).toISOString(),
    updatedAt: new Date(r.updatedAt).toISOString(),
    ...(r.fromMasked !== undefined ? { from: r.fromMasked } : {}),
    ...(r.to !== undefined ? { to: r.to } : {}),
    ...(r.endedAt !== undefined ? { endedAt: new Date(r.endedAt).toISOString() } : {}),
    ...(r.outcome !== undefined ? { outcome: r.outcome } : {}),
    // Caller turns (what the caller said and the assistant answered): the transcript's caller entries.
    turns: r.transcript.filter((t) => t.role === 'caller').length,
    toolCalls: r.tools.length,
    ...(r.emergency ? { emergency: true } : {}),
  };
}

/**
 * GET /v1/calls/{callSid}: everything the store keeps about the call. The caller's number is stored
 * masked already; numbers spoken in the transcript or passed to tools are masked here.
 */
export function callDetailView(r: CallRecord, usage?: UsageTotals): Record<string, unknown> {
  return {
    ...callListView(r),
    ...(r.streamSid !== undefined ? { streamSid: r.streamSid } : {}),
    ...(r.emergency ? { emergency: r.emergency } : {}),
    // The pods that carried the call (one per leg) and its moves between them (drain, crash).
    pods: r.pods,
    migrations: r.migrations.map((m) => ({ ...m, at: new Date(m.at).toISOString() })),
    ...(r.migratingAt !== undefined ? { migratingAt: new Date(r.migratingAt).toISOString(), migratingReason: r.migratingReason } : {}),
    transcript: r.transcript.map((t) => ({ ...t, text: maskNumbersInText(t.text), at: new Date(t.at).toISOString() })),
    tools: r.tools.map((t) => ({
      callId: t.callId,
      name: t.name,
      arguments: parseOr(maskNumbersInJson(t.arguments)),
      result: parseOr(maskNumbersInJson(t.output)),
      outcome: t.outcome,
      startedAt: new Date(t.startedAt).toISOString(),
      durationMs: t.durationMs,
    })),
    summary: r.summary === undefined ? null : (JSON.parse(maskNumbersInJson(JSON.stringify(r.summary))) as unknown),
    usage: usage === undefined ? null : usageView(usage),
  };
}

/** A call's usage: this pod's live meter when it runs here, else what the store has (any pod). */
export type UsageReader = (tenantId: string, callSid: string) => Promise<UsageTotals | undefined>;

export function usageReader(store: UsageStore, tracker: Pick<UsageTracker, 'liveUsage'>): UsageReader {
  return (tenantId, callSid) => Promise.resolve(tracker.liveUsage(callSid) ?? store.callUsage(tenantId, callSid));
}

function parseOr(json: string): unknown {
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return json;
  }
}

/**
 * Register GET /v1/calls (filters and paging: docs/tools.md) and GET /v1/calls/{callSid}. Nothing is
 * registered when ADMIN_TOKEN is unset, so the routes answer 404 like any unknown path. `auth` is the
 * shared bearer check.
 */
export function registerAdminCallRoutes(
  ctx: RelayContext,
  auth: (authorizationHeader: string) => boolean,
  readUsage: UsageReader = () => Promise.resolve(undefined),
): void {
  if (ctx.config.adminToken === undefined) return;
  const { app, log, store } = ctx;

  const guard = adminGuard(auth);

  function storeDown(h: ReplyHandle, err: unknown): void {
    log.warn({ code: 'store_unavailable', route: 'admin_calls', err: errorMessage(err) }, 'call store unavailable');
    replyError(h, '503 Service Unavailable', 'store_unavailable', 'call state store unreachable; try again');
  }

  app.get('/v1/calls', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    const q = parseCallQuery(new URLSearchParams(req.getQuery() ?? ''));
    if (!q.ok) return replyError(h, '400 Bad Request', 'bad_request', q.message);
    store
      .listCalls(q.query)
      .then((page) => {
        replyJson(h, '200 OK', {
          count: page.calls.length,
          truncated: page.next !== undefined,
          nextCursor: page.next ? encodeCursor(page.next) : null,
          calls: page.calls.map(callListView),
        });
      })
      .catch((err: unknown) => storeDown(h, err));
  });

  app.get('/v1/calls/:callSid', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    const sid = req.getParameter(0) ?? '';
    if (!CALL_SID.test(sid)) return replyError(h, '400 Bad Request', 'bad_request', 'callSid must be CA followed by 32 hex digits');
    store
      .getCall(sid)
      .then(async (r) => {
        if (!r) return replyError(h, '404 Not Found', 'not_found', `no call ${sid} (unknown, or past its retention)`);
        replyJson(h, '200 OK', callDetailView(r, await readUsage(r.tenantId, sid)));
      })
      .catch((err: unknown) => storeDown(h, err));
  });
}
