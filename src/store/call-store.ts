/**
 * Per-call state behind one interface, with an in-memory and a Redis implementation, so any pod
 * can answer for any call. Nothing here is on the per-frame path: calls write at turn granularity.
 */

export type CallPhase = 'connecting' | 'live' | 'handing-off' | 'ending' | 'ended';

export interface TranscriptEntry {
  role: 'caller' | 'assistant';
  text: string;
  at: number;
  /** True when barge-in cut the assistant off; `text` is what was generated, not all heard. */
  interrupted?: boolean;
}

export interface ToolCallRecord {
  callId: string;
  name: string;
  arguments: string;
  output: string;
  outcome: string;
  startedAt: number;
  durationMs: number;
}

export interface CallRecord {
  callSid: string;
  tenantId: string;
  streamSid?: string;
  /** Caller number, masked except the last 4 digits. */
  fromMasked?: string;
  to?: string;
  pod: string;
  phase: CallPhase;
  startedAt: number;
  updatedAt: number;
  endedAt?: number;
  outcome?: string;
  transcript: TranscriptEntry[];
  tools: ToolCallRecord[];
  summary?: unknown;
}

export interface NewCall {
  callSid: string;
  tenantId: string;
  streamSid?: string;
  fromMasked?: string;
  to?: string;
  pod: string;
  startedAt: number;
}

export interface CallStore {
  /** Register a live call in the active index. */
  startCall(call: NewCall): Promise<void>;
  setPhase(callSid: string, phase: CallPhase): Promise<void>;
  appendTranscript(callSid: string, entry: TranscriptEntry): Promise<void>;
  recordToolCall(callSid: string, rec: ToolCallRecord): Promise<void>;
  setSummary(callSid: string, summary: unknown): Promise<void>;
  /** Mark ended, drop from the active index, keep the record for `retentionSeconds`. */
  endCall(callSid: string, outcome: string, retentionSeconds: number): Promise<void>;
  getCall(callSid: string): Promise<CallRecord | undefined>;
  listActive(): Promise<CallRecord[]>;
  /**
   * Atomically consume a one-time token id; true the first time for that id on any pod, false after.
   * `ttlSeconds` bounds how long the id is remembered (past the token's own expiry).
   */
  consumeOnce(id: string, ttlSeconds: number): Promise<boolean>;
  /** True when the backing store answers (readiness). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export function maskNumber(n: string | undefined): string | undefined {
  if (!n) return undefined;
  const digits = n.replace(/[^\d]/g, '');
  if (digits.length <= 4) return '****';
  return `${n.startsWith('+') ? '+' : ''}${'*'.repeat(digits.length - 4)}${digits.slice(-4)}`;
}
