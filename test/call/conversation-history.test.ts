import { describe, expect, it } from 'vitest';
import { ConversationHistory, heardText } from '../../src/call/conversation-history.js';

describe('heardText', () => {
  it('keeps the words in proportion to the audio heard, whole words only', () => {
    const text = 'You said: Tell me about drains. Anything else?';
    expect(heardText(text, 3000, 3000)).toBe(text);
    expect(heardText(text, 0, 3000)).toBe('');
    expect(heardText(text, 1500, 3000)).toBe('You said: Tell me about');
    expect(heardText('Hello', 100, 3000)).toBe('');
  });
});

describe('ConversationHistory', () => {
  it('cuts an answer truncated after its transcript arrived; drops one never heard', () => {
    const h = new ConversationHistory(10);
    h.caller('Tell me about drains');
    h.assistant('one two three four five six seven eight nine', 'item_a', false);
    h.assistant('queued answer', 'item_b', false);
    h.truncate('item_a', 1000, 3000);
    h.truncate('item_b', 0, 1000);
    expect(h.all).toEqual([
      { role: 'caller', text: 'Tell me about drains' },
      { role: 'assistant', text: 'one two three [interrupted by the caller]', itemId: 'item_a' },
    ]);
  });

  it('cuts a transcript that arrives after the truncation; a new session forgets pending cuts', () => {
    const h = new ConversationHistory(10);
    h.truncate('item_a', 500, 1000);
    h.assistant('alpha beta gamma delta', 'item_a', true);
    expect(h.all.at(-1)!.text).toBe('alpha beta [interrupted by the caller]');
    h.truncate('item_b', 500, 1000);
    h.newSession();
    h.assistant('alpha beta gamma delta', 'item_b', false);
    expect(h.all.at(-1)!.text).toBe('alpha beta gamma delta');
  });

  it('keeps the newest entries only', () => {
    const h = new ConversationHistory(2);
    h.caller('a');
    h.caller('b');
    h.caller('c');
    expect(h.all.map((e) => e.text)).toEqual(['b', 'c']);
    expect(h.lastRole).toBe('caller');
  });
});
