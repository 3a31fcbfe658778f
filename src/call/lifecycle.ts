/**
 * The call's contract with those who watch it: how a call ended, and the listener told when an
 * authorised call starts and ends (leases, summaries). A leaf: it imports nothing, so the layers
 * below call/ (telemetry for its label set, tenants for leases, tools for summaries) may import this
 * file and nothing else from call/ (docs/architecture.md, *Layers*).
 */

/** How a call ended; the `outcome` label of switchboard_calls_total, a closed set. */
export const CALL_OUTCOMES = [
  'completed', // caller or model ended the call normally
  'ended_by_assistant',
  'transferred',
  'caller_hung_up',
  'model_unavailable',
  'model_failed',
  'rejected_token',
  'rejected_capacity',
  'rejected_budget', // the tenant was over its budget: answered with its budget TwiML, no stream
  'protocol_error',
  'drained',
  'too_long',
  'abandoned', // the pod that held the call died; reaped by a survivor
] as const;
export type CallOutcome = (typeof CALL_OUTCOMES)[number];

/** What a listener learns of the call's tenant: its id (the Tenant object is passed, typed this narrowly). */
export interface CallTenantRef {
  readonly id: string;
}

/** Told when an authorised call starts and when it ends (leases, heartbeats, summaries). */
export interface CallLifecycleListener {
  callStarted?(call: { callSid: string; tenant: CallTenantRef }): void;
  callEnded?(call: { callSid: string; tenant: CallTenantRef; outcome: CallOutcome }): void;
}
