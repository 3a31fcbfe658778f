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

  describe('coalescing (coalesceMs > 0)', () => {
    /** 20 ms of audio whose bytes say which delta it is. */
    const d = (i: number) => Buffer.alloc(160, i).toString('base64');
    const events = (sock: Sock) =>
      sock.sent.map((m) =>
        m['event'] === 'media'
          ? `media ${Buffer.from((m['media'] as { payload: string }).payload, 'base64').length}`
          : m['event'] === 'mark'
            ? `mark ${(m['mark'] as { name: string }).name.split(':g')[0]}`
            : String(m['event']),
      );
    const bytes = (sock: Sock) =>
      Buffer.concat(sock.sent.filter((m) => m['event'] === 'media').map((m) => Buffer.from((m['media'] as { payload: string }).payload, 'base64')));
    const expected = (from: number, to: number) => Buffer.concat(Array.from({ length: to - from }, (_, k) => Buffer.alloc(160, from + k)));

    /** 100 ms sent at stream time 0: Twilio's buffer is 100 ms ahead, so the next delta is held. */
    function ahead(coalesceMs = 60, drops: string[] = []) {
      const sock = new Sock();
      const p = new TwilioPlayout(sock, 1 << 20, 100, coalesceMs, (reason, n) => drops.push(`${reason} x${n}`));
      p.started('MZ1');
      p.tick(0);
      for (let i = 0; i < 5; i++) expect(p.play(d(i), 'item_1', 0)).toBeUndefined();
      return { sock, p, drops };
    }

    it('joins deltas once the buffer is 100 ms ahead: the same bytes in the same order in fewer media messages', () => {
      const { sock, p } = ahead();
      // The first audio of the item and everything while less than 100 ms was queued went out as it came.
      expect(events(sock)).toEqual(['media 160', 'media 160', 'media 160', 'media 160', 'media 160', 'mark item_1:100']);
      expect((sock.sent[0]!['media'] as { payload: string }).payload).toBe(d(0));
      for (let i = 5; i < 8; i++) expect(p.play(d(i), 'item_1', 0)).toBeUndefined();
      expect(events(sock).slice(6)).toEqual(['media 480']); // 60 ms held: full, sent as one
      expect(p.play(d(8), 'item_1', 0)).toBeUndefined();
      expect(events(sock)).toHaveLength(7);
      expect(p.unplayed).toBe(true);
      // The stream clock says 80 ms played: 80 ms left ahead, under the threshold: the held 20 ms go now.
      p.tick(80);
      expect(events(sock).slice(7)).toEqual(['media 160']);
      expect(p.play(d(9), 'item_1', 0)).toBeUndefined(); // 100 ms ahead again: held
      expect(events(sock)).toHaveLength(8);
      p.closeItems(); // the model is done: held audio, then the tail's mark
      expect(events(sock).slice(8)).toEqual(['media 160', 'mark item_1:200']);
      expect(bytes(sock).equals(expected(0, 10))).toBe(true);
    });

    it('a barge-in during a hold sends none of the held audio, and the truncation counts only what was sent', () => {
      const { sock, p } = ahead();
      for (let i = 5; i < 10; i++) p.play(d(i), 'item_1', 0);
      expect(events(sock).slice(6)).toEqual(['media 480']); // 160 ms sent, 40 ms held
      p.tick(40); // 120 ms still queued: still held
      expect(events(sock)).toHaveLength(7);
      expect(p.interrupt('resp_1')).toEqual([{ itemId: 'item_1', contentIndex: 0, audioEndMs: 40, sentMs: 160 }]);
      expect(events(sock).slice(7)).toEqual(['clear']);
      expect(p.unplayed).toBe(false);
      p.tick(200);
      p.closeItems();
      p.end(1000, 'bye');
      expect(events(sock).slice(7)).toEqual(['clear']);
    });

    it('the first audio of another item is never held: the held audio and its tail mark go first', () => {
      const { sock, p } = ahead();
      p.play(d(5), 'item_1', 0);
      expect(p.play(d(20), 'item_2', 0)).toBeUndefined();
      expect(events(sock).slice(6)).toEqual(['media 160', 'mark item_1:120', 'media 160']);
      expect((sock.sent.at(-1)!['media'] as { payload: string }).payload).toBe(d(20));
    });

    it('held audio goes out on a new model session and at the end; one that cannot is counted as dropped', () => {
      const { sock, p, drops } = ahead();
      p.play(d(5), 'item_1', 0);
      p.newSession();
      expect(events(sock).slice(6)).toEqual(['media 160', 'mark item_1:120']);
      p.play(d(6), 'item_2', 0); // a new item: sent
      p.play(d(7), 'item_2', 0); // 140 ms ahead: held
      expect(events(sock)).toHaveLength(9);
      p.end(1000, 'bye');
      expect(events(sock).slice(9)).toEqual(['media 160']);
      expect(sock.ended).toBe(1000);
      const b = ahead(60, drops);
      b.p.play(d(5), 'item_1', 0);
      b.p.play(d(6), 'item_1', 0);
      b.sock.buffered = 1 << 21;
      b.p.tick(60);
      expect(drops).toEqual(['caller_backpressure x2']);
      expect(events(b.sock)).toHaveLength(6);
    });

    it('a delta longer than the hold goes out as it came, after what is held', () => {
      const { sock, p } = ahead(40);
      p.play(d(5), 'item_1', 0);
      const long = Buffer.alloc(800, 9).toString('base64');
      p.play(long, 'item_1', 0);
      expect(events(sock).slice(6)).toEqual(['media 160', 'media 800', 'mark item_1:220']);
      expect((sock.sent[7]!['media'] as { payload: string }).payload).toBe(long);
    });

    it('0 (off): one media per delta, its payload untouched, whatever is queued', () => {
      const { sock, p } = ahead(0);
      for (let i = 5; i < 10; i++) p.play(d(i), 'item_1', 0);
      p.closeItems();
      expect(events(sock)).toEqual([...Array<string>(5).fill('media 160'), 'mark item_1:100', ...Array<string>(5).fill('media 160'), 'mark item_1:200']);
      sock.sent.filter((m) => m['event'] === 'media').forEach((m, i) => expect((m['media'] as { payload: string }).payload).toBe(d(i)));
    });
  });
});
