/**
 * Durable usage per call and per tenant, behind one interface with an in-memory and a Redis
 * implementation: each call's running totals, and per-tenant hour/day/month buckets (UTC) that every
 * pod adds to. What a response used and what it cost is src/usage/'s business.
 */

/** Token counters, by billing kind (src/model/response-usage.ts). */
export const TOKEN_FIELDS = ['inputText', 'inputAudio', 'inputTextCached', 'inputAudioCached', 'outputText', 'outputAudio'] as const;

/** Every counter a call or bucket holds. All are integers, so sums across pods are exact. */
export const USAGE_FIELDS = ['calls', 'callMs', 'toolCalls', 'responses', ...TOKEN_FIELDS, 'costNanoUsd'] as const;
export type UsageField = (typeof USAGE_FIELDS)[number];

/**
 * Usage counters. `callMs`: stream start to stop; `costNanoUsd`: estimated cost in 1e-9 USD (integer,
 * so totals add up exactly; the price table's per-token prices are whole nano-dollars).
 */
export type UsageTotals = Record<UsageField, number>;

export function emptyUsage(): UsageTotals {
  const u = {} as UsageTotals;
  for (const f of USAGE_FIELDS) u[f] = 0;
  return u;
}

export function addUsage(into: UsageTotals, more: Readonly<UsageTotals>): UsageTotals {
  for (const f of USAGE_FIELDS) into[f] += more[f];
  return into;
}

export type UsageGranularity = 'hour' | 'day' | 'month';
export const USAGE_GRANULARITIES: readonly UsageGranularity[] = ['hour', 'day', 'month'];

/** Start (UTC ms) of the bucket holding `at`. */
export function bucketStart(g: UsageGranularity, at: number): number {
  const d = new Date(at);
  if (g === 'hour') return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours());
  if (g === 'day') return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/** Start of the bucket after the one starting at `start`. */
export function nextBucket(g: UsageGranularity, start: number): number {
  const d = new Date(start);
  if (g === 'hour') return start + 3_600_000;
  if (g === 'day') return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

/** `2026120513` / `20261205` / `202612`: the bucket's name in keys. */
export function bucketId(g: UsageGranularity, at: number): string {
  const iso = new Date(bucketStart(g, at)).toISOString(); // 2026-12-05T13:00:00.000Z
  const ymd = iso.slice(0, 4) + iso.slice(5, 7);
  if (g === 'month') return ymd;
  return g === 'day' ? ymd + iso.slice(8, 10) : ymd + iso.slice(8, 10) + iso.slice(11, 13);
}

export interface UsageBucket {
  /** UTC ms of the bucket's start. */
  start: number;
  totals: UsageTotals;
}

/** The call whose usage is recorded: where its record lives and how long it is kept. */
export interface UsageCallRef {
  callSid: string;
  tenantId: string;
  /** The call record's retention (the tenant's retentionDays). */
  retentionSeconds: number;
}

export interface UsageStore {
  /**
   * Record a call's running totals. What exceeds the totals recorded before for this call is added to
   * the tenant's hour, day and month buckets holding `at`, atomically. Idempotent: recording the same
   * (or smaller) totals again adds nothing, so a retried or repeated write never counts twice.
   * @throws SwitchboardError `store_unavailable` (retryable) when the store cannot answer.
   */
  record(call: UsageCallRef, totals: Readonly<UsageTotals>, at: number): Promise<void>;
  /** A call's recorded totals; undefined when none were recorded (or past retention). */
  callUsage(tenantId: string, callSid: string): Promise<UsageTotals | undefined>;
  /** Non-empty buckets of a tenant with start in [from, to), oldest first. */
  buckets(tenantId: string, g: UsageGranularity, from: number, to: number): Promise<UsageBucket[]>;
  /** One bucket's totals (zeros when empty): the budget's current day or month. */
  bucket(tenantId: string, g: UsageGranularity, at: number): Promise<UsageTotals>;
  /** Tenants that ever recorded usage (deleted tenants included: their bills still count). */
  tenants(): Promise<string[]>;
  close(): Promise<void>;
}
