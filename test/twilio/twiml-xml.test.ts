/**
 * The relay's TwiML is written without the twilio SDK (so the SDK is not loaded at start); the SDK's
 * VoiceResponse is the oracle here: same documents byte for byte for seeded hostile text, and the
 * same refusal of characters XML cannot carry.
 */
import twilio from 'twilio';
import { describe, expect, it } from 'vitest';
import { SwitchboardError } from '../../src/errors.js';
import { connectStreamTwiml, dialTwiml, sayHangupTwiml, voicemailTwiml } from '../../src/twilio/twiml.js';
import { int, pick, prng } from '../reliability/seeded.js';

const { VoiceResponse } = twilio.twiml;
const SEED = 0x7a1e;

/** Text with every character class the escaping treats apart: & < > " ' tab LF CR, non-ASCII, astral, entities. */
function hostile(rand: () => number): string {
  const parts = ['a', 'Z', ' ', '&', '<', '>', '"', "'", '\t', '\n', '\r', 'é', '€', '😀', '&amp;', ']]>', '<!--', '\u00a0', '=', '/', '?'];
  let s = '';
  const n = int(rand, 0, 24);
  for (let i = 0; i < n; i++) s += pick(rand, parts);
  return s;
}

describe(`twiml without the SDK (seed ${SEED})`, () => {
  it('prints what VoiceResponse prints for the stream, say/hangup, dial and voicemail documents', () => {
    const rand = prng(SEED);
    for (let i = 0; i < 300; i++) {
      const params: Record<string, string> = {};
      for (let p = int(rand, 0, 3); p > 0; p--) params[`p${p}${[...hostile(rand)].slice(0, 5).join('')}`] = hostile(rand);
      const say = rand() < 0.5 ? hostile(rand) : undefined;
      const after = rand() < 0.5 ? `https://r.example/after?x=${hostile(rand)}` : undefined;
      const status = rand() < 0.5 ? `https://r.example/status?${hostile(rand)}` : undefined;

      const vr = new VoiceResponse();
      const stream = vr.connect().stream(status === undefined ? { url: '/twilio/media' } : { url: '/twilio/media', statusCallback: status });
      for (const [name, value] of Object.entries(params)) stream.parameter({ name, value });
      if (say !== undefined) vr.say(say);
      if (after !== undefined) vr.redirect({ method: 'POST' }, after);
      else if (say !== undefined) vr.hangup();
      const ours = connectStreamTwiml({
        streamUrl: '/twilio/media',
        parameters: params,
        ...(status !== undefined ? { statusCallbackUrl: status } : {}),
        ...(say !== undefined ? { fallbackSay: say } : {}),
        ...(after !== undefined ? { afterStreamUrl: after } : {}),
      });
      expect(ours).toBe(vr.toString());

      const text = hostile(rand);
      const sh = new VoiceResponse();
      sh.say(text);
      sh.hangup();
      expect(sayHangupTwiml(text)).toBe(sh.toString());

      const to = hostile(rand);
      const callerId = rand() < 0.5 ? hostile(rand) : undefined;
      const timeout = rand() < 0.5 ? int(rand, 1, 600) : undefined;
      const d = new VoiceResponse();
      if (say !== undefined) d.say(say);
      const attrs: { callerId?: string; timeout?: number } = {};
      if (callerId !== undefined) attrs.callerId = callerId;
      if (timeout !== undefined) attrs.timeout = timeout;
      d.dial(attrs, to);
      expect(dialTwiml({ to, ...(say !== undefined ? { say } : {}), ...(callerId !== undefined ? { callerId } : {}), ...(timeout !== undefined ? { timeoutSeconds: timeout } : {}) })).toBe(
        d.toString(),
      );

      const v = new VoiceResponse();
      v.say(text);
      v.record({ action: `https://r.example/vm?${to}`, method: 'POST', maxLength: 120, playBeep: true, finishOnKey: '#' });
      v.say('We did not receive a message. Goodbye.');
      v.hangup();
      expect(voicemailTwiml({ say: text, actionUrl: `https://r.example/vm?${to}`, maxSeconds: 120 })).toBe(v.toString());
    }
  });

  it('refuses characters XML cannot carry: in text as the SDK does, in attributes too (the SDK prints those unchecked)', () => {
    for (const bad of ['\u0000', 'a\u0001b', '\u000b', '\u001f', '\ufffe', 'x\ud800', '\udc00y']) {
      const vr = new VoiceResponse();
      expect(() => {
        vr.say(bad);
        vr.toString();
      }).toThrow();
      expect(() => sayHangupTwiml(bad)).toThrow(SwitchboardError);
      const d = new VoiceResponse();
      d.dial({ callerId: bad }, '+15551234567');
      expect(d.toString()).toContain(`callerId="${bad}"`); // invalid XML, which Twilio would refuse
      expect(() => dialTwiml({ to: '+15551234567', callerId: bad })).toThrow(/not allowed in XML/);
    }
    // A surrogate pair is one legal character.
    expect(sayHangupTwiml('\ud83d\ude00')).toContain('<Say>\ud83d\ude00</Say>');
  });
});
