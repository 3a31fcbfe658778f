import { describe, expect, it } from 'vitest';
import { ResponseSequencer } from '../../src/call/response-sequencer.js';

function sequencer(): { seq: ResponseSequencer; sent: Record<string, unknown>[]; caller: { speaking: boolean } } {
  const sent: Record<string, unknown>[] = [];
  const caller = { speaking: false };
  const seq = new ResponseSequencer((t) => sent.push(JSON.parse(t) as Record<string, unknown>), 'r_', () => caller.speaking);
  return { seq, sent, caller };
}

describe('ResponseSequencer', () => {
  it('sends at once when idle, otherwise after the active response is done; one create in flight at a time', () => {
    const { seq, sent } = sequencer();
    seq.request('Greet');
    expect(sent).toEqual([{ type: 'response.create', event_id: 'r_1', response: { instructions: 'Greet' } }]);
    seq.request(); // the greeting's create is still unanswered
    expect(sent).toHaveLength(1);
    seq.onCreated('resp_1');
    expect(sent).toHaveLength(1);
    seq.onDone('resp_1');
    expect(sent[1]).toEqual({ type: 'response.create', event_id: 'r_2' });
  });

  it('waits for a response server VAD started; plain requests coalesce', () => {
    const { seq, sent } = sequencer();
    seq.onCreated('vad_1');
    seq.request();
    seq.request();
    seq.onDone('vad_1');
    expect(sent).toEqual([{ type: 'response.create', event_id: 'r_1' }]);
    seq.onCreated('resp_1');
    seq.onDone('resp_1');
    expect(sent).toHaveLength(1); // the second request was covered by the first, not queued
  });

  it('a create rejected because a response was active goes again after it, once', () => {
    const { seq, sent } = sequencer();
    seq.request();
    seq.onCreated('vad_1'); // server VAD won the race
    expect(seq.onError('conversation_already_has_active_response', 'r_1')).toBe(true);
    expect(seq.onError('conversation_already_has_active_response', 'someone_else')).toBe(false);
    seq.onDone('vad_1');
    expect(sent.map((e) => e.event_id)).toEqual(['r_1', 'r_2']);
    expect(seq.onError('conversation_already_has_active_response', 'r_2')).toBe(true);
    expect(sent).toHaveLength(2);
    seq.onCreated('vad_2');
    seq.onDone('vad_2');
    expect(sent).toHaveLength(2); // dropped after its one retry, not queued
  });

  it('a rejection naming no event answers the create still in flight, so later requests are not held forever', () => {
    const { seq, sent } = sequencer();
    seq.request();
    expect(seq.onError('conversation_already_has_active_response', undefined)).toBe(true);
    expect(sent).toHaveLength(2); // nothing was active as far as the relay knows: asked again at once
    expect(seq.onError('invalid_value', undefined)).toBe(false);
  });

  it('holds requests while the caller speaks; the server answers the turn itself, so plain ones are dropped', () => {
    const { seq, sent, caller } = sequencer();
    caller.speaking = true;
    seq.request();
    seq.request('Say exactly: hold on');
    expect(sent).toHaveLength(0);
    caller.speaking = false;
    seq.onSpeechStopped();
    expect(sent).toEqual([{ type: 'response.create', event_id: 'r_1', response: { instructions: 'Say exactly: hold on' } }]);
    seq.onCreated('resp_1');
    seq.onDone('resp_1');
    expect(sent).toHaveLength(1); // the plain request was dropped, not queued
  });

  it('tells which response says the last words: the one answering that request, or server VAD\'s answer that covers it', () => {
    const { seq, sent } = sequencer();
    expect(seq.onCreated('vad_1')).toBeUndefined(); // server VAD's own: nobody asked for it
    seq.request(undefined, true); // the tools' answer, the call's last words, waits for vad_1
    expect(sent).toHaveLength(0);
    seq.onDone('vad_1');
    expect(seq.onCreated('resp_bye')).toEqual({ instructions: undefined, lastWords: true, retried: false, eventId: 'r_1' });
    seq.onDone('resp_bye');

    seq.onCreated('vad_2');
    seq.request(); // a plain request queued, then the last words: one answer covers both, and says them
    seq.request(undefined, true);
    seq.onDone('vad_2');
    expect(seq.onCreated('resp_bye2')?.lastWords).toBe(true);
    seq.onDone('resp_bye2');

    seq.onCreated('vad_3');
    seq.request(undefined, true);
    seq.onSpeechStopped(); // the caller spoke again: server VAD's next answer sees the tool output and says the last words
    seq.onDone('vad_3');
    expect(sent).toHaveLength(2);
    expect(seq.onCreated('vad_4')).toEqual({ instructions: undefined, lastWords: true });
    expect(seq.onCreated('vad_5')).toBeUndefined();
  });

  it('a new session forgets the old one: nothing active, nothing queued', () => {
    const { seq, sent } = sequencer();
    seq.onCreated('old');
    seq.request();
    seq.reset();
    expect(seq.activeResponseId).toBeUndefined();
    seq.request('After');
    // Sent at once, and first: the old session's plain request is gone.
    expect(sent).toEqual([{ type: 'response.create', event_id: 'r_1', response: { instructions: 'After' } }]);
  });
});
