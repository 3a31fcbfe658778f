import { describe, expect, it } from 'vitest';
import { buffersCallerAudio, relaysCallerAudio, transition, type CallState } from '../../src/call/call-state.js';
import { CloseCode } from '../../src/errors.js';
import type { RealtimeSocket } from '../../src/model/index.js';
import { DEMO_TENANT, resolveTenant, TenantSchema } from '../../src/tenants/index.js';

const tenant = resolveTenant(TenantSchema.parse(DEMO_TENANT), {});

const model = { send() {}, bufferedAmount: 0, isOpen: true, droppedSends: 0, onMessage() {}, onClose() {}, close() {} } satisfies RealtimeSocket;

describe('call state transitions', () => {
  it('walks the happy path', () => {
    let s: CallState = { kind: 'awaiting-start' };
    s = transition(s, { type: 'start', streamSid: 'MZ1', callSid: 'CA1' })!;
    expect(s.kind).toBe('verifying');
    expect(buffersCallerAudio(s)).toBe(true);
    s = transition(s, { type: 'authorised', tenant })!;
    expect(s).toEqual({ kind: 'connecting', streamSid: 'MZ1', callSid: 'CA1', tenant });
    s = transition(s, { type: 'model-ready', model })!;
    expect(s).toEqual({ kind: 'live', streamSid: 'MZ1', callSid: 'CA1', tenant, model });
    expect(relaysCallerAudio(s)).toBe(true);
    s = transition(s, { type: 'wind-down', outcome: 'ended_by_assistant', closeCode: CloseCode.callEnded })!;
    expect(s).toMatchObject({ kind: 'ending', model, outcome: 'ended_by_assistant' });
    expect(relaysCallerAudio(s)).toBe(true);
    // The last words re-targeted (a hand-off decided during them): still ending, with its socket.
    expect(transition(s, { type: 'wind-down', outcome: 'transferred', closeCode: CloseCode.handedOff })).toMatchObject({ kind: 'ending', model, outcome: 'transferred', closeCode: 4012 });
    expect(transition({ kind: 'reconnecting', streamSid: 'MZ1', callSid: 'CA1', tenant }, { type: 'wind-down', outcome: 'transferred', closeCode: CloseCode.handedOff })).toBeUndefined();
    s = transition(s, { type: 'end', outcome: 'ended_by_assistant' })!;
    expect(s).toEqual({ kind: 'ended', outcome: 'ended_by_assistant', callSid: 'CA1', tenant }); // an ended call still names itself
    expect(transition({ kind: 'awaiting-start' }, { type: 'end', outcome: 'protocol_error' })).toEqual({ kind: 'ended', outcome: 'protocol_error' });
  });

  it('a lost model session takes its socket with it; the next one comes with model-ready', () => {
    const live: CallState = { kind: 'live', streamSid: 'MZ', callSid: 'CA', tenant, model };
    const lost = transition(live, { type: 'model-lost' })!;
    expect(lost).toEqual({ kind: 'reconnecting', streamSid: 'MZ', callSid: 'CA', tenant });
    expect(relaysCallerAudio(lost)).toBe(false);
    expect(buffersCallerAudio(lost)).toBe(true);
    const next = { ...model };
    const again = transition(lost, { type: 'model-ready', model: next });
    expect(again?.kind).toBe('live');
    expect(again && 'model' in again ? again.model : undefined).toBe(next);
  });

  it('refuses illegal moves', () => {
    const start: CallState = { kind: 'awaiting-start' };
    expect(transition(start, { type: 'model-ready', model })).toBeUndefined();
    expect(transition(start, { type: 'authorised', tenant })).toBeUndefined();
    const live: CallState = { kind: 'live', streamSid: 'MZ', callSid: 'CA', tenant, model };
    expect(transition(live, { type: 'start', streamSid: 'MZ', callSid: 'CA' })).toBeUndefined();
    expect(transition({ kind: 'ended', outcome: 'completed' }, { type: 'end', outcome: 'completed' })).toBeUndefined();
  });
});
