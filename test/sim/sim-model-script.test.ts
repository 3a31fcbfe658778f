/**
 * The simulated model's reply rules, as pure functions: exact greetings, explicit and keyword tool
 * calls gated on the offered tools, tool-answer replies and reply durations.
 */
import { describe, expect, it } from 'vitest';
import {
  exactText,
  planReply,
  replyToToolOutput,
  toolsHeard,
  replyToUtterance,
  speechDurationMs,
} from '../../src/sim/sim-model-script.js';

const ALL_TOOLS = new Set([
  'check_service_area',
  'quote_price',
  'book_appointment',
  'flag_emergency',
  'transfer_to_human',
  'end_call',
]);
const NONE = new Set<string>();

describe('exactText', () => {
  it('takes the text after "exactly:" as the relay greets', () => {
    expect(exactText('Greet the caller with exactly: Thanks for calling Demo Plumbing, how can I help?')).toBe(
      'Thanks for calling Demo Plumbing, how can I help?',
    );
  });
  it('strips wrapping quotes and ignores case', () => {
    expect(exactText('Say EXACTLY: "Hello there."')).toBe('Hello there.');
  });
  it('is undefined without the marker or with nothing after it', () => {
    expect(exactText('Greet the caller.')).toBeUndefined();
    expect(exactText('exactly:   ')).toBeUndefined();
    expect(exactText(undefined)).toBeUndefined();
  });
});

describe('replyToUtterance', () => {
  it('calls a named tool with its JSON arguments verbatim when the tool is offered', () => {
    expect(replyToUtterance('please call tool end_call {"reason":"done"}', ALL_TOOLS)).toEqual({
      kind: 'tool',
      name: 'end_call',
      arguments: '{"reason":"done"}',
    });
    expect(replyToUtterance('call tool quote_price', ALL_TOOLS)).toEqual({ kind: 'tool', name: 'quote_price', arguments: '{}' });
  });

  it('passes malformed arguments through so relays meet bad model output', () => {
    expect(replyToUtterance('call tool book_appointment {"slot": nope}', ALL_TOOLS)).toEqual({
      kind: 'tool',
      name: 'book_appointment',
      arguments: '{"slot": nope}',
    });
  });

  it('does not call a tool the session does not offer', () => {
    expect(replyToUtterance('call tool end_call {"reason":"done"}', new Set(['quote_price']))).toEqual({
      kind: 'speak',
      text: 'You said: call tool end_call {"reason":"done"}. Anything else?',
    });
  });

  it.each([
    ['Thanks, bye!', 'end_call', { reason: 'caller said goodbye' }],
    ['Goodbye then', 'end_call', { reason: 'caller said goodbye' }],
    ['Can I book a drain cleaning for 2030-01-08T11:00?', 'book_appointment', { slot: '2030-01-08T11:00', service: 'drain_cleaning' }],
    ['How much does a water heater repair cost?', 'quote_price', { service: 'water_heater_repair' }],
    ['Can you give me a quote', 'quote_price', { service: 'leak_repair' }],
    ['Is 10003 in your area?', 'check_service_area', { postcode: '10003' }],
    ['What zip codes do you cover', 'check_service_area', { postcode: '10001' }],
    ['There is a flood in my kitchen', 'flag_emergency', { severity: 'high' }],
    ['I smell gas', 'flag_emergency', { severity: 'critical' }],
    ['Can I talk to a human', 'transfer_to_human', {}],
    ['Put me through to a person please', 'transfer_to_human', {}],
  ])('%s -> %s', (text, tool, args) => {
    const r = replyToUtterance(text, ALL_TOOLS);
    expect(r.kind).toBe('tool');
    if (r.kind !== 'tool') return;
    expect(r.name).toBe(tool);
    expect(JSON.parse(r.arguments)).toMatchObject(args);
  });

  it('puts an emergency ahead of any other keyword', () => {
    expect(replyToUtterance('Emergency! I need to book someone, bye', ALL_TOOLS)).toMatchObject({ name: 'flag_emergency' });
  });

  it('matches whole words only', () => {
    expect(replyToUtterance('My notebook is wet', ALL_TOOLS)).toEqual({ kind: 'speak', text: 'You said: My notebook is wet. Anything else?' });
  });

  it('echoes without the tool, trimming the sentence end', () => {
    expect(replyToUtterance('I need a plumber.', NONE)).toEqual({ kind: 'speak', text: 'You said: I need a plumber. Anything else?' });
    expect(replyToUtterance('bye', new Set(['quote_price']))).toEqual({ kind: 'speak', text: 'You said: bye. Anything else?' });
  });
});

describe('replyToToolOutput', () => {
  it('reads back at most 120 characters of the output, a cut one ending in …', () => {
    const output = JSON.stringify({ ok: true, price: 'x'.repeat(200) });
    expect(replyToToolOutput('quote_price', output)).toBe(`Tool quote_price answered: ${output.slice(0, 119)}…`);
    const short = JSON.stringify({ ok: true, price: 'x'.repeat(120 - 22) });
    expect(short).toHaveLength(120);
    expect(replyToToolOutput('quote_price', short)).toBe(`Tool quote_price answered: ${short}`);
  });
  it('lets a caller tell which tools ran, end_call included', () => {
    const heard = [replyToToolOutput('check_service_area', '{"ok":true}'), 'You said: hi. Anything else?', replyToToolOutput('end_call', '{}')];
    expect(toolsHeard(heard)).toEqual(['check_service_area', 'end_call']);
  });
  it('says goodbye after end_call', () => {
    expect(replyToToolOutput('end_call', '{"ok":true}')).toBe('Goodbye, have a good day.');
  });
});

describe('planReply', () => {
  it('prefers exact instructions over the pending turn', () => {
    expect(planReply({ instructions: 'Say exactly: Hi.', turn: { kind: 'utterance', text: 'bye' }, tools: ALL_TOOLS })).toEqual({
      kind: 'speak',
      text: 'Hi.',
    });
  });
  it('answers a tool output, an utterance, or greets when nothing is pending', () => {
    expect(planReply({ turn: { kind: 'tool_output', name: 'end_call', output: '{}' }, tools: ALL_TOOLS })).toEqual({
      kind: 'speak',
      text: 'Goodbye, have a good day.',
    });
    expect(planReply({ turn: { kind: 'utterance', text: 'bye' }, tools: ALL_TOOLS })).toMatchObject({ kind: 'tool', name: 'end_call' });
    expect(planReply({ turn: { kind: 'none' }, tools: NONE })).toEqual({ kind: 'speak', text: 'Hello, how can I help you today?' });
  });
  it('clips very long replies so the text marker can carry them', () => {
    const r = planReply({ instructions: `exactly: ${'a'.repeat(10_000)}`, turn: { kind: 'none' }, tools: NONE });
    expect(r.kind === 'speak' && r.text.length).toBe(4000);
  });
});

describe('speechDurationMs', () => {
  it('is ~60 ms per character between 600 ms and 6 s, in whole frames, when realistic', () => {
    expect(speechDurationMs('Hi', 'realistic')).toBe(600);
    expect(speechDurationMs('x'.repeat(21), 'realistic')).toBe(1260);
    expect(speechDurationMs('x'.repeat(1000), 'realistic')).toBe(6000);
  });
  it('is a fixed second in loadtest mode', () => {
    expect(speechDurationMs('Hi', 'loadtest')).toBe(1000);
    expect(speechDurationMs('x'.repeat(1000), 'loadtest')).toBe(1000);
  });
});
