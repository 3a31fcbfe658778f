/**
 * GET /v1/usage: per-tenant usage (tokens by kind, call seconds, estimated cost) by hour, day or
 * month, summed across pods from the usage store, as JSON or CSV for billing export.
 */
import { errorMessage } from '../../errors.js';
import {
  USAGE_GRANULARITIES,
  addUsage,
  bucketStart,
  emptyUsage,
  nextBucket,
  type UsageBucket,
  type UsageGranularity,
  type UsageStore,
  type UsageTotals,
} from '../../store/index.js';
import { usageView, type PriceTable, type UsageTracker } from '../../usage/index.js';
import { adminGuard } from '../admin-auth.js';
import type { RelayContext } from '../context.js';
import { reply, replyError, replyJson } from '../http.js';
import { TENANT_ID, TIME_FORMAT, parseTime } from './admin-query.js';

/** Most buckets one request may span, per granularity (bounds Redis reads per request). */
const MAX_BUCKETS: Readonly<Record<UsageGranularity, number>> = { hour: 24 * 93, day: 1000, month: 120 };

export const USAGE_CSV_HEADER =
  'tenant,start,end,calls,call_seconds,tool_calls,responses,input_text_tokens,input_audio_tokens,' +
  'input_cached_text_tokens,input_cached_audio_tokens,output_text_tokens,output_audio_tokens,estimated_cost_usd';

/** Nano-dollars as an exact decimal string (no float rounding in a bill). */
export function usdFromNano(nano: number): string {
  const whole = Math.floor(nano / 1e9);
  return `${whole}.${String(nano - whole * 1e9).padStart(9, '0')}`;
}

function csvRow(tenant: string, start: number, end: number, u: Readonly<UsageTotals>): string {
  return [
    tenant,
    new Date(start).toISOString(),
    new Date(end).toISOString(),
    u.calls,
    (u.callMs / 1000).toFixed(3),
    u.toolCalls,
    u.responses,
    u.inputText,
    u.inputAudio,
    u.inputTextCached,
    u.inputAudioCached,
    u.outputText,
    u.outputAudio,
    usdFromNano(u.costNanoUsd),
  ].join(',');
}

function jsonTotals(u: Readonly<UsageTotals>): Record<string, unknown> {
  return { calls: u.calls, ...usageView(u), estimatedCostNanoUsd: u.costNanoUsd };
}

export interface AdminUsageDeps {
  store: UsageStore;
  /** Live calls' usage is written every interval; the route asks for a write first so it is fresh. */
  tracker: Pick<UsageTracker, 'flush'>;
  priceTable: PriceTable;
  priceModel: string;
}

type Query =
  | { ok: true; tenant: string | undefined; from: number; to: number; g: UsageGranularity; csv: boolean }
  | { ok: false; message: string };

export function parseUsageQuery(q: URLSearchParams, accept: string, now: number): Query {
  const g = (q.get('granularity') ?? 'day') as UsageGranularity;
  if (!USAGE_GRANULARITIES.includes(g)) return { ok: false, message: 'granularity must be hour, day or month' };
  const tenant = q.get('tenant') ?? undefined;
  if (tenant !== undefined && !TENANT_ID.test(tenant)) return { ok: false, message: 'tenant must be a tenant id' };
  const time = (name: string, dflt: number): number | undefined => {
    const v = q.get(name);
    return v === null || v === '' ? dflt : parseTime(v);
  };
  const from = time('from', bucketStart('month', now));
  const to = time('to', now + 1);
  if (from === undefined || to === undefined) return { ok: false, message: `from and to must be ${TIME_FORMAT}` };
  if (from >= to) return { ok: false, message: 'from must be before to' };
  let n = 0;
  for (let s = bucketStart(g, from); s < to && n <= MAX_BUCKETS[g]; s = nextBucket(g, s)) n++;
  if (n > MAX_BUCKETS[g]) return { ok: false, message: `at most ${MAX_BUCKETS[g]} ${g} buckets per request; narrow from/to or use a coarser granularity` };
  const format = q.get('format');
  if (format !== null && format !== 'json' && format !== 'csv') return { ok: false, message: 'format must be json or csv' };
  return { ok: true, tenant, from, to, g, csv: format === 'csv' || (format === null && /\btext\/csv\b/.test(accept)) };
}

/** Register GET /v1/usage; nothing when ADMIN_TOKEN is unset (404 like any unknown path). */
export function registerAdminUsageRoutes(ctx: RelayContext, auth: (authorizationHeader: string) => boolean, deps: AdminUsageDeps): void {
  if (ctx.config.adminToken === undefined) return;
  const { app, log, clock } = ctx;
  const guard = adminGuard(auth);

  app.get('/v1/usage', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    const q = parseUsageQuery(new URLSearchParams(req.getQuery() ?? ''), req.getHeader('accept'), clock.now());
    if (!q.ok) return replyError(h, '400 Bad Request', 'bad_request', q.message);
    void (async () => {
      // This pod's live calls go in first; other pods' live calls are at most one interval behind.
      await deps.tracker.flush();
      const tenants = q.tenant !== undefined ? [q.tenant] : await deps.store.tenants();
      const rows: { tenant: string; buckets: UsageBucket[] }[] = [];
      for (const t of tenants) rows.push({ tenant: t, buckets: await deps.store.buckets(t, q.g, q.from, q.to) });
      if (q.csv) {
        const lines = [USAGE_CSV_HEADER];
        for (const r of rows) for (const b of r.buckets) lines.push(csvRow(r.tenant, b.start, nextBucket(q.g, b.start), b.totals));
        return reply(h, '200 OK', lines.join('\n') + '\n', {
          'content-type': 'text/csv; charset=utf-8',
          'content-disposition': `attachment; filename="switchboard-usage-${q.g}.csv"`,
        });
      }
      replyJson(h, '200 OK', {
        from: new Date(q.from).toISOString(),
        to: new Date(q.to).toISOString(),
        granularity: q.g,
        currency: 'USD',
        prices: { model: deps.priceModel, takenOn: deps.priceTable.takenOn, source: deps.priceTable.source },
        tenants: rows.map((r) => ({
          tenant: r.tenant,
          total: jsonTotals(r.buckets.reduce((acc, b) => addUsage(acc, b.totals), emptyUsage())),
          buckets: r.buckets.map((b) => ({
            start: new Date(b.start).toISOString(),
            end: new Date(nextBucket(q.g, b.start)).toISOString(),
            ...jsonTotals(b.totals),
          })),
        })),
      });
    })().catch((err: unknown) => {
      log.warn({ code: 'store_unavailable', route: 'admin_usage', err: errorMessage(err) }, 'usage store unavailable');
      replyError(h, '503 Service Unavailable', 'store_unavailable', 'usage store unreachable; try again');
    });
  });
}
