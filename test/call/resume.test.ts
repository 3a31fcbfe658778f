/**
 * What a new model session is told when a moved call resumes here: the stored transcript and tool
 * calls as items in the order they happened, an interrupted line marked as such, the newest 40
 * only; and the replay history seeded from the stored lines.
 */
import { describe, expect, it } from 'vitest';
import { ConversationHistory, INTERRUPTED } from '../../src/call/conversation-history.js';
import { resumeItems, seedHistory } from '../../src/call/resume.js';
import type { CallRecord, ToolCallRecord, TranscriptEntry } from '../../src/store/index.js';

const record = (transcript: TranscriptEntry[], tools: ToolCallRecord[] = []): CallRecord => ({
  callSid: 'CA' + '1'.repeat(32),
  tenantId: 'demo',
  pod: 'p',
  pods: ['p'],
  migrations: [],
  phase: 'migrating',
  startedAt: 0,
  updatedAt: 0,
  transcript,
  tools,
});

const toolCall = (callId: string, startedAt: number): ToolCallRecord => ({
  callId,
  name: 'quote_price',
  arguments: '{"service":"drain"}',
  output: '{"price":120}',
  outcome: 'ok',
  startedAt,
  durationMs: 5,
});

type Item = { type: string; item: { type: string; role?: string; call_id?: string; content?: { type: string; text: string }[] } };
const items = (r: CallRecord, shape: 'ga' | 'beta' = 'ga'): Item[] => resumeItems(r, shape).map((e) => JSON.parse(e) as Item);
const describeItem = (i: Item): string =>
  i.item.type === 'message' ? `${i.item.role}: ${i.item.content?.[0]?.text}` : `${i.item.type} ${i.item.call_id}`;

describe('resumeItems', () => {
  it('re-creates lines and tool calls in time order, a tool with its output under its call_id, a tie keeping the line first', () => {
    const r = record(
      [
        { role: 'caller', text: 'How much to clear a drain?', at: 10 },
        { role: 'assistant', text: 'Let me check.', at: 20 },
        { role: 'assistant', text: 'It is 120 dollars.', at: 40 },
      ],
      [toolCall('call_1', 20)],
    );
    const out = items(r);
    expect(out.every((i) => i.type === 'conversation.item.create')).toBe(true);
    expect(out.map(describeItem)).toEqual([
      'user: How much to clear a drain?',
      'assistant: Let me check.',
      'function_call call_1',
      'function_call_output call_1',
      'assistant: It is 120 dollars.',
    ]);
  });

  it('marks a line the caller cut off, and names assistant text by the session shape', () => {
    const r = record([{ role: 'assistant', text: 'Our hours are', at: 1, interrupted: true }]);
    expect(items(r, 'ga')[0]!.item.content).toEqual([{ type: 'output_text', text: 'Our hours are' + INTERRUPTED }]);
    expect(items(r, 'beta')[0]!.item.content).toEqual([{ type: 'text', text: 'Our hours are' + INTERRUPTED }]);
  });

  it('keeps only the newest 40 entries (a tool call counts once, sent as two items)', () => {
    const lines: TranscriptEntry[] = Array.from({ length: 45 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'caller', text: `line ${i}`, at: i * 10 }));
    const out = items(record(lines, [toolCall('call_late', 445)]));
    expect(out).toHaveLength(41);
    expect(describeItem(out[0]!)).toBe('user: line 6');
    expect(out.slice(-2).map(describeItem)).toEqual(['function_call call_late', 'function_call_output call_late']);
  });
});

describe('seedHistory', () => {
  it('seeds every stored line, an interrupted one marked', () => {
    const h = new ConversationHistory(100);
    seedHistory(
      h,
      record([
        { role: 'caller', text: 'Hi', at: 1 },
        { role: 'assistant', text: 'Hello, how can', at: 2, interrupted: true },
        { role: 'caller', text: 'A leak', at: 3 },
      ]),
    );
    expect(h.all.map((e) => ({ role: e.role, text: e.text }))).toEqual([
      { role: 'caller', text: 'Hi' },
      { role: 'assistant', text: 'Hello, how can' + INTERRUPTED },
      { role: 'caller', text: 'A leak' },
    ]);
  });
});
