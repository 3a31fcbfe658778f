import { describe, expect, it } from 'vitest';
import {
  parseTwilioJson,
  parseTwilioMessage,
  scanMarkFrame,
  scanMediaFrame,
  twilioEncoder,
  type ParseResult,
} from '../../src/twilio/media-stream-codec.js';

const MAX = 64 * 1024;
const SID = 'MZ18ad3ab5a668481ce02b83e7395059f0';
const PAYLOAD = Buffer.from(Array.from({ length: 160 }, (_, i) => (i * 37) & 0xff)).toString('base64');

const buf = (s: string): Buffer => Buffer.from(s, 'utf8');
const json = (v: unknown): Buffer => buf(JSON.stringify(v));
const parse = (v: unknown): ParseResult => parseTwilioMessage(typeof v === 'string' ? buf(v) : json(v), MAX);

/** The layout of docs/wire-formats.md §2 (streamSid before media). */
const mediaA = (ts = '5', payload = PAYLOAD, sid = SID): string =>
  `{"event":"media","sequenceNumber":"4","streamSid":${JSON.stringify(sid)},"media":{"track":"inbound","chunk":"2","timestamp":"${ts}","payload":"${payload}"}}`;
/** The layout of Twilio's docs (streamSid last). */
const mediaB = (ts = '5', payload = PAYLOAD): string =>
  `{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"${ts}","payload":"${payload}"},"streamSid":"${SID}"}`;

/**
 * Every single-byte replacement (structurally interesting bytes plus `extra`) and every single-byte
 * deletion of each frame: wherever `scan` answers, it must answer as the JSON path does.
 */
function mutationSweep(scan: (b: Buffer) => ParseResult | undefined, frames: string[], extra: number[]): { checked: number; scanned: number } {
  let scanned = 0;
  let checked = 0;
  for (const frame of frames) {
    const base = buf(frame);
    for (let pos = 0; pos < base.length; pos++) {
      for (const byte of [0x22, 0x5c, 0x7d, 0x7b, 0x2c, 0x3a, 0x20, 0x01, 0x30, 0x41, 0xc3, ...extra]) {
        const m = Buffer.from(base);
        m[pos] = byte;
        const fast = scan(m);
        checked++;
        if (fast === undefined) continue;
        scanned++;
        expect(fast, `byte ${byte} at ${pos} of ${frame}`).toEqual(parseTwilioJson(m));
      }
      const d = Buffer.concat([base.subarray(0, pos), base.subarray(pos + 1)]);
      const fast = scan(d);
      if (fast !== undefined) expect(fast).toEqual(parseTwilioJson(d));
    }
  }
  return { checked, scanned };
}

function expectInvalid(r: ParseResult, reason: string, detail?: RegExp): void {
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.reason).toBe(reason);
  if (detail) expect(r.detail).toMatch(detail);
}

describe('parseTwilioMessage: media', () => {
  it('reads both Twilio layouts through the fast path', () => {
    for (const frame of [mediaA(), mediaB()]) {
      const want = { ok: true, msg: { event: 'media', payload: PAYLOAD, timestampMs: 5 } };
      expect(scanMediaFrame(buf(frame))).toEqual(want);
      expect(parse(frame)).toEqual(want);
    }
  });

  it('keeps timestamp "0" as 0, not as missing (the `if (!startTs)` bug)', () => {
    expect(parse(mediaA('0'))).toEqual({ ok: true, msg: { event: 'media', payload: PAYLOAD, timestampMs: 0 } });
    expect(parse(mediaB('0'))).toEqual({ ok: true, msg: { event: 'media', payload: PAYLOAD, timestampMs: 0 } });
  });

  it('parses large timestamps and padded payloads', () => {
    for (const payload of ['AAAA', 'AAA=', 'AA==', '+/+/']) {
      const r = parse(mediaA('3600000', payload));
      expect(r).toEqual({ ok: true, msg: { event: 'media', payload, timestampMs: 3_600_000 } });
    }
  });

  it('returns a payload that outlives the buffer it came from', () => {
    const data = buf(mediaA());
    const r = parseTwilioMessage(data, MAX);
    data.fill(0x41); // uWS reuses its ArrayBuffer after the callback
    expect(r.ok && r.msg.event === 'media' && r.msg.payload).toBe(PAYLOAD);
  });

  it('falls back to JSON for other field orders, whitespace and escapes, with the same answer', () => {
    const want = { ok: true, msg: { event: 'media', payload: PAYLOAD, timestampMs: 20 } };
    const variants = [
      { media: { payload: PAYLOAD, timestamp: '20', chunk: '2', track: 'inbound' }, event: 'media', streamSid: SID },
      { event: 'media', media: { timestamp: '20', payload: PAYLOAD } }, // no track, no sid
      { event: 'media', streamSid: 'MZ"\\\u2028é', media: { track: 'inbound', timestamp: '20', payload: PAYLOAD } },
      { event: 'media', media: { track: 'inbound', timestamp: 20, payload: PAYLOAD } }, // a number is accepted
    ];
    for (const v of variants) {
      expect(scanMediaFrame(json(v))).toBeUndefined();
      expect(parse(v)).toEqual(want);
    }
    const pretty = JSON.stringify(variants[0], null, 2);
    expect(scanMediaFrame(buf(pretty))).toBeUndefined();
    expect(parse(pretty)).toEqual(want);
    // An escaped key still means "payload" to JSON.parse.
    const escaped = mediaA('20').replace('"payload"', '"\\u0070ayload"');
    expect(scanMediaFrame(buf(escaped))).toBeUndefined();
    expect(parse(escaped)).toEqual(want);
  });

  it('accepts escapes in streamSid through the JSON path', () => {
    const r = parse(mediaA('7', PAYLOAD, 'MZ\\"odd"'));
    expect(r).toEqual({ ok: true, msg: { event: 'media', payload: PAYLOAD, timestampMs: 7 } });
  });

  it('rejects non-base64 payloads with a clear reason', () => {
    for (const bad of ['AAA', 'A===', '=AAA', 'AA-_', 'AA A', '', 'AAAA\\n']) {
      const frame = mediaA('5', bad);
      expect(scanMediaFrame(buf(frame))).toBeUndefined();
      expectInvalid(parse(frame), 'invalid_shape', /media\.payload/);
    }
  });

  it('rejects bad timestamps, other tracks and missing fields', () => {
    expectInvalid(parse(mediaA('-1')), 'invalid_shape', /media\.timestamp/);
    expectInvalid(parse(mediaA('1e3')), 'invalid_shape', /media\.timestamp/);
    expectInvalid(parse(mediaA('')), 'invalid_shape', /media\.timestamp/);
    expectInvalid(parse(mediaA('1234567890123456')), 'invalid_shape', /media\.timestamp/);
    expectInvalid(parse(mediaA().replace('"inbound"', '"outbound"')), 'invalid_shape', /media\.track/);
    expectInvalid(parse({ event: 'media', media: { timestamp: '1' } }), 'invalid_shape', /media\.payload/);
    expectInvalid(parse({ event: 'media', media: { payload: PAYLOAD } }), 'invalid_shape', /media\.timestamp/);
    expectInvalid(parse({ event: 'media' }), 'invalid_shape', /media/);
    expectInvalid(parse({ event: 'media', media: { timestamp: true, payload: PAYLOAD } }), 'invalid_shape');
    expectInvalid(parse({ event: 'media', media: 'x' }), 'invalid_shape');
  });

  it('rejects trailing bytes, truncation and raw control characters like JSON.parse does', () => {
    expectInvalid(parse(mediaA() + 'x'), 'malformed_json');
    expectInvalid(parse(mediaA().slice(0, -1)), 'malformed_json');
    expectInvalid(parse(mediaA('5', PAYLOAD, 'MZ').replace('"MZ"', '"M\u0001Z"')), 'malformed_json');
  });

  it('never disagrees with the JSON path (mutation sweep)', () => {
    const { checked, scanned } = mutationSweep(scanMediaFrame, [mediaA(), mediaB(), mediaA('0', 'AA=='), mediaB('123', '+/8=')], [0x3d, 0x2d]);
    expect(checked).toBeGreaterThan(10_000);
    expect(scanned).toBeGreaterThan(1_000); // the sweep exercised the fast path, not only the fallback
  });
});

/** A mark echo as Twilio's reference shows it (streamSid before mark), and with streamSid last. */
const markA = (name: string, sid = SID): string => `{"event":"mark","sequenceNumber":"9","streamSid":${JSON.stringify(sid)},"mark":{"name":${JSON.stringify(name)}}}`;
const markB = (name: string): string => `{"event":"mark","sequenceNumber":"9","mark":{"name":${JSON.stringify(name)}},"streamSid":"${SID}"}`;
const RELAY_NAME = 'item_CkYx1v2:1840:g3:m17';

describe('parseTwilioMessage: mark echoes', () => {
  it('reads both layouts through the fast path', () => {
    for (const frame of [markA(RELAY_NAME), markB(RELAY_NAME), markA(''), markA(' !#$%&()*+,-./09:;<=>?@AZ[]^_`az{|}~')]) {
      const want = parseTwilioJson(buf(frame));
      expect(want.ok).toBe(true);
      expect(scanMarkFrame(buf(frame)), frame).toEqual(want);
      expect(parse(frame)).toEqual(want);
    }
    expect(parse(markA(RELAY_NAME))).toEqual({ ok: true, msg: { event: 'mark', name: RELAY_NAME } });
  });

  it('reads back the names the relay sends, echoed the way the simulated Twilio does', () => {
    const enc = twilioEncoder(SID);
    const sent = JSON.parse(enc.mark(RELAY_NAME)) as { mark: { name: string } };
    const echo = buf(`{"event":"mark","sequenceNumber":"12","streamSid":"${SID}","mark":{"name":${JSON.stringify(sent.mark.name)}}}`);
    expect(scanMarkFrame(echo)).toEqual({ ok: true, msg: { event: 'mark', name: RELAY_NAME } });
  });

  it('returns a name that outlives the buffer it came from', () => {
    const data = buf(markA(RELAY_NAME));
    const r = parseTwilioMessage(data, MAX);
    data.fill(0x41);
    expect(r.ok && r.msg.event === 'mark' && r.msg.name).toBe(RELAY_NAME);
  });

  it('falls back to JSON for escapes, non-ASCII names, other orders, spacing and extra fields, with the same answer', () => {
    const odd = ['say "hi"', 'back\\slash', 'tab\t', 'é', '🎉', '\u0001', 'line\u2028sep'];
    for (const name of odd) {
      for (const frame of [markA(name), markB(name)]) {
        expect(scanMarkFrame(buf(frame)), frame).toBeUndefined();
        expect(parse(frame)).toEqual(parseTwilioJson(buf(frame)));
        expect(parse(frame)).toEqual({ ok: true, msg: { event: 'mark', name } });
      }
    }
    const variants = [
      { mark: { name: RELAY_NAME }, event: 'mark', sequenceNumber: '9', streamSid: SID },
      { event: 'mark', mark: { name: RELAY_NAME } }, // no sid, no sequence number
      { event: 'mark', sequenceNumber: '9', streamSid: SID, mark: { name: RELAY_NAME, extra: 1 } },
      { event: 'mark', sequenceNumber: 9, streamSid: SID, mark: { name: RELAY_NAME } },
    ];
    for (const v of variants) {
      expect(scanMarkFrame(json(v))).toBeUndefined();
      expect(parse(v)).toEqual({ ok: true, msg: { event: 'mark', name: RELAY_NAME } });
    }
    const pretty = JSON.stringify(variants[0], null, 2);
    expect(scanMarkFrame(buf(pretty))).toBeUndefined();
    expect(parse(pretty)).toEqual({ ok: true, msg: { event: 'mark', name: RELAY_NAME } });
  });

  it('rejects malformed marks like the JSON path does', () => {
    expectInvalid(parse(markA(RELAY_NAME) + 'x'), 'malformed_json');
    expectInvalid(parse(markA(RELAY_NAME).slice(0, -1)), 'malformed_json');
    expectInvalid(parse(markA(RELAY_NAME).replace(':m17', ':m\u0001')), 'malformed_json'); // a raw control character
    expectInvalid(parse(markA('x').replace('"x"', '3')), 'invalid_shape', /mark\.name/);
    expectInvalid(parse(markA('x').replace('{"name":"x"}', '{}')), 'invalid_shape', /mark\.name/);
    expectInvalid(parse(markA('x').replace(',"mark":{"name":"x"}', '')), 'invalid_shape', /mark/);
  });

  it('never disagrees with the JSON path (mutation sweep)', () => {
    const { checked, scanned } = mutationSweep(scanMarkFrame, [markA(RELAY_NAME), markB(RELAY_NAME), markA('a'), markB('')], [0x7f]);
    expect(checked).toBeGreaterThan(3_000);
    expect(scanned).toBeGreaterThan(300); // the sweep exercised the fast path, not only the fallback
  });
});

describe('parseTwilioMessage: other events', () => {
  it('connected', () => {
    expect(parse({ event: 'connected', protocol: 'Call', version: '1.0.0' })).toEqual({ ok: true, msg: { event: 'connected' } });
  });

  it('start, with custom parameters copied and frozen', () => {
    const frame = {
      event: 'start',
      sequenceNumber: '1',
      streamSid: SID,
      start: {
        accountSid: 'AC' + '1'.repeat(32),
        streamSid: SID,
        callSid: 'CA' + 'f'.repeat(32),
        tracks: ['inbound'],
        customParameters: { tenant: 't_123', token: 'v1.abc.def', __proto__: 'x' },
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    };
    // JSON.stringify drops a literal __proto__ key set this way; write it into the text instead.
    const text = JSON.stringify(frame).replace('"token"', '"__proto__":"x","token"');
    const r = parse(text);
    expect(r.ok).toBe(true);
    if (!r.ok || r.msg.event !== 'start') throw new Error('not a start');
    expect(r.msg).toMatchObject({
      event: 'start',
      streamSid: SID,
      callSid: 'CA' + 'f'.repeat(32),
      accountSid: 'AC' + '1'.repeat(32),
      tracks: ['inbound'],
    });
    expect(r.msg.customParameters.tenant).toBe('t_123');
    expect(r.msg.customParameters.token).toBe('v1.abc.def');
    expect(Object.hasOwn(r.msg.customParameters, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(r.msg.customParameters)).toBe(Object.prototype);
    expect(Object.isFrozen(r.msg.customParameters)).toBe(true);
  });

  it('start: streamSid from either place, defaults, and mismatches', () => {
    const start = { accountSid: 'AC1', callSid: 'CA1' };
    expect(parse({ event: 'start', streamSid: 'MZ1', start })).toEqual({
      ok: true,
      msg: { event: 'start', streamSid: 'MZ1', callSid: 'CA1', accountSid: 'AC1', tracks: ['inbound'], customParameters: {} },
    });
    expectInvalid(parse({ event: 'start', start }), 'invalid_shape', /streamSid/);
    expectInvalid(parse({ event: 'start', streamSid: 'MZ1', start: { ...start, streamSid: 'MZ2' } }), 'invalid_shape', /differ/);
    expectInvalid(parse({ event: 'start', streamSid: 'MZ1', start: { accountSid: 'AC1' } }), 'invalid_shape', /start\.callSid/);
    expectInvalid(
      parse({ event: 'start', streamSid: 'MZ1', start: { ...start, customParameters: { n: 1 } } }),
      'invalid_shape',
      /customParameters/,
    );
    expectInvalid(parse({ event: 'start', streamSid: 'MZ1' }), 'invalid_shape', /start/);
    const protoNumber = JSON.stringify({ event: 'start', streamSid: 'MZ1', start: { ...start, customParameters: { a: 'b' } } }).replace(
      '"a":"b"',
      '"a":"b","__proto__":1',
    );
    expectInvalid(parse(protoNumber), 'invalid_shape', /customParameters/);
  });

  it('mark with any name', () => {
    const name = 'item_abc:1840:g3:m17 "quoted" \\ é 🎉';
    expect(parse({ event: 'mark', sequenceNumber: '9', streamSid: SID, mark: { name } })).toEqual({
      ok: true,
      msg: { event: 'mark', name },
    });
    expectInvalid(parse({ event: 'mark', streamSid: SID }), 'invalid_shape', /mark/);
    expectInvalid(parse({ event: 'mark', mark: { name: 3 } }), 'invalid_shape', /mark\.name/);
  });

  it('dtmf', () => {
    for (const digit of ['0', '9', '*', '#']) {
      expect(parse({ event: 'dtmf', streamSid: SID, dtmf: { track: 'inbound_track', digit } })).toEqual({
        ok: true,
        msg: { event: 'dtmf', digit },
      });
    }
    expectInvalid(parse({ event: 'dtmf', dtmf: { digit: '12' } }), 'invalid_shape', /dtmf\.digit/);
    expectInvalid(parse({ event: 'dtmf' }), 'invalid_shape');
  });

  it('stop', () => {
    expect(parse({ event: 'stop', sequenceNumber: '12', streamSid: SID, stop: { accountSid: 'AC1', callSid: 'CA1' } })).toEqual({
      ok: true,
      msg: { event: 'stop' },
    });
  });
});

describe('parseTwilioMessage: invalid frames', () => {
  it('malformed JSON', () => {
    expectInvalid(parse('{"event":'), 'malformed_json');
    expectInvalid(parse(''), 'malformed_json');
    expectInvalid(parseTwilioMessage(Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), MAX), 'malformed_json');
  });

  it('not an object, or no event', () => {
    expectInvalid(parse('[1,2]'), 'invalid_shape', /not a JSON object/);
    expectInvalid(parse('"media"'), 'invalid_shape', /not a JSON object/);
    expectInvalid(parse('null'), 'invalid_shape', /not a JSON object/);
    expectInvalid(parse({ streamSid: SID }), 'invalid_shape', /event/);
    expectInvalid(parse({ event: 5 }), 'invalid_shape', /event/);
  });

  it('unknown event, named in the detail (clipped)', () => {
    expectInvalid(parse({ event: 'close' }), 'unknown_event', /"close"/);
    const r = parse({ event: 'x'.repeat(10_000) });
    expectInvalid(r, 'unknown_event');
    expect(!r.ok && r.detail.length).toBeLessThan(300);
  });

  it('too large, checked before parsing', () => {
    const frame = buf(mediaA());
    expectInvalid(parseTwilioMessage(frame, frame.length - 1), 'too_large', new RegExp(`${frame.length} bytes`));
    expect(parseTwilioMessage(frame, frame.length).ok).toBe(true);
    expectInvalid(parseTwilioMessage(Buffer.alloc(100_000, 0x20), MAX), 'too_large');
  });

  it('binary frames', () => {
    expectInvalid(parseTwilioMessage(buf(mediaA()), MAX, true), 'binary');
  });
});

describe('twilioEncoder', () => {
  const enc = twilioEncoder(SID);

  it('media round-trips to the shape of docs/wire-formats.md §2', () => {
    expect(JSON.parse(enc.media(PAYLOAD))).toStrictEqual({ event: 'media', streamSid: SID, media: { payload: PAYLOAD } });
  });

  it('mark names with any characters are escaped', () => {
    for (const name of ['item_abc:1840:g3:m17', 'a"b\\c', 'line\nbreak\u0000', '\u2028é🎉', '\ud800']) {
      expect(JSON.parse(enc.mark(name))).toStrictEqual({ event: 'mark', streamSid: SID, mark: { name } });
    }
  });

  it('clear', () => {
    expect(JSON.parse(enc.clear())).toStrictEqual({ event: 'clear', streamSid: SID });
  });

  it('escapes the streamSid once', () => {
    const odd = twilioEncoder('MZ"\\x</script>');
    expect(JSON.parse(odd.media('AAAA'))).toStrictEqual({ event: 'media', streamSid: 'MZ"\\x</script>', media: { payload: 'AAAA' } });
    expect(JSON.parse(odd.clear())).toStrictEqual({ event: 'clear', streamSid: 'MZ"\\x</script>' });
  });

  it('its media frames parse back through the fast path of a media frame', () => {
    // Inbound and outbound differ in shape, but an encoded payload must survive our own parser's checks.
    const sent = JSON.parse(enc.media(PAYLOAD)) as { media: { payload: string } };
    const inbound = buf(mediaA('40', sent.media.payload));
    expect(scanMediaFrame(inbound)).toEqual({ ok: true, msg: { event: 'media', payload: PAYLOAD, timestampMs: 40 } });
  });
});
