/**
 * The Redis CallStore's write-behind journal (everything this pod wrote for one of its live calls,
 * rewritten whole after Redis comes back) and the decoding of a call record from Redis or from it.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type {
  CallPhase,
  CallRecord,
  Claim,
  EmergencyFlag,
  Migration,
  MigrationReason,
  NewCall,
  ToolCallRecord,
  TranscriptEntry,
} from './call-store.js';
import { CALLS_INDEX, CHILDREN, callKey, claimKey, tenantCallsIndex, type Scripts } from './redis-call-scripts.js';
import { storeUnavailable } from './redis-connection.js';

/** Everything this pod wrote for one of its calls: rewritten whole after Redis comes back. */
export interface Journal {
  call: NewCall;
  retentionSeconds: number;
  phase: CallPhase;
  updatedAt: number;
  endedAt?: number;
  outcome?: string;
  summary?: string;
  emergency?: string;
  pods: string[];
  migrations: Migration[];
  /** Set by beginMigration while the call waits to move. */
  migrating?: { at: number; reason: MigrationReason };
  transcript: string[];
  tools: Map<string, string>;
  results: Map<string, string>;
  claims: Map<string, Claim>;
  dirty: boolean;
}

/** What rewriting a journal needs from its store. */
export interface JournalWriter {
  redis: Redis;
  s: Scripts;
  now: () => number;
  /** TTL of a live call's keys (s). */
  liveTtl: number;
  /** The connection's key prefix (scripts build key names). */
  prefix: string;
  log?: Logger | undefined;
}

/** Oldest entries of the global call index checked for expiry on each call write. */
const PRUNE_PER_WRITE = 4;

/** One transaction rewriting the call exactly as the journal has it (idempotent). */
export async function writeJournal(w: JournalWriter, j: Journal): Promise<void> {
  const sid = j.call.callSid;
  const k = callKey(sid);
  const now = w.now();
  const fields: Record<string, string> = {
    tenantId: j.call.tenantId,
    pod: j.call.pod,
    phase: j.phase,
    startedAt: String(j.call.startedAt),
    updatedAt: String(j.updatedAt),
    retention: String(j.retentionSeconds),
    pods: JSON.stringify(j.pods),
    migrations: JSON.stringify(j.migrations),
  };
  if (j.call.streamSid !== undefined) fields['streamSid'] = j.call.streamSid;
  if (j.call.fromMasked !== undefined) fields['fromMasked'] = j.call.fromMasked;
  if (j.call.to !== undefined) fields['to'] = j.call.to;
  if (j.call.traceparent !== undefined) fields['traceparent'] = j.call.traceparent;
  if (j.endedAt !== undefined) fields['endedAt'] = String(j.endedAt);
  if (j.outcome !== undefined) fields['outcome'] = j.outcome;
  if (j.summary !== undefined) fields['summary'] = j.summary;
  if (j.emergency !== undefined) fields['emergency'] = j.emergency;
  if (j.migrating !== undefined) {
    fields['migratingAt'] = String(j.migrating.at);
    fields['migratingReason'] = j.migrating.reason;
  }
  const ended = j.phase === 'ended';
  const ttl = ended ? j.retentionSeconds : w.liveTtl;
  const m = w.redis.multi();
  m.del(k, `${k}:transcript`, `${k}:tools`);
  m.hset(k, fields);
  if (j.transcript.length > 0) m.rpush(`${k}:transcript`, ...j.transcript);
  if (j.tools.size > 0) m.hset(`${k}:tools`, Object.fromEntries(j.tools));
  if (j.results.size > 0) m.hset(`${k}:results`, Object.fromEntries(j.results));
  for (const key of [k, ...CHILDREN.map((c) => k + c)]) m.expire(key, ttl);
  // The start-time indexes of GET /v1/calls; the tenant's is cut at its retention (plus the live TTL).
  const tenantIndex = tenantCallsIndex(j.call.tenantId);
  m.zadd(CALLS_INDEX, j.call.startedAt, sid);
  m.zadd(tenantIndex, j.call.startedAt, sid);
  m.zremrangebyscore(tenantIndex, '-inf', `(${now - (j.retentionSeconds + w.liveTtl) * 1000}`);
  if (ended) {
    m.zrem('active', sid);
    m.srem(`pod:${j.call.pod}:calls`, sid);
  } else {
    m.zadd('active', now, sid);
    m.sadd(`pod:${j.call.pod}:calls`, sid);
    m.zadd('pods', 'GT', now, j.call.pod);
  }
  const res = await m.exec();
  const failed = res?.find(([err]) => err);
  if (!res || failed) throw storeUnavailable(failed?.[0] ?? new Error('transaction aborted'));
  await w.s.sbPruneIndex(CALLS_INDEX, w.prefix, PRUNE_PER_WRITE);
  for (const c of j.claims.values()) {
    const holder = await w.s.sbClaim(claimKey(c.tenantId, c.key), c.owner, c.ttlSeconds);
    if (holder !== c.owner) {
      w.log?.error({ code: 'conflict', callSid: sid, key: c.key }, 'a claim this call held was taken while Redis was away');
    }
  }
}

function parseList<T>(items: readonly string[]): T[] {
  return items.map((s) => JSON.parse(s) as T);
}

export function recordFromHash(sid: string, h: Record<string, string>, transcript: readonly string[], tools: readonly string[]): CallRecord {
  const r: CallRecord = {
    callSid: sid,
    tenantId: h['tenantId'] ?? '',
    pod: h['pod'] ?? '',
    pods: h['pods'] !== undefined ? (JSON.parse(h['pods']) as string[]) : [h['pod'] ?? ''],
    migrations: h['migrations'] !== undefined ? (JSON.parse(h['migrations']) as Migration[]) : [],
    phase: (h['phase'] ?? 'connecting') as CallPhase,
    startedAt: Number(h['startedAt'] ?? 0),
    updatedAt: Number(h['updatedAt'] ?? 0),
    transcript: parseList<TranscriptEntry>(transcript),
    tools: parseList<ToolCallRecord>(tools).sort((a, b) => a.startedAt - b.startedAt),
  };
  if (h['streamSid'] !== undefined) r.streamSid = h['streamSid'];
  if (h['fromMasked'] !== undefined) r.fromMasked = h['fromMasked'];
  if (h['to'] !== undefined) r.to = h['to'];
  if (h['traceparent'] !== undefined) r.traceparent = h['traceparent'];
  if (h['endedAt'] !== undefined) r.endedAt = Number(h['endedAt']);
  if (h['outcome'] !== undefined) r.outcome = h['outcome'];
  if (h['summary'] !== undefined) r.summary = JSON.parse(h['summary']) as unknown;
  if (h['emergency'] !== undefined) r.emergency = JSON.parse(h['emergency']) as EmergencyFlag;
  if (h['migratingAt'] !== undefined) r.migratingAt = Number(h['migratingAt']);
  if (h['migratingReason'] !== undefined) r.migratingReason = h['migratingReason'] as MigrationReason;
  return r;
}

export function recordFromJournal(j: Journal): CallRecord {
  const { retentionSeconds: _ignored, ...call } = j.call;
  const r: CallRecord = {
    ...call,
    pods: [...j.pods],
    migrations: j.migrations.map((m) => ({ ...m })),
    phase: j.phase,
    updatedAt: j.updatedAt,
    transcript: parseList<TranscriptEntry>(j.transcript),
    tools: parseList<ToolCallRecord>([...j.tools.values()]).sort((a, b) => a.startedAt - b.startedAt),
  };
  if (j.endedAt !== undefined) r.endedAt = j.endedAt;
  if (j.outcome !== undefined) r.outcome = j.outcome;
  if (j.summary !== undefined) r.summary = JSON.parse(j.summary) as unknown;
  if (j.emergency !== undefined) r.emergency = JSON.parse(j.emergency) as EmergencyFlag;
  if (j.migrating !== undefined) {
    r.migratingAt = j.migrating.at;
    r.migratingReason = j.migrating.reason;
  }
  return r;
}
