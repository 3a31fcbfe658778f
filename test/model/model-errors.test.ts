/** The one table of model failures, and the client event ids that tie an error to its cause. */
import { describe, expect, it } from 'vitest';
import { ClientEventLedger, classifyFailedResponse, classifyModelError, isSessionCapClose, modelErrorLabel } from '../../src/model/index.js';

describe('classifyModelError', () => {
  it('keys and quota end the call; the session cap re-opens a session; races and refused truncates are ignored', () => {
    for (const code of ['invalid_api_key', 'insufficient_quota', 'account_deactivated', 'billing_hard_limit_reached']) {
      expect(classifyModelError(code).class).toBe('call');
    }
    expect(classifyModelError('session_expired').class).toBe('session');
    expect(classifyModelError('conversation_already_has_active_response')).toEqual({ class: 'ignore', benign: true });
    expect(classifyModelError('response_cancel_not_active')).toEqual({ class: 'ignore', benign: true });
    expect(classifyModelError('invalid_value', 'conversation.item.truncate')).toEqual({ class: 'ignore', benign: false });
    expect(classifyModelError('a_code_from_the_future')).toEqual({ class: 'ignore', benign: false });
  });

  it('any error answering a session.update ends the call: every new session would be refused alike', () => {
    expect(classifyModelError('invalid_value', 'session.update').class).toBe('call');
    expect(classifyModelError('a_code_from_the_future', 'session.update').class).toBe('call');
  });

  it('failed responses: quota and keys end the call, anything else is retried', () => {
    expect(classifyFailedResponse('insufficient_quota')).toBe('call');
    expect(classifyFailedResponse('server_error')).toBe('retry');
    expect(classifyFailedResponse(undefined)).toBe('retry');
  });

  it('metric labels are a closed set', () => {
    expect(modelErrorLabel('insufficient_quota')).toBe('insufficient_quota');
    expect(modelErrorLabel('x'.repeat(40))).toBe('other');
  });

  it('the 60-minute cap close is told apart from other 1001s', () => {
    expect(isSessionCapClose(1001, 'Your session hit the maximum duration of 60 minutes.')).toBe(true);
    expect(isSessionCapClose(1001, 'going away')).toBe(false);
    expect(isSessionCapClose(1000, 'Your session hit the maximum duration of 60 minutes.')).toBe(false);
  });
});

describe('ClientEventLedger', () => {
  it('adds an event_id to any client event, keeps the JSON valid and remembers the type', () => {
    const l = new ClientEventLedger('t_', 2);
    const a = JSON.parse(l.stamp('{"type":"response.create"}')) as Record<string, unknown>;
    expect(a).toEqual({ type: 'response.create', event_id: 't_0' });
    const b = JSON.parse(l.stamp('{"type":"session.update","session":{"type":"realtime"}}')) as Record<string, unknown>;
    expect(b).toEqual({ type: 'session.update', event_id: 't_1', session: { type: 'realtime' } });
    expect(l.typeOf('t_0')).toBe('response.create');
    expect(l.typeOf('t_1')).toBe('session.update');
    l.stamp('{"type":"response.cancel"}');
    // Bounded: the oldest is forgotten.
    expect(l.typeOf('t_0')).toBeUndefined();
    expect(l.typeOf(undefined)).toBeUndefined();
    expect(l.stamp('not an event')).toBe('not an event');
    // An id chosen by the sender is kept and remembered, never doubled.
    const own = '{"type":"response.create","event_id":"mine_1","response":{"instructions":"x"}}';
    expect(l.stamp(own)).toBe(own);
    expect(l.typeOf('mine_1')).toBe('response.create');
  });
});
