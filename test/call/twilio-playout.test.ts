import { describe, expect, it } from 'vitest';
import { TwilioPlayout, type TwilioSocket } from '../../src/call/twilio-playout.js';

class Sock implements TwilioSocket {
  sent: Record<string, unknown>[] = [];
  result: Record<string, number> = {};
  buffered = 0;
  ended: number | undefined;
  send(text: string): number {
    const m = JSON.parse(text) as Record<string, unknown>;
    const r = this.result[m['event'] as string] ?? 1;
    if (r !== 2) this.sent.push(m);
    return r;
  }
  bufferedAmount = () => this.buffered;
  cork = (fn: () => void) => fn();
  end(code: number): void {
    this.ended = code;
  }
}

const audio = Buffer.alloc(800, 0x10).toString('base64'); // 100 ms

describe('TwilioPlayout', () => {
  it('sends media then its mark on the stream sid; an echo confirms it played', () => {
    const sock = new Sock();
    const p = new TwilioPlayout(sock, 1000);
    expect(p.play(audio, 'item_1', 0)).toBe('call_ending'); // no start yet
    p.started('MZ1');
    expect(p.play(audio, 'item_1', 0)).toBeUndefined();
    expect(sock.sent.map((m) => m['event'])).toEqual(['media', 'mark']);
    expect(sock.sent[0]!['streamSid']).toBe('MZ1');
    expect(p.unplayed).toBe(true);
    expect(p.echoed((sock.sent[1]!['mark'] as { name: string }).name)).toBe(true);
    expect(p.unplayed).toBe(false);
    sock.buffered = 2000;
    expect(p.play(audio, 'item_1', 0)).toBe('caller_backpressure');
  });

  it('a dropped media frame gets no mark; a dropped mark is resent on drain', () => {
    const sock = new Sock();
    const p = new TwilioPlayout(sock, 1000);
    p.started('MZ1');
    sock.result['media'] = 2;
    expect(p.play(audio, 'i', 0)).toBe('caller_backpressure');
    expect(sock.sent).toEqual([]);
    sock.result = { mark: 2 };
    expect(p.play(audio, 'i', 0)).toBeUndefined();
    expect(sock.sent.map((m) => m['event'])).toEqual(['media']);
    sock.result = {};
    p.drained();
    expect(sock.sent.map((m) => m['event'])).toEqual(['media', 'mark']);
  });

  it('barge-in: clear while audio is unplayed, truncations of what was heard, the response goes stale', () => {
    const sock = new Sock();
    const p = new TwilioPlayout(sock, 1000);
    p.started('MZ1');
    p.streamTs = 1000;
    p.play(audio, 'item_1', 0);
    p.streamTs = 1040;
    expect(p.interrupt('resp_1')).toEqual([{ itemId: 'item_1', contentIndex: 0, audioEndMs: 40, sentMs: 100 }]);
    expect(sock.sent.at(-1)).toEqual({ event: 'clear', streamSid: 'MZ1' });
    expect(p.isDiscarded('resp_1')).toBe(true);
    expect(p.unplayed).toBe(false);
    p.newSession();
    expect(p.isDiscarded('resp_1')).toBe(false);
    p.end(1000, 'bye');
    p.end(1000, 'bye');
    expect(sock.ended).toBe(1000);
    expect(p.play(audio, 'item_2', 0)).toBe('call_ending');
  });

  it('thinned marks: one per 100 ms of small deltas; the tail is marked before the next item and when the model stops', () => {
    const sock = new Sock();
    const p = new TwilioPlayout(sock, 1000, 100);
    p.started('MZ1');
    const small = Buffer.alloc(160, 0x10).toString('base64'); // 20 ms
    for (let i = 0; i < 7; i++) expect(p.play(small, 'item_1', 0)).toBeUndefined();
    const events = () => sock.sent.map((m) => (m['event'] === 'mark' ? `mark ${(m['mark'] as { name: string }).name.split(':g')[0]}` : m['event']));
    expect(events()).toEqual(['media', 'media', 'media', 'media', 'media', 'mark item_1:100', 'media', 'media']);
    expect(p.echoed((sock.sent[5]!['mark'] as { name: string }).name)).toBe(true);
    expect(p.unplayed).toBe(true); // 40 ms sent after the last mark
    sock.sent = [];
    p.play(small, 'item_2', 0);
    expect(events()).toEqual(['mark item_1:140', 'media']);
    sock.sent = [];
    p.closeItems();
    expect(events()).toEqual(['mark item_2:20']);
    p.closeItems();
    expect(events()).toEqual(['mark item_2:20']); // nothing unmarked: no second mark
  });

  it('thinned marks: a tail mark uWS dropped is resent on drain', () => {
    const sock = new Sock();
    const p = new TwilioPlayout(sock, 1000, 100);
    p.started('MZ1');
    p.play(Buffer.alloc(320, 0x10).toString('base64'), 'item_1', 0);
    sock.result = { mark: 2 };
    p.closeItems();
    expect(sock.sent.map((m) => m['event'])).toEqual(['media']);
    sock.result = {};
    p.drained();
    expect(sock.sent.map((m) => m['event'])).toEqual(['media', 'mark']);
    expect(p.echoed((sock.sent[1]!['mark'] as { name: string }).name)).toBe(true);
    expect(p.unplayed).toBe(false);
  });
});
