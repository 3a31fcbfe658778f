/**
 * The in-memory CallStore of `npm start` and single-pod use: the same contract as Redis inside one
 * process (claims, tool-result idempotency, pod heartbeats). Durability is the process's lifetime.
 */
import type {
  CallPhase,
  CallRecord,
  CallStore,
  Claim,
  EmergencyFlag,
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
    this.calls.set(c.callSid, { ...rest, phase: 'connecting', updatedAt: c.startedAt, transcript: [], tools: [] });
    this.retention.set(c.callSid, retentionSeconds ?? DEFAULT_RETENTION_SECONDS);
    this.active.add(c.callSid);
    this.pods.set(c.pod, Math.max(this.pods.get(c.pod) ?? 0, this.now()));
    return Promise.resolve();
  }

  setPhase(callSid: string, phase: CallPhase): Promise<void> {
    this.touch(callSid, (r) => {
      if (r.phase !== 'ended') r.phase = phase;
    });
    return Promise.resolve();
  }

  beginMigration(callSid: string): Promise<void> {
    const r = this.calls.get(callSid);
    if (!r || r.phase === 'ended') {
      return Promise.reject(new SwitchboardError('store_unavailable', r ? 'call already ended' : 'no such call', true));
    }
    return this.setPhase(callSid, 'migrating');
  }

  releaseCall(callSid: string, pod: string): Promise<void> {
    this.touch(callSid, (r) => {
      if (r.pod === pod) r.pod = '';
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

  endCall(callSid: string, outcome: string, retentionSeconds: number): Promise<void> {
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
        if (!r || r.pod !== pod) continue;
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
