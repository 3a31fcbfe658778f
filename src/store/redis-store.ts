/**
 * The Redis CallStore: per-call hashes and lists, the active-call index with pod heartbeats, atomic
 * claims and tool-result idempotency records, plus a write-behind journal that restores a pod's live
 * calls after Redis loses data, and the hand-over of a moving call (begin, release, adopt). Connection
 * policy is redis-connection.ts's; keys and Lua scripts are redis-call-scripts.ts's, the journal and
 * record decoding redis-call-journal.ts's, heartbeats and reaping redis-pods.ts's; key layout is
 * documented in docs/tools.md. Near 500 lines on purpose: every CallStore method keeps this pod's
 * journal and Redis consistent, and splitting the class would split that one invariant.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { errorMessage, SwitchboardError } from '../errors.js';
import {
  DEFAULT_RETENTION_SECONDS,
  pageOfCalls,
  type CallPage,
  type CallPhase,
  type CallQuery,
  type CallRecord,
  type CallStore,
  type Claim,
  type EmergencyFlag,
  type AdoptResult,
  type Migration,
  type MigrationReason,
  type NewCall,
  type ReapResult,
  type StoredToolResult,
  type ToolCallRecord,
  type TranscriptEntry,
} from './call-store.js';
import { listIndexed, readCalls } from './redis-call-index.js';
import { recordFromHash, recordFromJournal, writeJournal, type Journal } from './redis-call-journal.js';
import { CHILDREN, callKey, claimKey, defineScripts, type Scripts } from './redis-call-scripts.js';
import { createRedis, storeUnavailable, type RedisConnectOptions } from './redis-connection.js';
import { beat, reapPods } from './redis-pods.js';

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
    this.s = defineScripts(redis);
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
    return (await readCalls(this.redis, sids)).filter((r): r is CallRecord => r !== undefined && r.phase !== 'ended');
  }

  async listCalls(q: CallQuery): Promise<CallPage> {
    // Live calls are few (the active index); ended ones are paged through the start-time indexes.
    return q.state === 'live' ? pageOfCalls(await this.listActive(), q) : listIndexed(this.redis, q);
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

  heartbeat(pod: string, now: number): Promise<void> {
    return beat(this.s, this.prefix, pod, now);
  }

  reapDeadPods(now: number, staleMs: number): Promise<ReapResult> {
    return reapPods(this.redis, this.s, this.prefix, now, staleMs);
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
  private writeWhole(j: Journal): Promise<void> {
    return writeJournal({ redis: this.redis, s: this.s, now: this.now, liveTtl: this.liveTtl, prefix: this.prefix, log: this.o.log }, j);
  }
}
