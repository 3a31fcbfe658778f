/**
 * Human-readable log lines for a developer's terminal: pino writes its JSON line here and this
 * prints `12:04:05.120 INFO  relay listening … key=value`. Forty lines instead of pino-pretty and
 * its dependencies; production (no TTY, or LOG_FORMAT=json) keeps pino's JSON untouched.
 */
import { Writable } from 'node:stream';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const COLOURS: Record<number, string> = { 10: '90', 20: '90', 30: '32', 40: '33', 50: '31', 60: '35' };
/** Fields every line has, or that the line shows in its own place. */
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name', 'err']);

function value(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  return JSON.stringify(v) ?? String(v);
}

/** One pino JSON line as one human line (plus the stack of an `err`, indented). */
export function formatLogLine(line: string, colour: boolean): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.trimEnd(); // not pino's: pass it through
  }
  const level = typeof rec['level'] === 'number' ? rec['level'] : 30;
  const time = typeof rec['time'] === 'number' ? new Date(rec['time']).toISOString().slice(11, 23) : '';
  const name = LEVELS[level] ?? String(level);
  const tag = colour ? `\x1b[${COLOURS[level] ?? '0'}m${name}\x1b[0m` : name;
  const fields = Object.entries(rec)
    .filter(([k]) => !HIDDEN.has(k))
    .map(([k, v]) => `${k}=${value(v)}`);
  let out = `${time} ${tag} ${typeof rec['msg'] === 'string' ? rec['msg'] : ''}${fields.length ? '  ' + fields.join(' ') : ''}`;
  const err = rec['err'] as { message?: unknown; stack?: unknown } | string | undefined;
  if (typeof err === 'string') out += `  err=${value(err)}`;
  else if (err && typeof err.stack === 'string') out += '\n    ' + err.stack.split('\n').join('\n    ');
  else if (err && typeof err.message === 'string') out += `  err=${value(err.message)}`;
  return out;
}

/** A pino destination that prints formatted lines to `out` (stdout by default; colours on a terminal only). */
export function prettyDestination(out: NodeJS.WriteStream = process.stdout, colour = out.isTTY === true): Writable {
  return new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) out.write(formatLogLine(line, colour) + '\n');
      cb();
    },
  });
}
