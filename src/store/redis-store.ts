/**
 * The Redis CallStore: per-call hashes and lists, the active-call index with pod heartbeats, atomic
 * claims and tool-result idempotency records, plus a write-behind journal that restores a pod's live
 * calls after Redis loses data, and the hand-over of a moving call (release, adopt). Connection policy
 * is redis-connection.ts's; key layout is documented in docs/tools.md. Over 400 lines on purpose: the
 * Lua scripts and the journal that must stay consistent with them are one unit.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { errorMessage, SwitchboardError } from '../errors.js';
import {
  DEFAULT_RETENTION_SECONDS,
  type AdoptResult,
  type CallPhase,
  type CallRecord,
  type CallStore,
  type Claim,
  type EmergencyFlag,
  type Migration,
  type MigrationReason,
  type NewCall,
  type ReapResult,
  type StoredToolResult,
  type ToolCallRecord,
  type TranscriptEntry,
} from './call-store.js';
import { createRedis, storeUnavailable, type RedisConnectOptions } from './redis-connection.js';

/*
 * Keys (all under the connection's keyPrefix, `sb:` by default):
 *   call:{CA…}              hash: the call's fields (braces: one Redis Cluster slot per call); `pods`
 *                           and `migrations` are JSON arrays, `migratingAt`/`migratingReason` set while moving
 *   call:{CA…}:transcript   list of JSON TranscriptEntry
 *   call:{CA…}:tools        hash callId -> JSON ToolCallRecord (HSETNX: recorded once)
 *   call:{CA…}:results      hash callId -> JSON StoredToolResult (HSETNX: first result wins)
 *   active                  zset callSid -> last heartbeat of its pod (ms)
 *   pods                    zset pod -> last heartbeat (ms)
 *   pod:<pod>:calls         set of the pod's live callSids
 *   once:<id>               one-time ids (SET NX EX)
 *   t:<tenant>:claim:<key>  exclusive holds (slots, technicians), value = owner
 * Child keys copy the call hash's TTL: live TTL from the start, the tenant's retention after the end.
 */

const callKey = (sid: string): string => `call:{${sid}}`;
const CHILDREN = [':transcript', ':tools', ':results'] as const;

/** Runs only if the call hash exists (-1 otherwise: data lost, or an unknown call). Children copy its TTL. */
const CALL_WRITE = `
local call = KEYS[1]
if redis.call('EXISTS', call) == 0 then return -1 end
local op = ARGV[1]
local r = 1
if op == 'phase' then
  if redis.call('HGET', call, 'phase') == 'ended' then return 0 end
  redis.call('HSET', call, 'phase', ARGV[3], 'updatedAt', ARGV[2])
  if ARGV[3] ~= 'migrating' then redis.call('HDEL', call, 'migratingAt', 'migratingReason') end
elseif op == 'migrate' then
  if redis.call('HGET', call, 'phase') == 'ended' then return 0 end
  redis.call('HSET', call, 'phase', 'migrating', 'migratingAt', ARGV[3], 'migratingReason', ARGV[4], 'updatedAt', ARGV[2])
elseif op == 'field' then
  redis.call('HSET', call, ARGV[3], ARGV[4], 'updatedAt', ARGV[2])
elseif op == 'push' then
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('HSET', call, 'updatedAt', ARGV[2])
elseif op == 'hsetnx' then
  r = redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[4])
  redis.call('HSET', call, 'updatedAt', ARGV[2])
end
if KEYS[2] then
  local ttl = redis.call('PTTL', call)
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return r`;

/** First result wins; returns the stored JSON. TTL follows the call, or `ARGV[3]` s for unknown calls. */
const PUT_RESULT = `
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl)
elseif redis.call('PTTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return redis.call('HGET', KEYS[2], ARGV[1])`;

/**
 * KEYS: call hash, active, children. ARGV: outcome, now, retention s, prefix, callSid, byPod ('' = any).
 * 0: not ended, because byPod no longer holds the call (released, or adopted by another pod).
 */
const END_CALL = `
local call = KEYS[1]
if redis.call('EXISTS', call) == 0 then return -1 end
local phase = redis.call('HGET', call, 'phase')
if ARGV[6] ~= '' and phase ~= 'ended' and (phase == 'migrating' or redis.call('HGET', call, 'pod') ~= ARGV[6]) then return 0 end
if phase ~= 'ended' then
  redis.call('HSET', call, 'phase', 'ended', 'outcome', ARGV[1], 'endedAt', ARGV[2], 'updatedAt', ARGV[2])
end
local pod = redis.call('HGET', call, 'pod')
if pod then redis.call('SREM', ARGV[4] .. 'pod:' .. pod .. ':calls', ARGV[5]) end
redis.call('ZREM', KEYS[2], ARGV[5])
for i = 3, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
redis.call('EXPIRE', call, ARGV[3])
return 1`;

/**
 * KEYS: call hash, the pod's call set. ARGV: pod, callSid, stop time ('' = keep). The record stays live
 * for the next pod; while it still waits for one, its gap starts at this pod's stop.
 */
const RELEASE_CALL = `
redis.call('SREM', KEYS[2], ARGV[2])
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'pod') == ARGV[1] and redis.call('HGET', KEYS[1], 'phase') == 'migrating' then
  redis.call('HSET', KEYS[1], 'migratingAt', ARGV[3])
end
return 1`;

const CLAIM = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

/** KEYS: pods, active. ARGV: pod, now, prefix. */
const HEARTBEAT = `
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local calls = redis.call('SMEMBERS', ARGV[3] .. 'pod:' .. ARGV[1] .. ':calls')
for _, sid in ipairs(calls) do redis.call('ZADD', KEYS[2], 'XX', ARGV[2], sid) end
return #calls`;

/*
 * One dead pod, atomically: whoever removes the pod from the zset reaps its calls; a second
 * survivor running the same script finds the pod gone (or fresh again) and does nothing.
 * KEYS: pods, active. ARGV: pod, cutoff, now, prefix, default retention s.
 */
const REAP_POD = `
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) >= tonumber(ARGV[2]) then return {} end
redis.call('ZREM', KEYS[1], ARGV[1])
local set = ARGV[4] .. 'pod:' .. ARGV[1] .. ':calls'
local out = {'reaped'}
for _, sid in ipairs(redis.call('SMEMBERS', set)) do
  local call = ARGV[4] .. 'call:{' .. sid .. '}'
  redis.call('ZREM', KEYS[2], sid)
  local phase = redis.call('HGET', call, 'phase')
  if phase == 'migrating' then
    -- Released before the pod died: its adopter's (the active index keeps it meanwhile).
    redis.call('ZADD', KEYS[2], ARGV[3], sid)
  elseif phase and phase ~= 'ended' then
    redis.call('HSET', call, 'phase', 'ended', 'outcome', 'abandoned', 'endedAt', ARGV[3], 'updatedAt', ARGV[3])
    local ret = tonumber(redis.call('HGET', call, 'retention')) or tonumber(ARGV[5])
    redis.call('EXPIRE', call, ret)
    redis.call('EXPIRE', call .. ':transcript', ret)
    redis.call('EXPIRE', call .. ':tools', ret)
    redis.call('EXPIRE', call .. ':results', ret)
    out[#out + 1] = sid
  end
end
redis.call('DEL', set)
return out`;

/*
 * One adopter wins: the call must be released (phase migrating). The migration's JSON is built here
 * from the stored strings (numbers kept exactly as written).
 * KEYS: call hash, active. ARGV: pod, streamSid, now, prefix, callSid, new leg's traceparent ('' = none).
 * Returns {'ok', migration JSON, old leg's traceparent} or {'unknown' | 'ended' | 'live'}.
 */
const ADOPT_CALL = `
local call = KEYS[1]
if redis.call('EXISTS', call) == 0 then return {'unknown'} end
local phase = redis.call('HGET', call, 'phase')
if phase == 'ended' then return {'ended'} end
if phase ~= 'migrating' then return {'live'} end
local from = redis.call('HGET', call, 'pod') or ''
local at = redis.call('HGET', call, 'migratingAt') or ARGV[3]
local reason = redis.call('HGET', call, 'migratingReason') or 'crash'
local m = '{"at":' .. at .. ',"from":' .. cjson.encode(from) .. ',"to":' .. cjson.encode(ARGV[1]) .. ',"reason":' .. cjson.encode(reason) .. '}'
local pods = redis.call('HGET', call, 'pods') or ('[' .. cjson.encode(from) .. ']')
local migrations = redis.call('HGET', call, 'migrations') or '[]'
local function append(list, item)
  if list == '[]' then return '[' .. item .. ']' end
  return string.sub(list, 1, -2) .. ',' .. item .. ']'
end
redis.call('HSET', call, 'pod', ARGV[1], 'phase', 'connecting', 'streamSid', ARGV[2], 'updatedAt', ARGV[3],
  'pods', append(pods, cjson.encode(ARGV[1])), 'migrations', append(migrations, m))
redis.call('HDEL', call, 'migratingAt', 'migratingReason')
local oldTrace = redis.call('HGET', call, 'traceparent') or ''
if ARGV[6] ~= '' then redis.call('HSET', call, 'traceparent', ARGV[6]) end
redis.call('SREM', ARGV[4] .. 'pod:' .. from .. ':calls', ARGV[5])
redis.call('SADD', ARGV[4] .. 'pod:' .. ARGV[1] .. ':calls', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
return {'ok', m, oldTrace}`;

interface Scripts {
  sbAdoptCall(...args: (string | number)[]): Promise<string[]>;
  sbCallWrite(...args: (string | number)[]): Promise<number>;
  sbPutResult(...args: (string | number)[]): Promise<string | null>;
  sbEndCall(...args: (string | number)[]): Promise<number>;
  sbClaim(...args: (string | number)[]): Promise<string>;
  sbRelease(...args: (string | number)[]): Promise<number>;
  sbReleaseCall(...args: (string | number)[]): Promise<number>;
  sbHeartbeat(...args: (string | number)[]): Promise<number>;
  sbReapPod(...args: (string | number)[]): Promise<string[]>;
}

/** Everything this pod wrote for one of its calls: rewritten whole after Redis comes back. */
interface Journal {
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

export interface RedisCallStoreOptions {
  log?: Logger;
  now?: () => number;
  /** TTL of a live call's keys, refreshed by nothing: longer than the longest call (default 1 day). */
  liveTtlSeconds?: number;
  /** Delay before retrying a failed journaled write (default 500 ms, doubling to 5 s). */
  retryMs?: number;
}

/**
 * CallStore on Redis. Writes for calls started through this instance are journaled in memory until
 * the call ends and is persisted: a failed write (Redis down, timeout) is retried, and after a
 * reconnect the whole journal is rewritten, so Redis losing its data mid-call loses nothing this
 * pod acknowledged (see docs/tools.md, "Durability").
 */
export class RedisCallStore implements CallStore {
  private readonly s: Scripts;
  private readonly prefix: string;
  private readonly journals = new Map<string, Journal>();
  private readonly now: () => number;
  private readonly liveTtl: number;
  private readonly retryMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private closed = false;
  private readonly resyncListeners = new Set<(callSids: string[]) => void>();

  /** Open a connection with the relay's policy (redis-connection.ts) and wrap it. */
  static connect(url: string, o: RedisConnectOptions & RedisCallStoreOptions = {}): RedisCallStore {
    return new RedisCallStore(createRedis(url, o), o);
  }

  constructor(
    /** Owned: close() quits it. */
    readonly redis: Redis,
    private readonly o: RedisCallStoreOptions = {},
  ) {
    this.now = o.now ?? Date.now;
    this.liveTtl = o.liveTtlSeconds ?? 86_400;
    this.retryMs = o.retryMs ?? 500;
    this.retryDelay = this.retryMs;
    this.prefix = redis.options.keyPrefix ?? '';
    redis.defineCommand('sbCallWrite', { lua: CALL_WRITE, numberOfKeys: 2 });
    redis.defineCommand('sbPutResult', { lua: PUT_RESULT, numberOfKeys: 2 });
    redis.defineCommand('sbEndCall', { lua: END_CALL, numberOfKeys: 5 });
    redis.defineCommand('sbClaim', { lua: CLAIM, numberOfKeys: 1 });
    redis.defineCommand('sbRelease', { lua: RELEASE, numberOfKeys: 1 });
    redis.defineCommand('sbReleaseCall', { lua: RELEASE_CALL, numberOfKeys: 2 });
    redis.defineCommand('sbHeartbeat', { lua: HEARTBEAT, numberOfKeys: 2 });
    redis.defineCommand('sbReapPod', { lua: REAP_POD, numberOfKeys: 2 });
    redis.defineCommand('sbAdoptCall', { lua: ADOPT_CALL, numberOfKeys: 2 });
    this.s = redis as unknown as Scripts;
    // A new connection may face an empty Redis (restart without persistence): rewrite our live calls.
    let connectedBefore = false;
    redis.on('ready', () => {
      if (!connectedBefore) {
        connectedBefore = true;
        return;
      }
      for (const j of this.journals.values()) j.dirty = true;
      this.scheduleResync(0);
    });
  }

  /** Told which calls were rewritten after a reconnect or a failed write (tests, logs). */
  onResynced(fn: (callSids: string[]) => void): () => void {
    this.resyncListeners.add(fn);
    return () => this.resyncListeners.delete(fn);
  }

  /** Calls whose writes are held in memory awaiting Redis. */
  get pendingCalls(): number {
    let n = 0;
    for (const j of this.journals.values()) if (j.dirty) n++;
    return n;
  }

  // --- writes --------------------------------------------------------------------------------------

  async startCall(c: NewCall): Promise<void> {
    const retention = c.retentionSeconds ?? DEFAULT_RETENTION_SECONDS;
    const j: Journal = {
      call: { ...c },
      retentionSeconds: retention,
      phase: 'connecting',
      updatedAt: c.startedAt,
      pods: [c.pod],
      migrations: [],
      transcript: [],
      tools: new Map(),
      results: new Map(),
      claims: new Map(),
      dirty: false,
    };
    this.journals.set(c.callSid, j);
    await this.guard(j, () => this.writeWhole(j));
  }

  setPhase(callSid: string, phase: CallPhase): Promise<void> {
    const j = this.journals.get(callSid);
    if (j && j.phase !== 'ended') {
      j.phase = phase;
      if (phase !== 'migrating') delete j.migrating;
      j.updatedAt = this.now();
    }
    return this.callWrite(callSid, j, ['phase', this.now(), phase]);
  }

  async beginMigration(callSid: string, m: { reason?: MigrationReason; at?: number } = {}): Promise<void> {
    const j = this.journals.get(callSid);
    // Writes held in memory (Redis was away) would be missing for the pod that resumes the call.
    if (j?.dirty) throw new SwitchboardError('store_unavailable', 'call writes are still held in memory', true);
    const at = m.at ?? this.now();
    const reason = m.reason ?? 'drain';
    if (j && j.phase !== 'ended') {
      j.phase = 'migrating';
      j.migrating = { at, reason };
      j.updatedAt = this.now();
    }
    let r: number;
    try {
      r = await this.s.sbCallWrite(callKey(callSid), callKey(callSid), 'migrate', this.now(), at, reason);
    } catch (err) {
      throw storeUnavailable(err);
    }
    if (r !== 1) throw new SwitchboardError('store_unavailable', r === -1 ? 'call record missing in Redis' : 'call already ended', true);
  }

  async releaseCall(callSid: string, pod: string, at?: number): Promise<void> {
    // The record is the adopter's from here: this pod's journal must never write it back.
    this.journals.delete(callSid);
    try {
      await this.s.sbReleaseCall(callKey(callSid), `pod:${pod}:calls`, pod, callSid, at ?? '');
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  appendTranscript(callSid: string, entry: TranscriptEntry): Promise<void> {
    const json = JSON.stringify(entry);
    const j = this.journals.get(callSid);
    j?.transcript.push(json);
    return this.callWrite(callSid, j, ['push', this.now(), json], ':transcript');
  }

  recordToolCall(callSid: string, rec: ToolCallRecord): Promise<void> {
    const json = JSON.stringify(rec);
    const j = this.journals.get(callSid);
    if (j && !j.tools.has(rec.callId)) j.tools.set(rec.callId, json);
    return this.callWrite(callSid, j, ['hsetnx', this.now(), rec.callId, json], ':tools');
  }

  setSummary(callSid: string, summary: unknown): Promise<void> {
    const json = JSON.stringify(summary);
    const j = this.journals.get(callSid);
    if (j) j.summary = json;
    return this.callWrite(callSid, j, ['field', this.now(), 'summary', json]);
  }

  flagEmergency(callSid: string, flag: EmergencyFlag): Promise<void> {
    const json = JSON.stringify(flag);
    const j = this.journals.get(callSid);
    if (j) j.emergency = json;
    return this.callWrite(callSid, j, ['field', this.now(), 'emergency', json]);
  }

  async endCall(callSid: string, outcome: string, retentionSeconds: number, byPod?: string): Promise<void> {
    const j = this.journals.get(callSid);
    const now = this.now();
    if (j && byPod !== undefined && j.phase === 'migrating') {
      this.journals.delete(callSid); // released: the record is its adopter's
      return;
    }
    if (j) {
      if (j.phase !== 'ended') {
        j.phase = 'ended';
        j.outcome = outcome;
        j.endedAt = now;
      }
      j.retentionSeconds = retentionSeconds;
      j.updatedAt = now;
    }
    const k = callKey(callSid);
    const run = async (): Promise<number> =>
      this.s.sbEndCall(k, 'active', ...CHILDREN.map((c) => k + c), outcome, now, retentionSeconds, this.prefix, callSid, byPod ?? '');
    if (!j) {
      await run();
      return;
    }
    let lost = false;
    await this.guard(j, async () => {
      const r = await run();
      if (r === -1) throw new SwitchboardError('store_unavailable', 'call record missing in Redis', true);
      lost = r === 0;
    });
    // Adopted by another pod meanwhile: forget it (a resync must never write it back as ours).
    if (lost) this.journals.delete(callSid);
    if (!j.dirty) this.journals.delete(callSid);
  }

  async adoptCall(callSid: string, m: { pod: string; streamSid: string; now: number; traceparent?: string }): Promise<AdoptResult> {
    const k = callKey(callSid);
    let r: string[];
    try {
      r = await this.s.sbAdoptCall(k, 'active', m.pod, m.streamSid, m.now, this.prefix, callSid, m.traceparent ?? '');
    } catch (err) {
      throw storeUnavailable(err);
    }
    if (r[0] !== 'ok') return { ok: false, reason: (r[0] ?? 'unknown') as 'unknown' | 'ended' | 'live' };
    const migration = JSON.parse(r[1] ?? '{}') as Migration;
    let res;
    try {
      res = await this.redis.multi().hgetall(k).lrange(`${k}:transcript`, 0, -1).hgetall(`${k}:tools`).hgetall(`${k}:results`).exec();
    } catch (err) {
      throw storeUnavailable(err);
    }
    const h = (res?.[0]?.[1] ?? {}) as Record<string, string>;
    const transcript = (res?.[1]?.[1] ?? []) as string[];
    const tools = (res?.[2]?.[1] ?? {}) as Record<string, string>;
    const results = (res?.[3]?.[1] ?? {}) as Record<string, string>;
    const record = recordFromHash(callSid, h, transcript, Object.values(tools));
    if (r[2]) record.traceparent = r[2];
    else delete record.traceparent;
    // This pod now journals the call like one it started.
    this.journals.set(callSid, {
      call: {
        callSid,
        tenantId: record.tenantId,
        pod: m.pod,
        startedAt: record.startedAt,
        streamSid: m.streamSid,
        ...(m.traceparent !== undefined ? { traceparent: m.traceparent } : {}),
        ...(record.fromMasked !== undefined ? { fromMasked: record.fromMasked } : {}),
        ...(record.to !== undefined ? { to: record.to } : {}),
      },
      retentionSeconds: Number(h['retention'] ?? DEFAULT_RETENTION_SECONDS),
      phase: record.phase,
      updatedAt: record.updatedAt,
      ...(h['summary'] !== undefined ? { summary: h['summary'] } : {}),
      ...(h['emergency'] !== undefined ? { emergency: h['emergency'] } : {}),
      pods: [...record.pods],
      migrations: record.migrations.map((x) => ({ ...x })),
      transcript: [...transcript],
      tools: new Map(Object.entries(tools)),
      results: new Map(Object.entries(results)),
      claims: new Map(),
      dirty: false,
    });
    return { ok: true, record, migration };
  }

  noteMigrationGap(callSid: string, gapMs: number): Promise<void> {
    const j = this.journals.get(callSid);
    const last = j?.migrations.at(-1);
    if (!j || !last) return Promise.resolve(); // only the adopter, which journals the call, notes its gap
    last.gapMs = gapMs;
    j.updatedAt = this.now();
    return this.callWrite(callSid, j, ['field', this.now(), 'migrations', JSON.stringify(j.migrations)]);
  }

  // --- reads ---------------------------------------------------------------------------------------

  async getCall(callSid: string): Promise<CallRecord | undefined> {
    const k = callKey(callSid);
    let res;
    try {
      res = await this.redis.multi().hgetall(k).lrange(`${k}:transcript`, 0, -1).hvals(`${k}:tools`).exec();
    } catch (err) {
      const j = this.journals.get(callSid);
      if (j) return recordFromJournal(j);
      throw storeUnavailable(err);
    }
    const h = (res?.[0]?.[1] ?? {}) as Record<string, string>;
    if (!h['tenantId']) {
      const j = this.journals.get(callSid);
      return j ? recordFromJournal(j) : undefined;
    }
    return recordFromHash(callSid, h, (res?.[1]?.[1] ?? []) as string[], (res?.[2]?.[1] ?? []) as string[]);
  }

  async listActive(): Promise<CallRecord[]> {
    const sids = await this.redis.zrange('active', '0', '-1').catch((err: unknown) => {
      throw storeUnavailable(err);
    });
    const out: CallRecord[] = [];
    // Pipelined reads in chunks: one round trip per 100 calls.
    for (let i = 0; i < sids.length; i += 100) {
      const chunk = sids.slice(i, i + 100);
      const p = this.redis.pipeline();
      for (const sid of chunk) {
        const k = callKey(sid);
        p.hgetall(k).lrange(`${k}:transcript`, 0, -1).hvals(`${k}:tools`);
      }
      const res = (await p.exec()) ?? [];
      chunk.forEach((sid, n) => {
        const h = (res[n * 3]?.[1] ?? {}) as Record<string, string>;
        if (h['tenantId'] && h['phase'] !== 'ended') {
          out.push(recordFromHash(sid, h, (res[n * 3 + 1]?.[1] ?? []) as string[], (res[n * 3 + 2]?.[1] ?? []) as string[]));
        }
      });
    }
    return out;
  }

  async consumeOnce(id: string, ttlSeconds: number): Promise<boolean> {
    try {
      return (await this.redis.set(`once:${id}`, '1', 'EX', ttlSeconds, 'NX')) === 'OK';
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  async getToolResult(callSid: string, callId: string): Promise<StoredToolResult | undefined> {
    // This pod's journal answers first: it holds every result this pod acknowledged, Redis or not.
    const mine = this.journals.get(callSid)?.results.get(callId);
    if (mine) return JSON.parse(mine) as StoredToolResult;
    try {
      const v = await this.redis.hget(`${callKey(callSid)}:results`, callId);
      return v ? (JSON.parse(v) as StoredToolResult) : undefined;
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  async putToolResult(callSid: string, callId: string, result: StoredToolResult): Promise<StoredToolResult> {
    const j = this.journals.get(callSid);
    const mine = j?.results.get(callId);
    if (mine) return JSON.parse(mine) as StoredToolResult;
    const json = JSON.stringify(result);
    const k = callKey(callSid);
    if (!j) {
      try {
        const stored = await this.s.sbPutResult(k, `${k}:results`, callId, json, this.liveTtl);
        return stored ? (JSON.parse(stored) as StoredToolResult) : result;
      } catch (err) {
        throw storeUnavailable(err);
      }
    }
    // Acknowledged from here on: the journal keeps it until Redis has it.
    j.results.set(callId, json);
    let stored: string | null = json;
    await this.guard(j, async () => {
      stored = await this.s.sbPutResult(k, `${k}:results`, callId, json, this.liveTtl);
    });
    if (stored !== null && stored !== json) j.results.set(callId, stored);
    return JSON.parse(stored ?? json) as StoredToolResult;
  }

  async claim(c: Claim): Promise<string> {
    let holder: string;
    try {
      holder = await this.s.sbClaim(claimKey(c.tenantId, c.key), c.owner, c.ttlSeconds);
    } catch (err) {
      throw storeUnavailable(err);
    }
    if (holder === c.owner && c.callSid !== undefined) this.journals.get(c.callSid)?.claims.set(`${c.tenantId}\u0000${c.key}`, { ...c });
    return holder;
  }

  async release(tenantId: string, key: string, owner: string): Promise<boolean> {
    for (const j of this.journals.values()) {
      const held = j.claims.get(`${tenantId}\u0000${key}`);
      if (held?.owner === owner) j.claims.delete(`${tenantId}\u0000${key}`);
    }
    try {
      return (await this.s.sbRelease(claimKey(tenantId, key), owner)) === 1;
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  async heartbeat(pod: string, now: number): Promise<void> {
    try {
      await this.s.sbHeartbeat('pods', 'active', pod, now, this.prefix);
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  async reapDeadPods(now: number, staleMs: number): Promise<ReapResult> {
    const cutoff = now - staleMs;
    const out: ReapResult = { pods: [], calls: [] };
    try {
      const stale = await this.redis.zrangebyscore('pods', '-inf', `(${cutoff}`);
      for (const pod of stale) {
        // Empty when another survivor got there first (or the pod beat again): only count our own.
        const [reaped, ...calls] = await this.s.sbReapPod('pods', 'active', pod, cutoff, now, this.prefix, DEFAULT_RETENTION_SECONDS);
        if (reaped === undefined) continue;
        out.pods.push(pod);
        out.calls.push(...calls);
      }
    } catch (err) {
      throw storeUnavailable(err);
    }
    return out;
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.redis.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pendingCalls > 0) {
      this.o.log?.warn({ code: 'store_unavailable', calls: this.pendingCalls }, 'closing with unsynced call writes');
    }
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  // --- journal -------------------------------------------------------------------------------------

  private async callWrite(callSid: string, j: Journal | undefined, args: (string | number)[], child?: string): Promise<void> {
    const k = callKey(callSid);
    const keys = [k, child ? k + child : k];
    if (!j) {
      try {
        await this.s.sbCallWrite(...keys, ...args);
      } catch (err) {
        throw storeUnavailable(err);
      }
      return;
    }
    await this.guard(j, async () => {
      if ((await this.s.sbCallWrite(...keys, ...args)) === -1) {
        // Our live call vanished from Redis: it lost data. Rewrite the call from the journal.
        throw new SwitchboardError('store_unavailable', 'call record missing in Redis', true);
      }
    });
  }

  /** Run a journaled write; on failure keep it in memory and retry instead of failing the call. */
  private async guard(j: Journal, write: () => Promise<unknown>): Promise<void> {
    if (j.dirty) {
      // An earlier write is pending: the resync rewrites everything, including this one.
      this.scheduleResync(this.retryDelay);
      return;
    }
    try {
      await write();
    } catch (err) {
      if (!j.dirty) {
        this.o.log?.warn(
          { code: 'store_unavailable', callSid: j.call.callSid, err: errorMessage(err) },
          'call write held in memory until Redis answers',
        );
      }
      j.dirty = true;
      this.scheduleResync(this.retryDelay);
    }
  }

  private scheduleResync(ms: number): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.resyncDirty();
    }, ms);
    this.retryTimer.unref();
  }

  private async resyncDirty(): Promise<void> {
    if (this.closed) return;
    const done: string[] = [];
    for (const [sid, j] of this.journals) {
      if (!j.dirty) continue;
      // Clear first: writeWhole snapshots synchronously, so writes made while it runs go straight
      // to Redis after it (same connection, in order) instead of being skipped as "pending".
      j.dirty = false;
      try {
        await this.writeWhole(j);
        done.push(sid);
        if (j.phase === 'ended') this.journals.delete(sid);
      } catch (err) {
        j.dirty = true;
        this.o.log?.debug({ code: 'store_unavailable', callSid: sid, err: errorMessage(err) }, 'resync failed');
        this.retryDelay = Math.min(this.retryDelay * 2, 5000);
        this.scheduleResync(this.retryDelay);
        break;
      }
    }
    if (this.pendingCalls === 0) this.retryDelay = this.retryMs;
    if (done.length > 0) {
      this.o.log?.info({ calls: done.length }, 'call state rewritten to Redis');
      for (const fn of this.resyncListeners) fn(done);
    }
  }

  /** One transaction rewriting the call exactly as the journal has it (idempotent). */
  private async writeWhole(j: Journal): Promise<void> {
    const sid = j.call.callSid;
    const k = callKey(sid);
    const now = this.now();
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
    const ttl = ended ? j.retentionSeconds : this.liveTtl;
    const m = this.redis.multi();
    m.del(k, `${k}:transcript`, `${k}:tools`);
    m.hset(k, fields);
    if (j.transcript.length > 0) m.rpush(`${k}:transcript`, ...j.transcript);
    if (j.tools.size > 0) m.hset(`${k}:tools`, Object.fromEntries(j.tools));
    if (j.results.size > 0) m.hset(`${k}:results`, Object.fromEntries(j.results));
    for (const key of [k, ...CHILDREN.map((c) => k + c)]) m.expire(key, ttl);
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
    for (const c of j.claims.values()) {
      const holder = await this.s.sbClaim(claimKey(c.tenantId, c.key), c.owner, c.ttlSeconds);
      if (holder !== c.owner) {
        this.o.log?.error({ code: 'conflict', callSid: sid, key: c.key }, 'a claim this call held was taken while Redis was away');
      }
    }
  }
}

function claimKey(tenantId: string, key: string): string {
  return `t:${tenantId}:claim:${key}`;
}


function parseList<T>(items: readonly string[]): T[] {
  return items.map((s) => JSON.parse(s) as T);
}

function recordFromHash(sid: string, h: Record<string, string>, transcript: readonly string[], tools: readonly string[]): CallRecord {
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

function recordFromJournal(j: Journal): CallRecord {
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
