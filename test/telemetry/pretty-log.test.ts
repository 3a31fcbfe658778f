/**
 * Human log lines for a developer's terminal, JSON everywhere else: the decision, and the lines the
 * built-in formatter prints from what pino writes (redaction included, since pino redacts first).
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, prettyLogs } from '../../src/telemetry/index.js';
import { formatLogLine, prettyDestination } from '../../src/telemetry/pretty-log.js';

describe('log format', () => {
  it('is human on a terminal and JSON elsewhere, unless LOG_FORMAT says otherwise', () => {
    expect(prettyLogs(undefined, true)).toBe(true);
    expect(prettyLogs(undefined, false)).toBe(false);
    expect(prettyLogs('json', true)).toBe(false);
    expect(prettyLogs('pretty', false)).toBe(true);
  });

  it('prints time, level, message and fields on one line, redacted, without colour off a terminal', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const log = createLogger({ destination: prettyDestination(out as unknown as NodeJS.WriteStream) });
    log.info({ provider: 'sim', tenants: 2, redis: 'off (in-memory)', authToken: 'hunter2-secret' }, 'relay listening');
    log.warn('careful');
    await new Promise((r) => setImmediate(r));
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}relay listening {2}provider=sim tenants=2 redis="off \(in-memory\)" authToken=\[redacted\]$/);
    expect(lines[1]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN {2}careful$/);
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('\x1b[');
  });

  it('shows an error stack indented under its line, and passes through what is not JSON', () => {
    const err = new Error('boom');
    const line = JSON.stringify({ level: 50, time: 0, msg: 'drain failed', err: { type: 'Error', message: 'boom', stack: err.stack } });
    const out = formatLogLine(line, true);
    expect(out.split('\n')[0]).toBe('00:00:00.000 \x1b[31mERROR\x1b[0m drain failed');
    expect(out.split('\n')[1]).toBe('    Error: boom');
    expect(formatLogLine('plain text\n', false)).toBe('plain text');
  });
});
