/**
 * Per-call state behind one interface, with an in-memory and a Redis implementation, so any pod
 * can answer for any call. Nothing here is on the per-frame path: calls write at turn granularity.
 */

/**
 * `migrating`: the call's pod let go of it (a drain re-pointing it, or a survivor answering for a
 * dead pod) and the pod that takes the new stream adopts it (adoptCall); nobody else ends it.
 */
export type CallPhase = 'connecting' | 'live' | 'handing-off' | 'ending' | 'migrating' | 'ended';

/** Why a call moved to another pod. */
export type MigrationReason = 'drain' | 'crash';

/** One move of a live call between pods (docs/reliability.md, "Live call migration"). */
export interface Migration {
  /** When the old leg stopped (drain: the old pod's release; crash: the after-stream request), unix ms. */
  at: number;
  from: string;
  /** The pod that adopted the call. */
  to?: string;
  reason: MigrationReason;
  /** Old leg's stop to the new leg relaying audio, once it does. */
  gapMs?: number;
}

/** What adoptCall found: the record to rebuild the call from, or why the call is not there to take. */
export type AdoptResult =
  | { ok: true; record: CallRecord; migration: Migration }
  /** `live`: the call is held by a pod (not released), e.g. a duplicate stream for a call live elsewhere. */
  | { ok: false; reason: 'unknown' | 'ended' | 'live' };

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

/** Set on a call by flag_emergency: what the caller reported and whether the call went to a human. */
export interface EmergencyFlag {
  kind: string;
  severity: string;
  at: number;
  /** The tenant's policy sent the call to its human fallback. */
  transferred: boolean;
}

export interface CallRecord {
  callSid: string;
  tenantId: string;
  streamSid?: string;
  /** Caller number, masked except the last 4 digits. */
  fromMasked?: string;
  to?: string;
  /** The pod that holds the call (its live leg's). */
  pod: string;
  /** Every pod that carried the call, one per leg, in order (the first is where it started). */
  pods: string[];
  /** The call's moves between pods, oldest first. */
  migrations: Migration[];
  /** W3C traceparent of the live leg's call span: the next leg's span links to it. */
  traceparent?: string;
  /** Phase `migrating`: when and why its pod let go. */
  migratingAt?: number;
  migratingReason?: MigrationReason;
  phase: CallPhase;
  startedAt: number;
  updatedAt: number;
  endedAt?: number;
  outcome?: string;
  transcript: TranscriptEntry[];
  tools: ToolCallRecord[];
  summary?: unknown;
  emergency?: EmergencyFlag;
}

export interface NewCall {
  callSid: string;
  tenantId: string;
  streamSid?: string;
  fromMasked?: string;
  to?: string;
  pod: string;
  startedAt: number;
  /** W3C traceparent of the call's span (a moved call's next leg links to it). */
  traceparent?: string;
  /** Retention after the end when the call is reaped rather than ended by its own pod (tenant's retentionDays). */
  retentionSeconds?: number;
}

/**
 * The idempotency record of one model function call (callSid, call_id): the first result stored
 * wins, and a replayed call_id is answered with it instead of running the tool again.
 */
export interface StoredToolResult {
  output: string;
  outcome: string;
  /** The call effect (end_call / transfer) as plain strings; the tool runner re-validates it. */
  effect?: Readonly<Record<string, string>>;
  at: number;
}

/** An exclusive, expiring hold on a tenant resource (a slot, a technician at a time). */
export interface Claim {
  tenantId: string;
  /** Resource key within the tenant, e.g. `slot:2030-01-07T09:00`. */
  key: string;
  /** Who holds it; by convention `callSid:callId`, so a replayed tool call finds its own hold. */
  owner: string;
  ttlSeconds: number;
  /** The call making the claim, so its pod can restore the claim if Redis loses it. */
  callSid?: string;
}

/** What one `reapDeadPods` run did; each reaped call is counted by exactly one survivor. */
export interface ReapResult {
  pods: string[];
  calls: string[];
}

export interface CallStore {
  /** Register a live call in the active index. */
  startCall(call: NewCall): Promise<void>;
  setPhase(callSid: string, phase: CallPhase): Promise<void>;
  appendTranscript(callSid: string, entry: TranscriptEntry): Promise<void>;
  /** Record a tool invocation; a second record with the same callId is ignored. */
  recordToolCall(callSid: string, rec: ToolCallRecord): Promise<void>;
  setSummary(callSid: string, summary: unknown): Promise<void>;
  flagEmergency(callSid: string, flag: EmergencyFlag): Promise<void>;
  /**
   * Mark ended, drop from the active index, keep the record for `retentionSeconds`. With `byPod`,
   * only while that pod holds the call: a pod whose call is moving (phase `migrating`) or was
   * adopted elsewhere leaves the record to its new holder.
   */
  endCall(callSid: string, outcome: string, retentionSeconds: number, byPod?: string): Promise<void>;
  /**
   * The call is about to move (phase `migrating`, `migratingAt` = `at` or now, `migratingReason`,
   * default `drain`), written through to the backing store: a draining pod before its Twilio call
   * update, or a survivor answering Twilio's after-stream redirect for a dead pod (`crash`). From here
   * the reaper leaves the call alone and its old pod's end does not end it; the pod that takes the new
   * stream adopts it (adoptCall). Undo (the move failed) with setPhase(callSid, 'live').
   * @throws SwitchboardError `store_unavailable` unless the store now holds everything this pod wrote
   *   for the call (the pod that resumes it reads it from there), or when the call is unknown or ended.
   */
  beginMigration(callSid: string, m?: { reason?: MigrationReason; at?: number }): Promise<void>;
  /**
   * `pod`'s stream of a moving call stopped (Twilio ran the update): the call leaves the pod's calls
   * (a reap of that pod no longer ends it), the pod forgets its copy, and, while the call is still
   * waiting for its adopter, `migratingAt` becomes `at` (the old leg's stop, where the gap starts).
   */
  releaseCall(callSid: string, pod: string, at?: number): Promise<void>;
  /**
   * Take a moving call for `pod` (atomic: one adopter wins): holder `pod`, phase `connecting`, the
   * new streamSid, `pod` appended to `pods`, the migration appended to `migrations`, the call in
   * `pod`'s live set. Refused when the call is unknown, ended, or held (not `migrating`).
   */
  adoptCall(callSid: string, m: { pod: string; streamSid: string; now: number; traceparent?: string }): Promise<AdoptResult>;
  /** The adopter's new leg relays: record the last migration's gap. */
  noteMigrationGap(callSid: string, gapMs: number): Promise<void>;
  getCall(callSid: string): Promise<CallRecord | undefined>;
  listActive(): Promise<CallRecord[]>;
  /**
   * Atomically consume a one-time token id; true the first time for that id on any pod, false after.
   * `ttlSeconds` bounds how long the id is remembered (past the token's own expiry).
   */
  consumeOnce(id: string, ttlSeconds: number): Promise<boolean>;
  getToolResult(callSid: string, callId: string): Promise<StoredToolResult | undefined>;
  /** Store a tool result unless one exists for (callSid, callId); returns the one that is stored. */
  putToolResult(callSid: string, callId: string, result: StoredToolResult): Promise<StoredToolResult>;
  /**
   * Atomically take `claim.key` for `claim.owner` unless someone else holds it. Returns the owner
   * that holds the key afterwards: `claim.owner` when taken now or already held by the same owner.
   * @throws SwitchboardError `store_unavailable` (retryable) when the store cannot answer.
   */
  claim(claim: Claim): Promise<string>;
  /** Release a claim held by `owner`; false when it is held by someone else or by nobody. */
  release(tenantId: string, key: string, owner: string): Promise<boolean>;
  /** This pod is alive at `now`; keeps its calls in the active index. */
  heartbeat(pod: string, now: number): Promise<void>;
  /**
   * End (outcome `abandoned`) the calls of every pod whose last heartbeat is older than `staleMs`.
   * Atomic per pod: when several survivors reap at once, each call is reaped exactly once. Calls
   * the dead pod released (phase `migrating`) are left to their adopter.
   */
  reapDeadPods(now: number, staleMs: number): Promise<ReapResult>;
  /** True when the backing store answers (readiness). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** Retention applied to reaped calls whose start did not say (30 days, the tenant default). */
export const DEFAULT_RETENTION_SECONDS = 30 * 86_400;

export function maskNumber(n: string | undefined): string | undefined {
  if (!n) return undefined;
  const digits = n.replace(/[^\d]/g, '');
  if (digits.length <= 4) return '****';
  return `${n.startsWith('+') ? '+' : ''}${'*'.repeat(digits.length - 4)}${digits.slice(-4)}`;
}

/** A decimal digit outside ASCII (full-width, Arabic-Indic, mathematical …): the line needs normalising. */
const NON_ASCII_DIGIT = /(?![0-9])\p{Nd}/u;
/** Arabic-Indic ٠-٩ (U+0660-0669) and Extended Arabic-Indic ۰-۹ (U+06F0-06F9): NFKC leaves them be. */
const ARABIC_INDIC_DIGIT = /[\u0660-\u0669\u06f0-\u06f9]/g;
/** Digits joined by any run of non-alphanumeric separators (space, NBSP, `-`, `.`, `/`, `_`, parentheses …). */
const NUMBER_RUN = /\+?\(?\d(?:[^\p{L}\p{N}]*\d)+/gu;

/**
 * Mask phone-number-like and card-number-like runs in free text, keeping the last 4 digits: `+` and
 * 7 or more digits, or 10 or more digits, joined by any separators that are not letters or digits
 * (phone numbers, and card numbers of 13-19 digits also when more digits follow them). Dates
 * (8 digits), times and prices are left alone. A line holding non-ASCII digits is first normalised
 * (NFKC, which folds full-width and mathematical digits, then Arabic-Indic digits to ASCII) and is
 * stored normalised; other lines are matched as they are. Runs once per transcript line, not per frame.
 */
export function maskNumbersInText(text: string): string {
  const plain = NON_ASCII_DIGIT.test(text)
    ? text.normalize('NFKC').replace(ARABIC_INDIC_DIGIT, (d) => String.fromCharCode(48 + (d.charCodeAt(0) & 0xf)))
    : text;
  return plain.replace(NUMBER_RUN, (m) => {
    const digits = m.replace(/\D/g, '').length;
    const sensitive = m.startsWith('+') ? digits >= 7 : digits >= 10;
    return sensitive ? (maskNumber(m) ?? m) : m;
  });
}

/** A phone number as a log line may show it: masked when it is E.164, else only that it was not. */
export function numberForLog(n: string | undefined): string {
  return n !== undefined && /^\+[1-9]\d{6,14}$/.test(n) ? (maskNumber(n) ?? '****') : '[not E.164]';
}

/** Mask numbers inside the string values of a JSON document (tool arguments, outputs); numbers stay. */
export function maskNumbersInJson(json: string): string {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return maskNumbersInText(json);
  }
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return maskNumbersInText(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return JSON.stringify(walk(value));
}
