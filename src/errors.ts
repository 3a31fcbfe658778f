/**
 * The one error type of Switchboard, its stable codes, and the WebSocket close codes we send.
 * Boundaries translate errors into close codes, HTTP statuses or tool errors; nothing else throws raw.
 */

/** Stable snake_case codes; each is listed in README.md (Errors). */
export const ErrorCodes = [
  'config_invalid',
  'uws_native_missing',
  'listen_failed',
  'internal',
  'bad_request',
  'payload_too_large',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'signature_invalid',
  'stream_token_invalid',
  'tenant_unknown',
  'tenant_busy',
  'budget_exceeded',
  'twilio_message_invalid',
  'twilio_protocol',
  'model_unreachable',
  'model_auth',
  'model_protocol',
  'model_closed',
  'model_session_expired',
  'tool_unknown',
  'tool_arguments_invalid',
  'tool_failed',
  'tool_timeout',
  'store_unavailable',
  'draining',
  'rate_limited',
] as const;
export type ErrorCode = (typeof ErrorCodes)[number];

export class SwitchboardError extends Error {
  override readonly name = 'SwitchboardError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Only this flag decides whether a caller of the failed operation may try again. */
    readonly retryable = false,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * Close codes for the Twilio media socket (and the model socket when we close it).
 * 1000-1015 are RFC 6455; 4000+ are ours. Twilio ignores the code, but logs, tests and the
 * simulated caller read it, so each reason is distinct.
 */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  unsupportedData: 1003,
  messageTooBig: 1009,
  internalError: 1011,
  /** Media, mark or other event before a valid `start`. */
  notStarted: 4000,
  /** Malformed JSON or a frame that fails validation, past the tolerated count. */
  invalidMessage: 4001,
  /** Missing, expired, reused or mismatched stream token. */
  streamTokenInvalid: 4003,
  /** Upgrade signature did not verify. */
  signatureInvalid: 4004,
  /** The relay is draining and takes no new streams. */
  draining: 4005,
  /** A second `start` on one socket, or a `streamSid` that does not match. */
  streamMismatch: 4006,
  /** No authorised `start` within MEDIA_START_TIMEOUT_SECONDS of the upgrade. */
  startTimeout: 4007,
  /** The model upstream could not be reached or failed; fallback TwiML runs after this close. */
  modelUnavailable: 4010,
  /** The call ended on purpose (end_call tool, hang-up). */
  callEnded: 4011,
  /** The call was handed to a human; Twilio runs the new TwiML. */
  handedOff: 4012,
  /** Tenant over its concurrency limit, or too many connection attempts. */
  overCapacity: 4013,
  /** The call ran past the longest allowed call duration. */
  callTooLong: 4014,
  /** A resume stream for a call another pod holds (a duplicate), or one already over: never live twice. */
  callHeldElsewhere: 4015,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * The code a WebSocket reports for a connection that ended without a close frame (RFC 6455 §7.1.5:
 * a drop, or uWS force-closing a socket whose frame it refused). Never sent, only seen.
 */
export const ABNORMAL_CLOSE = 1006;

/** Pull a short message out of anything thrown; never the stack, never a secret-bearing object. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'string' ? err : 'unknown error';
}

/** Why a file could not be read, in words (`no such file`): never its contents. */
export function fileErrorReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return code ?? errorMessage(err);
}
