/**
 * The call half of the /v1 admin API: active calls across all pods, and one call's state,
 * transcript, tool calls and summary, read from the shared store with phone numbers masked.
 */
import { errorMessage } from '../../errors.js';
import { maskNumbersInJson, maskNumbersInText, type CallRecord, type UsageStore, type UsageTotals } from '../../store/index.js';
import { usageView, type UsageTracker } from '../../usage/index.js';
import { adminGuard } from '../admin-auth.js';
import type { RelayContext } from '../context.js';
import { replyJson, type ReplyHandle } from '../http.js';

const CALL_SID = /^CA[0-9a-fA-F]{32}$/;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

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
    ...(r.endedAt !== undefined ? { endedAt: new Date(r.endedAt).toISOString() } : {}),
    ...(r.outcome !== undefined ? { outcome: r.outcome } : {}),
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
 * Register GET /v1/calls and GET /v1/calls/{callSid}. Nothing is registered when ADMIN_TOKEN is
 * unset, so the routes answer 404 like any unknown path. `auth` is the shared bearer check.
 */
export function registerAdminCallRoutes(
  ctx: RelayContext,
  auth: (authorizationHeader: string) => boolean,
  readUsage: UsageReader = () => Promise.resolve(undefined),
): void {
  if (ctx.config.adminToken === undefined) return;
  const { app, log, store } = ctx;

  const error = (h: ReplyHandle, status: string, code: string, message: string): void => {
    replyJson(h, status, { error: { code, message } });
  };

  const guard = adminGuard(auth);

  function storeDown(h: ReplyHandle, err: unknown): void {
    log.warn({ code: 'store_unavailable', route: 'admin_calls', err: errorMessage(err) }, 'call store unavailable');
    error(h, '503 Service Unavailable', 'store_unavailable', 'call state store unreachable; try again');
  }

  app.get('/v1/calls', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    const q = new URLSearchParams(req.getQuery() ?? '');
    const tenant = q.get('tenant') ?? undefined;
    const limitRaw = q.get('limit');
    const limit = limitRaw === null ? DEFAULT_LIMIT : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      return error(h, '400 Bad Request', 'bad_request', `limit must be a whole number from 1 to ${MAX_LIMIT}`);
    }
    store
      .listActive()
      .then((calls) => {
        const mine = calls.filter((c) => tenant === undefined || c.tenantId === tenant).sort((a, b) => a.startedAt - b.startedAt);
        replyJson(h, '200 OK', { count: mine.length, calls: mine.slice(0, limit).map(callListView), truncated: mine.length > limit });
      })
      .catch((err: unknown) => storeDown(h, err));
  });

  app.get('/v1/calls/:callSid', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    const sid = req.getParameter(0) ?? '';
    if (!CALL_SID.test(sid)) return error(h, '400 Bad Request', 'bad_request', 'callSid must be CA followed by 32 hex digits');
    store
      .getCall(sid)
      .then(async (r) => {
        if (!r) return error(h, '404 Not Found', 'not_found', `no call ${sid} (unknown, or past its retention)`);
        replyJson(h, '200 OK', callDetailView(r, await readUsage(r.tenantId, sid)));
      })
      .catch((err: unknown) => storeDown(h, err));
  });
}
