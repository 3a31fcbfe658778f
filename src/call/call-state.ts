/**
 * One call's lifecycle as a discriminated union with pure transitions. The bridge feeds socket
 * events in and acts on the resulting state; illegal moves return undefined instead of throwing.
 * Each state carries what is true in it, and is the one place that says it: the call's ids from
 * `start` on (kept once it ended), its tenant from authorisation on, the configured model session
 * only while live or ending.
 */
import type { Logger } from 'pino';
import type { CloseCode } from '../errors.js';
import type { RealtimeSocket } from '../model/index.js';
import type { Tenant } from '../tenants/index.js';
import type { CallOutcome } from './lifecycle.js';

export type CallState =
  | { kind: 'awaiting-start' }
  /** `start` received; token and signature being checked. Nothing goes upstream yet. */
  | { kind: 'verifying'; streamSid: string; callSid: string }
  /** Authorised; the model socket is opening. Caller audio waits in a bounded ring. */
  | { kind: 'connecting'; streamSid: string; callSid: string; tenant: Tenant }
  /** The model session is configured: caller audio goes to `model`, its audio to the caller. */
  | { kind: 'live'; streamSid: string; callSid: string; tenant: Tenant; model: RealtimeSocket }
  /** The model socket dropped mid-call; a new session is opening with the conversation so far. */
  | { kind: 'reconnecting'; streamSid: string; callSid: string; tenant: Tenant }
  /** The assistant is saying its last words (end_call, transfer); the line closes once they played. */
  | { kind: 'ending'; streamSid: string; callSid: string; tenant: Tenant; model: RealtimeSocket; outcome: CallOutcome; closeCode: CloseCode }
  /** Over; it still names the call (and its tenant) it was, once they were known. */
  | { kind: 'ended'; outcome: CallOutcome; callSid?: string; tenant?: Tenant };

export type CallInput =
  | { type: 'start'; streamSid: string; callSid: string }
  | { type: 'authorised'; tenant: Tenant }
  | { type: 'model-ready'; model: RealtimeSocket }
  | { type: 'model-lost' }
  | { type: 'wind-down'; outcome: CallOutcome; closeCode: CloseCode }
  | { type: 'end'; outcome: CallOutcome };

export function transition(s: CallState, input: CallInput): CallState | undefined {
  if (s.kind === 'ended') return undefined;
  switch (input.type) {
    case 'start':
      return s.kind === 'awaiting-start' ? { kind: 'verifying', streamSid: input.streamSid, callSid: input.callSid } : undefined;
    case 'authorised':
      return s.kind === 'verifying'
        ? { kind: 'connecting', streamSid: s.streamSid, callSid: s.callSid, tenant: input.tenant }
        : undefined;
    case 'model-ready':
      return s.kind === 'connecting' || s.kind === 'reconnecting'
        ? { kind: 'live', streamSid: s.streamSid, callSid: s.callSid, tenant: s.tenant, model: input.model }
        : undefined;
    case 'model-lost':
      return s.kind === 'live' ? { kind: 'reconnecting', streamSid: s.streamSid, callSid: s.callSid, tenant: s.tenant } : undefined;
    case 'wind-down':
      // From ending too: a hand-off decided during the last words re-targets them (wind-down.ts).
      return s.kind === 'live' || s.kind === 'ending' ? { ...s, kind: 'ending', outcome: input.outcome, closeCode: input.closeCode } : undefined;
    case 'end':
      return { kind: 'ended', outcome: input.outcome, ...('callSid' in s ? { callSid: s.callSid } : {}), ...('tenant' in s ? { tenant: s.tenant } : {}) };
  }
}

/** The call's tenant, once authorised (still named once it ended). */
export function tenantOf(s: CallState): Tenant | undefined {
  return 'tenant' in s ? s.tenant : undefined;
}

/** States in which caller audio goes to the model. */
export function relaysCallerAudio(s: CallState): s is Extract<CallState, { kind: 'live' | 'ending' }> {
  return s.kind === 'live' || s.kind === 'ending';
}

/** States in which caller audio waits for the model (in the ring). */
export function buffersCallerAudio(s: CallState): boolean {
  return s.kind === 'verifying' || s.kind === 'connecting' || s.kind === 'reconnecting';
}

/** The call as its parts (model session, conversation, wind-down, move) see it. */
export interface CallView {
  readonly state: CallState;
  readonly callSid: string | undefined;
  /** The call's logger now (it gains the call's ids as they are known). */
  readonly log: Logger;
  /** The single exit: idempotent; closes both sockets and settles the call. */
  finish(outcome: CallOutcome, code: number, reason: string): void;
}
