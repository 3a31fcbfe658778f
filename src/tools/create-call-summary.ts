/**
 * create_call_summary: a structured summary (reason, outcome, bookings, follow-ups) stored with the
 * call, written by the model as a tool and by the relay at call end (`summariseCall`, or the
 * `callSummaryListener`), whichever comes last merging with what the model said.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { CallLifecycleListener } from '../call/lifecycle.js';
import { systemClock, type Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { CallRecord, CallStore } from '../store/index.js';
import type { ToolDefinition } from '../model/index.js';
import { toolOk, type ToolContext, type ToolDeps, type ToolResult } from './tool-runner.js';

export const SummaryOutcome = z.enum(['booked', 'quoted', 'information', 'transferred', 'emergency', 'no_action', 'other']);

export const CreateCallSummaryArgs = z.object({
  reason: z.string().trim().min(1).max(500).describe('Why the caller called, in one sentence'),
  outcome: SummaryOutcome.describe('How the call ended for the caller'),
  followUps: z.array(z.string().trim().min(1).max(300)).max(10).default([]).describe('What the business must do next'),
  notes: z.string().trim().max(1000).optional(),
});

export const createCallSummaryDefinition: ToolDefinition = {
  type: 'function',
  name: 'create_call_summary',
  description: 'Write the summary of this call for the business: reason, outcome, follow-ups. Call it once, near the end, before end_call.',
  parameters: z.toJSONSchema(CreateCallSummaryArgs, { io: 'input' }),
};

export interface CallSummary {
  reason: string;
  outcome: z.infer<typeof SummaryOutcome>;
  /** How the call itself ended (CallOutcome), once it has. */
  callOutcome?: string;
  bookings: { confirmationId: string; service: string; slot: string }[];
  technicians: { technicianId: string; slot: string }[];
  emergency?: { kind: string; severity: string; transferred: boolean };
  followUps: string[];
  notes?: string;
  turns: { caller: number; assistant: number };
  toolCalls: number;
  durationMs?: number;
  /** `model` when create_call_summary supplied reason/outcome, `relay` when derived from the record only. */
  source: 'model' | 'relay';
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

function okOutput(output: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(output) as unknown;
    return v && typeof v === 'object' && (v as { ok?: unknown }).ok === true ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function asModelSummary(v: unknown): z.infer<typeof CreateCallSummaryArgs> | undefined {
  if (!v || typeof v !== 'object' || (v as { source?: unknown }).source !== 'model') return undefined;
  const r = CreateCallSummaryArgs.safeParse(v);
  return r.success ? r.data : undefined;
}

/**
 * The summary of a call from its record: bookings and technicians from successful tool calls, the
 * emergency flag, turn counts; reason/outcome/follow-ups from the model when it wrote them (given
 * here or already stored as the record's summary), else derived. Pure.
 */
export function summariseCall(record: CallRecord, fromModel?: z.infer<typeof CreateCallSummaryArgs>): CallSummary {
  const model = fromModel ?? asModelSummary(record.summary);
  const bookings: CallSummary['bookings'] = [];
  const technicians: CallSummary['technicians'] = [];
  let quoted = false;
  for (const t of record.tools) {
    const out = okOutput(t.output);
    if (!out) continue;
    if (t.name === 'book_appointment' && typeof out['confirmationId'] === 'string') {
      bookings.push({ confirmationId: out['confirmationId'], service: str(out['service']), slot: str(out['slot']) });
    } else if (t.name === 'assign_technician' && typeof out['technicianId'] === 'string') {
      technicians.push({ technicianId: out['technicianId'], slot: str(out['slot']) });
    } else if (t.name === 'quote_price') quoted = true;
  }
  const derivedOutcome: CallSummary['outcome'] = record.emergency
    ? 'emergency'
    : bookings.length > 0
      ? 'booked'
      : record.outcome === 'transferred'
        ? 'transferred'
        : quoted
          ? 'quoted'
          : 'no_action';
  const firstCaller = record.transcript.find((e) => e.role === 'caller')?.text;
  const s: CallSummary = {
    reason: model?.reason ?? (firstCaller ? firstCaller.slice(0, 200) : 'unknown'),
    outcome: model?.outcome ?? derivedOutcome,
    bookings,
    technicians,
    followUps: model?.followUps ?? [],
    turns: {
      caller: record.transcript.filter((e) => e.role === 'caller').length,
      assistant: record.transcript.filter((e) => e.role === 'assistant').length,
    },
    toolCalls: record.tools.length,
    source: model ? 'model' : 'relay',
  };
  if (record.outcome !== undefined) s.callOutcome = record.outcome;
  if (model?.notes !== undefined) s.notes = model.notes;
  if (record.emergency) s.emergency = { kind: record.emergency.kind, severity: record.emergency.severity, transferred: record.emergency.transferred };
  if (record.endedAt !== undefined) s.durationMs = record.endedAt - record.startedAt;
  return s;
}

export async function createCallSummary(args: z.infer<typeof CreateCallSummaryArgs>, ctx: ToolContext, deps: ToolDeps): Promise<ToolResult> {
  const record = await deps.store.getCall(ctx.callSid);
  const summary = record ? summariseCall(record, args) : { ...args, source: 'model' as const };
  await deps.store.setSummary(ctx.callSid, summary);
  return toolOk({ saved: true, note: 'Summary saved. Do not read it out.' });
}

/**
 * Writes the summary when a call ends (after the end, so bookings made late are included). Pass it
 * in RelayOptions.listeners; failures are logged, the call is already over. A record not yet marked
 * ended is timed to `clock`'s now.
 */
export function callSummaryListener(store: CallStore, log?: Logger, clock: Clock = systemClock): CallLifecycleListener {
  return {
    callEnded({ callSid, outcome }) {
      void (async () => {
        const record = await store.getCall(callSid);
        if (!record) return;
        await store.setSummary(callSid, summariseCall({ ...record, outcome: record.outcome ?? outcome, endedAt: record.endedAt ?? clock.now() }));
      })().catch((err: unknown) => log?.warn({ code: 'store_unavailable', callSid, err: errorMessage(err) }, 'call summary not written'));
    },
  };
}
