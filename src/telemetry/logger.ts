/**
 * pino with redaction: tokens, auth headers, phone numbers and transcripts go in structured
 * fields that are censored here, never in message text.
 */
import { pino, type Logger, type DestinationStream } from 'pino';
import { prettyDestination } from './pretty-log.js';

export type { Logger };

export const REDACT_PATHS = [
  'token',
  '*.token',
  'authToken',
  '*.authToken',
  'apiKey',
  '*.apiKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'headers["x-twilio-signature"]',
  'headers["api-key"]',
  'signature',
  'from',
  '*.from',
  'caller',
  '*.caller',
  'phone',
  '*.phone',
  'transcript',
  '*.transcript',
  'args',
  '*.args',
  'secret',
  '*.secret',
];

export function createLogger(
  opts: { level?: string; name?: string; destination?: DestinationStream; pretty?: boolean } = {},
): Logger {
  return pino(
    {
      name: opts.name ?? 'switchboard',
      level: opts.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
    },
    opts.destination ?? (opts.pretty ? prettyDestination() : undefined),
  );
}

/** LOG_FORMAT when set; otherwise human lines on a terminal (development) and JSON everywhere else. */
export function prettyLogs(format: 'json' | 'pretty' | undefined, stdoutIsTTY: boolean): boolean {
  return format === undefined ? stdoutIsTTY : format === 'pretty';
}

/** A logger that writes nothing, for tests and tools that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
