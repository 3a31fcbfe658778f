import { createHmac } from 'node:crypto';
import twilio from 'twilio';
import { describe, expect, it } from 'vitest';
import { computeTwilioSignature, validateTwilioSignature, validateUpgradeSignature } from '../../src/twilio/signature.js';

const TOKEN = '12345';

// Twilio security docs vector (docs/wire-formats.md §3).
const DOCS_URL = 'https://example.com/myapp.php?foo=1&bar=2';
const DOCS_PARAMS = {
  CallSid: 'CA1234567890ABCDE',
  Caller: '+14158675310',
  Digits: '1234',
  From: '+14158675310',
  To: '+18005551212',
};
const DOCS_SIG = 'L/OH5YylLD5NRKLltdqwSvS0BnU=';

// twilio-node spec/validation.spec.js vector.
const NODE_URL = 'https://mycompany.com/myapp.php?foo=1&bar=2';
const NODE_PARAMS = { ...DOCS_PARAMS, Caller: '+14158675309', From: '+14158675309' };
const NODE_SIG = 'RSOYDt4T1cUTdK1PDd93/VVr8B8=';

describe('computeTwilioSignature', () => {
  it('matches the published vectors and the documented signed string', () => {
    expect(computeTwilioSignature(TOKEN, DOCS_URL, DOCS_PARAMS)).toBe(DOCS_SIG);
    const signed =
      'https://example.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675310Digits1234From+14158675310To+18005551212';
    expect(createHmac('sha1', TOKEN).update(signed).digest('base64')).toBe(DOCS_SIG);
    expect(computeTwilioSignature(TOKEN, NODE_URL, NODE_PARAMS)).toBe(NODE_SIG);
    expect(computeTwilioSignature(TOKEN, 'wss://example.com/media-stream', {})).toBe('XFfwGS2Ev7f9qAP9MmRoMS7C724=');
  });

  it('signs sorted names regardless of insertion order, like twilio-node', () => {
    const shuffled = { To: NODE_PARAMS.To, Digits: NODE_PARAMS.Digits, CallSid: NODE_PARAMS.CallSid, From: NODE_PARAMS.From, Caller: NODE_PARAMS.Caller };
    expect(computeTwilioSignature(TOKEN, NODE_URL, shuffled)).toBe(NODE_SIG);
  });

  it('agrees with twilio-node for repeated names and unicode', () => {
    const params = { b: ['z', 'a', 'z'], a: 'é🎉', A: 'upper', 'x y': '' };
    expect(computeTwilioSignature(TOKEN, NODE_URL, params)).toBe(twilio.getExpectedTwilioSignature(TOKEN, NODE_URL, params));
  });
});

describe('validateTwilioSignature', () => {
  it('accepts both published form vectors', () => {
    expect(validateTwilioSignature(TOKEN, DOCS_SIG, DOCS_URL, DOCS_PARAMS)).toBe(true);
    expect(validateTwilioSignature(TOKEN, NODE_SIG, NODE_URL, NODE_PARAMS)).toBe(true);
  });

  it('accepts the URL with a port (Twilio signs HTTPS voice URLs without it) and with the default port', () => {
    expect(validateTwilioSignature(TOKEN, NODE_SIG, 'https://mycompany.com:1234/myapp.php?foo=1&bar=2', NODE_PARAMS)).toBe(true);
    const withDefault = computeTwilioSignature(TOKEN, 'https://mycompany.com:443/myapp.php?foo=1&bar=2', NODE_PARAMS);
    expect(validateTwilioSignature(TOKEN, withDefault, NODE_URL, NODE_PARAMS)).toBe(true);
    expect(validateTwilioSignature(TOKEN, NODE_SIG, 'https://user:pw@mycompany.com:1234/myapp.php?foo=1&bar=2', NODE_PARAMS)).toBe(false);
  });

  it('rejects a tampered param, an added field, a removed field and a changed query', () => {
    expect(validateTwilioSignature(TOKEN, NODE_SIG, NODE_URL, { ...NODE_PARAMS, Digits: '1235' })).toBe(false);
    expect(validateTwilioSignature(TOKEN, NODE_SIG, NODE_URL, { ...NODE_PARAMS, Extra: 'x' })).toBe(false);
    const { Digits: _d, ...without } = NODE_PARAMS;
    expect(validateTwilioSignature(TOKEN, NODE_SIG, NODE_URL, without)).toBe(false);
    expect(validateTwilioSignature(TOKEN, NODE_SIG, 'https://mycompany.com/myapp.php?foo=1&bar=3', NODE_PARAMS)).toBe(false);
    expect(validateTwilioSignature(TOKEN, NODE_SIG, 'http://mycompany.com/myapp.php?foo=1&bar=2', NODE_PARAMS)).toBe(false);
  });

  it('rejects a missing or empty signature, a wrong token, an empty token and junk', () => {
    expect(validateTwilioSignature(TOKEN, undefined, NODE_URL, NODE_PARAMS)).toBe(false);
    expect(validateTwilioSignature(TOKEN, '', NODE_URL, NODE_PARAMS)).toBe(false);
    expect(validateTwilioSignature('54321', NODE_SIG, NODE_URL, NODE_PARAMS)).toBe(false);
    expect(validateTwilioSignature('', NODE_SIG, NODE_URL, NODE_PARAMS)).toBe(false);
    expect(validateTwilioSignature(TOKEN, 'x', NODE_URL, NODE_PARAMS)).toBe(false);
    expect(validateTwilioSignature(TOKEN, NODE_SIG + 'A', NODE_URL, NODE_PARAMS)).toBe(false);
    expect(validateTwilioSignature(TOKEN, NODE_SIG, 'not a url', NODE_PARAMS)).toBe(false);
  });
});

describe('validateUpgradeSignature', () => {
  const WSS = 'wss://example.com/media-stream';
  const SIG = 'XFfwGS2Ev7f9qAP9MmRoMS7C724=';

  it('accepts the computed wss vector', () => {
    expect(validateUpgradeSignature(TOKEN, SIG, WSS)).toBe(true);
  });

  it('also accepts a signature over the trailing-slash form', () => {
    const slashed = computeTwilioSignature(TOKEN, `${WSS}/`, {});
    expect(validateUpgradeSignature(TOKEN, slashed, WSS)).toBe(true);
    expect(validateUpgradeSignature(TOKEN, slashed, `${WSS}/`)).toBe(true);
  });

  it('accepts the URL with a port and with the default :443', () => {
    expect(validateUpgradeSignature(TOKEN, SIG, 'wss://example.com:8443/media-stream')).toBe(true);
    const withDefault = computeTwilioSignature(TOKEN, 'wss://example.com:443/media-stream', {});
    expect(validateUpgradeSignature(TOKEN, withDefault, WSS)).toBe(true);
  });

  it('rejects the https form, other paths, wrong tokens and missing signatures', () => {
    const https = computeTwilioSignature(TOKEN, 'https://example.com/media-stream', {});
    expect(validateUpgradeSignature(TOKEN, https, WSS)).toBe(false);
    expect(validateUpgradeSignature(TOKEN, SIG, 'wss://example.com/other')).toBe(false);
    expect(validateUpgradeSignature('54321', SIG, WSS)).toBe(false);
    expect(validateUpgradeSignature(TOKEN, undefined, WSS)).toBe(false);
    expect(validateUpgradeSignature(TOKEN, '', WSS)).toBe(false);
  });
});
