/**
 * The relay's μ-law table and speech threshold (src/call/mulaw.ts) and the simulators' plain-JS
 * copy (src/sim/portable/audio.js) must agree: the stall rule judges speech as the simulated model does.
 */
import { describe, expect, it } from 'vitest';
import * as simAudio from '../../src/sim/portable/audio.js';
import { MULAW_TO_LINEAR, SPEECH_ENERGY_THRESHOLD } from '../../src/call/mulaw.js';

describe('μ-law decoding shared by the relay and the simulators', () => {
  it('decodes every byte as the simulators do, with the same speech threshold', () => {
    expect([...MULAW_TO_LINEAR]).toEqual([...simAudio.MULAW_TO_LINEAR]);
    expect(SPEECH_ENERGY_THRESHOLD).toBe(simAudio.SPEECH_ENERGY_THRESHOLD);
  });

  it('decodes the G.711 reference points', () => {
    expect(MULAW_TO_LINEAR[0xff]).toBe(0); // silence
    expect(MULAW_TO_LINEAR[0x7f]).toBe(0);
    expect(MULAW_TO_LINEAR[0x80]).toBe(32124); // largest positive
    expect(MULAW_TO_LINEAR[0x00]).toBe(-32124); // largest negative
    for (let b = 0; b < 256; b++) expect(simAudio.linearToMulaw(MULAW_TO_LINEAR[b]!)).toBe(b === 0x7f ? 0xff : b);
  });
});
