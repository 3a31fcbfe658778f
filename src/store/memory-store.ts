/** The in-memory CallStore of `npm start` and single-pod use: same contract as Redis, one process. */
import type { CallPhase, CallRecord, CallStore, NewCall, ToolCallRecord, TranscriptEntry } from './call-store.js';

export class MemoryCallStore implements CallStore {
  private readonly calls = new Map<string, CallRecord>();
  private readonly active = new Set<string>();
  private readonly once = new Map<string, number>();
  private readonly expiries = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  private sweep(): void {
    const t = this.now();
    for (const [id, exp] of this.once) if (exp <= t) this.once.delete(id);
    for (const [sid, exp] of this.expiries) {
      if (exp <= t) {
        this.expiries.delete(sid);
        this.calls.delete(sid);
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
    this.calls.set(c.callSid, { ...c, phase: 'connecting', updatedAt: c.startedAt, transcript: [], tools: [] });
    this.active.add(c.callSid);
    return Promise.resolve();
  }

  setPhase(callSid: string, phase: CallPhase): Promise<void> {
    this.touch(callSid, (r) => (r.phase = phase));
    return Promise.resolve();
  }

  appendTranscript(callSid: string, entry: TranscriptEntry): Promise<void> {
    this.touch(callSid, (r) => r.transcript.push(entry));
    return Promise.resolve();
  }

  recordToolCall(callSid: string, rec: ToolCallRecord): Promise<void> {
    this.touch(callSid, (r) => {
      if (!r.tools.some((t) => t.callId === rec.callId)) r.tools.push(rec);
    });
    return Promise.resolve();
  }

  setSummary(callSid: string, summary: unknown): Promise<void> {
    this.touch(callSid, (r) => (r.summary = summary));
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
    return Promise.resolve([...this.active].flatMap((sid) => {
      const r = this.calls.get(sid);
      return r ? [structuredClone(r)] : [];
    }));
  }

  consumeOnce(id: string, ttlSeconds: number): Promise<boolean> {
    this.sweep();
    if (this.once.has(id)) return Promise.resolve(false);
    this.once.set(id, this.now() + ttlSeconds * 1000);
    return Promise.resolve(true);
  }

  ping(): Promise<boolean> {
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
