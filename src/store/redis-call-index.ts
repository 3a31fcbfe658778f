/**
 * Reading calls back from Redis in bulk: whole records by CallSid (pipelined), and the newest-first
 * listing of live and ended calls over the start-time indexes `calls` and `t:<tenant>:calls`
 * (sorted sets callSid -> startedAt, written with the call and trimmed with its retention), so a
 * listing never SCANs the keyspace.
 */
import type { Redis } from 'ioredis';
import { isAfterCursor, matchesCallQuery, type CallCursor, type CallPage, type CallPhase, type CallQuery, type CallRecord } from './call-store.js';
import { recordFromHash } from './redis-call-journal.js';
import { CALLS_INDEX, callKey, tenantCallsIndex } from './redis-call-scripts.js';
import { storeUnavailable } from './redis-connection.js';

/** Index entries read per round trip. */
const BATCH = 200;
/** Index entries one listing request reads at most; past it the page is returned short, with a cursor. */
export const MAX_SCAN = 5000;

/** Whole records (hash, transcript, tool calls), one round trip per 100 calls; undefined when gone. */
export async function readCalls(redis: Redis, sids: readonly string[]): Promise<(CallRecord | undefined)[]> {
  const out: (CallRecord | undefined)[] = [];
  try {
    for (let i = 0; i < sids.length; i += 100) {
      const chunk = sids.slice(i, i + 100);
      const p = redis.pipeline();
      for (const sid of chunk) {
        const k = callKey(sid);
        p.hgetall(k).lrange(`${k}:transcript`, 0, -1).hvals(`${k}:tools`);
      }
      const res = (await p.exec()) ?? [];
      chunk.forEach((sid, n) => {
        const h = (res[n * 3]?.[1] ?? {}) as Record<string, string>;
        out.push(h['tenantId'] ? recordFromHash(sid, h, (res[n * 3 + 1]?.[1] ?? []) as string[], (res[n * 3 + 2]?.[1] ?? []) as string[]) : undefined);
      });
    }
  } catch (err) {
    throw storeUnavailable(err);
  }
  return out;
}

const FILTER_FIELDS = ['tenantId', 'phase', 'startedAt', 'outcome', 'fromMasked', 'to'] as const;

/** The filterable fields of each call (no transcript), undefined for calls past their retention. */
async function readFilterFields(redis: Redis, entries: readonly CallCursor[]): Promise<(Parameters<typeof matchesCallQuery>[0] | undefined)[]> {
  const p = redis.pipeline();
  for (const e of entries) p.hmget(callKey(e.callSid), ...FILTER_FIELDS);
  const res = (await p.exec()) ?? [];
  return entries.map((e, i) => {
    const [tenantId, phase, , outcome, fromMasked, to] = (res[i]?.[1] ?? []) as (string | null)[];
    if (!tenantId) return undefined;
    return {
      tenantId,
      phase: (phase ?? 'connecting') as CallPhase,
      startedAt: e.startedAt,
      ...(outcome ? { outcome } : {}),
      ...(fromMasked ? { fromMasked } : {}),
      ...(to ? { to } : {}),
    };
  });
}

/**
 * One page of calls matching `q`, newest first, walking the tenant's index (or the global one) from
 * the cursor. Reads at most `maxScan` index entries; index entries of calls past their retention are
 * removed as they are met.
 */
export async function listIndexed(redis: Redis, q: CallQuery, maxScan = MAX_SCAN): Promise<CallPage> {
  const key = q.tenantId !== undefined ? tenantCallsIndex(q.tenantId) : CALLS_INDEX;
  const min = q.since !== undefined ? String(q.since) : '-inf';
  let after = q.cursor;
  let max = after ? String(after.startedAt) : q.until !== undefined ? `(${q.until}` : '+inf';
  let offset = 0;
  let scanned = 0;
  const out: CallRecord[] = [];
  try {
    while (scanned < maxScan) {
      const raw = await redis.zrange(key, max, min, 'BYSCORE', 'REV', 'LIMIT', offset, BATCH, 'WITHSCORES');
      const entries: CallCursor[] = [];
      for (let i = 0; i + 1 < raw.length; i += 2) entries.push({ callSid: raw[i]!, startedAt: Number(raw[i + 1]) });
      const last = after;
      const fresh = last ? entries.filter((e) => isAfterCursor(e, last)) : entries;
      scanned += entries.length - fresh.length;
      if (fresh.length === 0) {
        if (entries.length < BATCH) return { calls: out };
        offset += entries.length; // a run of calls started in the same millisecond, all before the cursor
        continue;
      }
      const fields = await readFilterFields(redis, fresh);
      const hits: string[] = [];
      const gone: string[] = [];
      let i = 0;
      for (; i < fresh.length && out.length + hits.length < q.limit && scanned < maxScan; i++) {
        scanned++;
        after = fresh[i];
        const f = fields[i];
        if (f === undefined) gone.push(fresh[i]!.callSid);
        else if (matchesCallQuery(f, q)) hits.push(fresh[i]!.callSid);
      }
      if (gone.length > 0) await redis.zrem(key, ...gone);
      for (const r of await readCalls(redis, hits)) if (r) out.push(r);
      const exhausted = i === fresh.length && entries.length < BATCH;
      if (exhausted) return { calls: out };
      if (out.length >= q.limit) break;
      max = String(after!.startedAt);
      offset = 0;
    }
  } catch (err) {
    throw storeUnavailable(err);
  }
  return after ? { calls: out, next: after } : { calls: out };
}
