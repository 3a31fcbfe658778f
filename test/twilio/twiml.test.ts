import { describe, expect, it } from 'vitest';
import { SwitchboardError } from '../../src/errors.js';
import { connectStreamTwiml, dialTwiml, sayHangupTwiml } from '../../src/twilio/twiml.js';

const XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>';

describe('connectStreamTwiml', () => {
  it('connects the stream with parameters, then a fallback say and hangup', () => {
    const xml = connectStreamTwiml({
      streamUrl: 'wss://relay.example.com/twilio/media',
      statusCallbackUrl: 'https://relay.example.com/twilio/status',
      parameters: { tenant: 't_123', token: 'v1.abc.def' },
      fallbackSay: 'Sorry, the assistant is unavailable. Goodbye.',
    });
    expect(xml).toBe(
      XML_HEAD +
        '<Response><Connect><Stream url="wss://relay.example.com/twilio/media" statusCallback="https://relay.example.com/twilio/status">' +
        '<Parameter name="tenant" value="t_123"/><Parameter name="token" value="v1.abc.def"/></Stream></Connect>' +
        '<Say>Sorry, the assistant is unavailable. Goodbye.</Say><Hangup/></Response>',
    );
  });

  it('omits statusCallback when not given, and escapes &<>" in values and text', () => {
    const xml = connectStreamTwiml({
      streamUrl: 'wss://relay.example.com/twilio/media',
      parameters: { 'a&b': '<x>"y"' },
      fallbackSay: 'Tom & Jerry <say> "hi"',
    });
    expect(xml).not.toContain('statusCallback');
    expect(xml).toContain('<Parameter name="a&amp;b" value="&lt;x>&quot;y&quot;"/>');
    expect(xml).toContain('<Say>Tom &amp; Jerry &lt;say&gt; "hi"</Say>');
  });

  it('redirects after the stream when asked, with or without a say', () => {
    const base = { streamUrl: 'wss://r.example/m', parameters: { tenant: 't' } };
    const stream = '<Connect><Stream url="wss://r.example/m"><Parameter name="tenant" value="t"/></Stream></Connect>';
    expect(connectStreamTwiml({ ...base, afterStreamUrl: 'https://r.example/twilio/after-stream?a=1&b=2' })).toBe(
      XML_HEAD + `<Response>${stream}<Redirect method="POST">https://r.example/twilio/after-stream?a=1&amp;b=2</Redirect></Response>`,
    );
    expect(connectStreamTwiml({ ...base, fallbackSay: 'One moment.', afterStreamUrl: 'https://r.example/after' })).toBe(
      XML_HEAD + `<Response>${stream}<Say>One moment.</Say><Redirect method="POST">https://r.example/after</Redirect></Response>`,
    );
    expect(connectStreamTwiml(base)).toBe(XML_HEAD + `<Response>${stream}</Response>`);
  });

  it('refuses a parameter of 500 characters or more (name + value)', () => {
    const base = { streamUrl: 'wss://r.example/m', fallbackSay: 'bye' };
    expect(() => connectStreamTwiml({ ...base, parameters: { token: 'x'.repeat(494) } })).not.toThrow();
    expect(() => connectStreamTwiml({ ...base, parameters: { token: 'x'.repeat(495) } })).toThrow(SwitchboardError);
    expect(() => connectStreamTwiml({ ...base, parameters: { token: 'x'.repeat(495) } })).toThrow(/under 500/);
  });

  it('refuses stream URLs Twilio cannot use', () => {
    const o = { parameters: {}, fallbackSay: 'bye' };
    expect(() => connectStreamTwiml({ ...o, streamUrl: 'wss://r.example/m?token=1' })).toThrow(/query string/);
    expect(() => connectStreamTwiml({ ...o, streamUrl: 'https://r.example/m' })).toThrow(/wss:\/\//);
    expect(() => connectStreamTwiml({ ...o, streamUrl: 'ws://r.example/m' })).toThrow(/wss:\/\//);
    expect(connectStreamTwiml({ ...o, streamUrl: '/twilio/media' })).toContain('<Stream url="/twilio/media"/>');
  });
});

describe('sayHangupTwiml', () => {
  it('says and hangs up, escaped', () => {
    expect(sayHangupTwiml('This number is not in service & <goodbye>')).toBe(
      XML_HEAD + '<Response><Say>This number is not in service &amp; &lt;goodbye&gt;</Say><Hangup/></Response>',
    );
  });
});

describe('dialTwiml', () => {
  it('dials with caller id and timeout after an optional say', () => {
    expect(dialTwiml({ to: '+15551234567', callerId: '+14155550100', say: 'Connecting you now.', timeoutSeconds: 20 })).toBe(
      XML_HEAD +
        '<Response><Say>Connecting you now.</Say><Dial callerId="+14155550100" timeout="20">+15551234567</Dial></Response>',
    );
  });

  it('dials with nothing else', () => {
    expect(dialTwiml({ to: '+15551234567' })).toBe(XML_HEAD + '<Response><Dial>+15551234567</Dial></Response>');
  });

  it('escapes the number', () => {
    expect(dialTwiml({ to: 'sip:a&b@x<y>' })).toContain('<Dial>sip:a&amp;b@x&lt;y&gt;</Dial>');
  });
});
