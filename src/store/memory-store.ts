/**
 * The in-memory CallStore of `npm start` and single-pod use: the same contract as Redis inside one
 * process (claims, tool-result idempotency, pod heartbeats). Durability is the process's lifetime.
 */
import type {
  AdoptResult,
  CallPhase,
  CallRecord,
  CallStore,
  Claim,
  EmergencyFlag,
  MigrationReason,
  NewCall,
  ReapResult,
  StoredToolResult,
  ToolCallRecord,
  TranscriptEntry,
} from './call-store.js';
import { DEFAULT_RETENTION_SECONDS } from './call-store.js';
import { SwitchboardError } from '../errors.js';

interface Held {
  owner: string;
  expiresAt: number;
}

export class MemoryCallStore implements CallStore {
  private readonly calls = new Map<string, CallRecord>();
  private readonly retention = new Map<string, number>();
  private readonly results = new Map<string, Map<string, StoredToolResult>>();
  private readonly active = new Set<string>();
  private readonly once = new Map<string, number>();
  private readonly expiries = new Map<string, number>();
  private readonly claims = new Map<string, Held>();
  private readonly pods = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  private sweep(): void {
    const t = this.now();
    for (const [id, exp] of this.once) if (exp <= t) this.once.delete(id);
    for (const [k, h] of this.claims) if (h.expiresAt <= t) this.claims.delete(k);
    for (const [sid, exp] of this.expiries) {
      if (exp <= t) {
        this.expiries.delete(sid);
        this.calls.delete(sid);
        this.results.delete(sid);
        this.retention.delete(sid);
      }
    }
  }

  private touch(callSid: string, fn: (r: CallRecord) => void): void {
    const r = this.calls.get(callSid);
    if (!r) return;
    fn(r);
    r.updatedAt = this.now();
  }

  startCall(c: NewCall): Promise<void> {
    this.sweep();
    const { retentionSeconds, ...rest } = c;
    this.calls.set(c.callSid, { ...rest, pods: [c.pod], migrations: [], phase: 'connecting', updatedAt: c.startedAt, transcript: [], tools: [] });
    this.retention.set(c.callSid, retentionSeconds ?? DEFAULT_RETENTION_SECONDS);
    this.active.add(c.callSid);
    this.pods.set(c.pod, Math.max(this.pods.get(c.pod) ?? 0, this.now()));
    return Promise.resolve();
  }

  setPhase(callSid: string, phase: CallPhase): Promise<void> {
    this.touch(callSid, (r) => {
      if (r.phase === 'ended') return;
      r.phase = phase;
      if (phase !== 'migrating') {
        delete r.migratingAt;
        delete r.migratingReason;
      }
    });
    return Promise.resolve();
  }

  beginMigration(callSid: string, m: { reason?: MigrationReason; at?: number } = {}): Promise<void> {
    const r = this.calls.get(callSid);
    if (!r || r.phase === 'ended') {
      return Promise.reject(new SwitchboardError('store_unavailable', r ? 'call already ended' : 'no such call', true));
    }
    r.phase = 'migrating';
    r.migratingAt = m.at ?? this.now();
    r.migratingReason = m.reason ?? 'drain';
    r.updatedAt = this.now();
    return Promise.resolve();
  }

  releaseCall(callSid: string, pod: string, at?: number): Promise<void> {
    // Membership is the record's `pod` here; still waiting for an adopter: the gap starts at the stop.
    this.touch(callSid, (r) => {
      if (r.pod === pod && r.phase === 'migrating' && at !== undefined) r.migratingAt = at;
    });
    return Promise.resolve();
  }

  appendTranscript(callSid: string, entry: TranscriptEntry): Promise<void> {
    this.touch(callSid, (r) => r.transcript.push({ ...entry }));
    return Promise.resolve();
  }

  recordToolCall(callSid: string, rec: ToolCallRecord): Promise<void> {
    this.touch(callSid, (r) => {
      if (!r.tools.some((t) => t.callId === rec.callId)) r.tools.push({ ...rec });
    });
    return Promise.resolve();
  }

  setSummary(callSid: string, summary: unknown): Promise<void> {
    this.touch(callSid, (r) => (r.summary = structuredClone(summary)));
    return Promise.resolve();
  }

  flagEmergency(callSid: string, flag: EmergencyFlag): Promise<void> {
    this.touch(callSid, (r) => (r.emergency = { ...flag }));
    return Promise.resolve();
  }

  endCall(callSid: string, outcome: string, retentionSeconds: number, byPod?: string): Promise<void> {
    const held = this.calls.get(callSid);
    // Released or adopted elsewhere: not this pod's to end.
    if (held && byPod !== undefined && (held.pod !== byPod || held.phase === 'migrating')) return Promise.resolve();
    this.touch(callSid, (r) => {
      if (r.phase === 'ended') return;
      r.phase = 'ended';
      r.outcome = outcome;
      r.endedAt = this.now();
    });
    this.active.delete(callSid);
    this.expiries.set(callSid, this.now() + retentionSeconds * 1000);
    return Promise.resolve();
  }

  adoptCall(callSid: string, m: { pod: string; streamSid: string; now: number; traceparent?: string }): Promise<AdoptResult> {
    const r = this.calls.get(callSid);
    if (!r) return Promise.resolve({ ok: false, reason: 'unknown' });
    if (r.phase === 'ended') return Promise.resolve({ ok: false, reason: 'ended' });
    if (r.phase !== 'migrating') return Promise.resolve({ ok: false, reason: 'live' });
    const migration = { at: r.migratingAt ?? m.now, from: r.pod, to: m.pod, reason: r.migratingReason ?? 'crash' };
    const record = structuredClone(r);
    r.migrations.push(migration);
    r.pods.push(m.pod);
    r.pod = m.pod;
    r.streamSid = m.streamSid;
    if (m.traceparent !== undefined) r.traceparent = m.traceparent;
    r.phase = 'connecting';
    r.updatedAt = m.now;
    delete r.migratingAt;
    delete r.migratingReason;
    this.active.add(callSid);
    this.pods.set(m.pod, Math.max(this.pods.get(m.pod) ?? 0, m.now));
    // The record as adopted, but with the old leg's traceparent (the new leg links to it).
    const adopted = structuredClone(r);
    if (record.traceparent !== undefined) adopted.traceparent = record.traceparent;
    else delete adopted.traceparent;
    return Promise.resolve({ ok: true, record: adopted, migration: { ...migration } });
  }

  noteMigrationGap(callSid: string, gapMs: number): Promise<void> {
    this.touch(callSid, (r) => {
      const last = r.migrations.at(-1);
      if (last) last.gapMs = gapMs;
    });
    return Promise.resolve();
  }

  getCall(callSid: string): Promise<CallRecord | undefined> {
    this.sweep();
    const r = this.calls.get(callSid);
    return Promise.resolve(r ? structuredClone(r) : undefined);
  }

  listActive(): Promise<CallRecord[]> {
    return Promise.resolve(
      [...this.active].flatMap((sid) => {
        const r = this.calls.get(sid);
        return r ? [structuredClone(r)] : [];
      }),
    );
  }

  consumeOnce(id: string, ttlSeconds: number): Promise<boolean> {
    this.sweep();
    if (this.once.has(id)) return Promise.resolve(false);
    this.once.set(id, this.now() + ttlSeconds * 1000);
    return Promise.resolve(true);
  }

  getToolResult(callSid: string, callId: string): Promise<StoredToolResult | undefined> {
    const r = this.results.get(callSid)?.get(callId);
    return Promise.resolve(r ? structuredClone(r) : undefined);
  }

  putToolResult(callSid: string, callId: string, result: StoredToolResult): Promise<StoredToolResult> {
    let m = this.results.get(callSid);
    if (!m) {
      m = new Map();
      this.results.set(callSid, m);
    }
    const existing = m.get(callId);
    if (existing) return Promise.resolve(structuredClone(existing));
    m.set(callId, structuredClone(result));
    if (!this.calls.has(callSid)) this.expiries.set(callSid, this.now() + DEFAULT_RETENTION_SECONDS * 1000);
    return Promise.resolve(structuredClone(result));
  }

  claim(c: Claim): Promise<string> {
    this.sweep();
    const k = `${c.tenantId}\u0000${c.key}`;
    const held = this.claims.get(k);
    if (held) return Promise.resolve(held.owner);
    this.claims.set(k, { owner: c.owner, expiresAt: this.now() + c.ttlSeconds * 1000 });
    return Promise.resolve(c.owner);
  }

  release(tenantId: string, key: string, owner: string): Promise<boolean> {
    this.sweep();
    const k = `${tenantId}\u0000${key}`;
    if (this.claims.get(k)?.owner !== owner) return Promise.resolve(false);
    this.claims.delete(k);
    return Promise.resolve(true);
  }

  heartbeat(pod: string, now: number): Promise<void> {
    this.pods.set(pod, now);
    return Promise.resolve();
  }

  reapDeadPods(now: number, staleMs: number): Promise<ReapResult> {
    const out: ReapResult = { pods: [], calls: [] };
    for (const [pod, beat] of this.pods) {
      if (beat >= now - staleMs) continue;
      this.pods.delete(pod);
      out.pods.push(pod);
      for (const sid of [...this.active]) {
        const r = this.calls.get(sid);
        // A released call is its adopter's, whatever becomes of the pod that let go.
        if (!r || r.pod !== pod || r.phase === 'migrating') continue;
        out.calls.push(sid);
        r.phase = 'ended';
        r.outcome = 'abandoned';
        r.endedAt = now;
        r.updatedAt = now;
        this.active.delete(sid);
        this.expiries.set(sid, now + (this.retention.get(sid) ?? DEFAULT_RETENTION_SECONDS) * 1000);
      }
    }
    return Promise.resolve(out);
  }

  ping(): Promise<boolean> {
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
