/**
 * TwiML documents the relay answers with: connect the call to our media stream (with a spoken
 * fallback), say-and-hang-up, and dial a human. Built with the twilio SDK's VoiceResponse for escaping.
 */
import twilio from 'twilio';
import { SwitchboardError } from '../errors.js';

const { VoiceResponse } = twilio.twiml;

/** Twilio's limit on one `<Parameter>`: name plus value must stay under 500 characters. */
export const MAX_STREAM_PARAMETER_CHARS = 500;

/**
 * `<Connect><Stream url statusCallback><Parameter…/></Stream></Connect><Say>fallback</Say><Hangup/>`.
 *
 * TwiML after `</Connect>` runs only once the relay closes the media socket, so the `<Say>` is what the
 * caller hears when the model is unavailable. The stream URL must be `wss://` (or relative) and carry
 * no query string: Twilio drops it (PROTOCOLS.md §1), so per-call data goes in `parameters`.
 * @throws SwitchboardError `twilio_protocol` for a bad stream URL or an oversized parameter.
 */
export function connectStreamTwiml(o: {
  streamUrl: string;
  statusCallbackUrl?: string;
  parameters: Record<string, string>;
  fallbackSay: string;
}): string {
  if (o.streamUrl.includes('?')) {
    throw new SwitchboardError('twilio_protocol', 'the <Stream> url cannot carry a query string: Twilio drops it; use parameters');
  }
  if (o.streamUrl.includes('://') && !o.streamUrl.startsWith('wss://')) {
    throw new SwitchboardError('twilio_protocol', `the <Stream> url must use wss:// (got ${o.streamUrl.split('://')[0] ?? ''}://)`);
  }
  const vr = new VoiceResponse();
  const stream = vr.connect().stream(
    o.statusCallbackUrl === undefined ? { url: o.streamUrl } : { url: o.streamUrl, statusCallback: o.statusCallbackUrl },
  );
  for (const [name, value] of Object.entries(o.parameters)) {
    if (name.length + value.length >= MAX_STREAM_PARAMETER_CHARS) {
      throw new SwitchboardError(
        'twilio_protocol',
        `stream parameter "${name.slice(0, 40)}" is ${name.length + value.length} chars; name + value must be under ${MAX_STREAM_PARAMETER_CHARS}`,
      );
    }
    stream.parameter({ name, value });
  }
  vr.say(o.fallbackSay);
  vr.hangup();
  return vr.toString();
}

/** `<Say>text</Say><Hangup/>`: unknown numbers, refused calls, the end of a call. */
export function sayHangupTwiml(text: string): string {
  const vr = new VoiceResponse();
  vr.say(text);
  vr.hangup();
  return vr.toString();
}

/** `[<Say>say</Say>]<Dial callerId timeout>to</Dial>`: hand the call to a human (REST update or redirect). */
export function dialTwiml(o: { to: string; callerId?: string; say?: string; timeoutSeconds?: number }): string {
  const vr = new VoiceResponse();
  if (o.say !== undefined) vr.say(o.say);
  const attrs: { callerId?: string; timeout?: number } = {};
  if (o.callerId !== undefined) attrs.callerId = o.callerId;
  if (o.timeoutSeconds !== undefined) attrs.timeout = o.timeoutSeconds;
  vr.dial(attrs, o.to);
  return vr.toString();
}
