/**
 * A call resumed on this pod after it moved (a drain, or its pod died): what the new model session
 * is told so it carries on where the old one was — the stored conversation re-created as items,
 * earlier tool calls with their results under their original call_ids (a replayed call_id is
 * answered from the store, never run again) — and the bookkeeping of the move.
 */
import { assistantText, functionCallItem, functionCallOutput, userText, type SessionShape } from '../model/index.js';
import type { CallRecord, Migration } from '../store/index.js';
import { INTERRUPTED, type ConversationHistory } from './conversation-history.js';

/** What the stream's authorisation hands the bridge when it adopted a moved call. */
export interface ResumeContext {
  /** The call as stored when this pod adopted it: conversation, tools, phase, tenant. */
  record: CallRecord;
  /** The move that brought it here (from, reason, when the old leg stopped). */
  migration: Migration;
}

/** Conversation items kept for a new session: as many as a renewal replays. */
const MAX_REPLAYED = 40;

type Replayed =
  | { at: number; role: 'caller' | 'assistant'; text: string }
  | { at: number; callId: string; name: string; args: string; output: string };

/** The stored conversation in order: transcript lines and tool calls by time, the newest MAX_REPLAYED. */
function replayed(record: CallRecord): Replayed[] {
  const lines: Replayed[] = record.transcript.map((t) => ({
    at: t.at,
    role: t.role,
    text: t.interrupted === true ? t.text + INTERRUPTED : t.text,
  }));
  const tools: Replayed[] = record.tools.map((t) => ({ at: t.startedAt, callId: t.callId, name: t.name, args: t.arguments, output: t.output }));
  // Stable: a tool started in the same millisecond as a line stays after it.
  return [...lines, ...tools].sort((a, b) => a.at - b.at).slice(-MAX_REPLAYED);
}

/** The client events that re-create the stored conversation in a new model session, oldest first. */
export function resumeItems(record: CallRecord, shape: SessionShape): string[] {
  const out: string[] = [];
  for (const r of replayed(record)) {
    if ('callId' in r) {
      out.push(functionCallItem(r.callId, r.name, r.args), functionCallOutput(r.callId, r.output));
    } else {
      out.push(r.role === 'caller' ? userText(r.text) : assistantText(r.text, shape));
    }
  }
  return out;
}

/** Seed the call's replay history (used by later reconnects and renewals) with the stored lines. */
export function seedHistory(history: ConversationHistory, record: CallRecord): void {
  for (const t of record.transcript) {
    if (t.role === 'caller') history.caller(t.text);
    else history.assistant(t.text, '', t.interrupted === true);
  }
}
