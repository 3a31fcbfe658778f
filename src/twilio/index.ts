/**
 * The twilio/ folder's public API: Media Streams codec, TwiML builders, signatures, stream tokens.
 * Other folders import from here; sockets and call control live with their callers.
 */
export { parseTwilioMessage, twilioEncoder } from './media-stream-codec.js';
export type { TwilioInbound, InvalidReason, ParseResult, TwilioEncoder } from './media-stream-codec.js';
export {
  connectStreamTwiml,
  callStreamTwiml,
  resumeStreamTwiml,
  sayHangupTwiml,
  dialTwiml,
  voicemailTwiml,
  MAX_STREAM_PARAMETER_CHARS,
  REFUSED_HEADER,
  STREAM_TOKEN_TTL_MS,
} from './twiml.js';
export type { CallStreamOptions } from './twiml.js';
export { validateTwilioSignature, validateUpgradeSignature, computeTwilioSignature } from './signature.js';
export { issueStreamToken, verifyStreamToken, MAX_STREAM_TOKEN_CHARS } from './stream-token.js';
export type { StreamTokenClaims, TokenCheck } from './stream-token.js';
export { mintResumeToken, verifyResumeToken, RESUME_TOKEN_TTL_MS } from './resume-token.js';
export type { MigrationReason, ResumeTokenClaims, ResumeTokenCheck } from './resume-token.js';
export { TwilioCallControl, retryAfterMs } from './call-control.js';
export type { CallControl, CallControlResult, CallUpdateOutcome, TwilioAccount } from './call-control.js';
