/**
 * The inspector heap helper against a real child (`node --inspect=127.0.0.1:0`): the URL is found on
 * stderr, a forced GC and memoryUsage come back, and the child still exits once the session is gone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { gcMemoryUsage, parseInspectorUrl, watchInspectorUrl } from '../../bench/inspector-heap.js';

describe('inspector heap', () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  it('reads a GC\'d process.memoryUsage() from a child through its loopback inspector', async () => {
    // 8 MB of garbage and 1 MB kept: the forced GC must leave heapUsed well below the garbage.
    const script = 'globalThis.keep = new Array(1 << 17).fill(1); let g = []; for (let i = 0; i < 200000; i++) g.push({ i }); g = null; setInterval(() => {}, 1000)';
    child = spawn(process.execPath, ['--inspect=127.0.0.1:0', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    const tee: Buffer[] = [];
    const url = await watchInspectorUrl(child.stderr!, (c) => tee.push(c));
    expect(url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/[0-9a-f-]+$/);
    expect(Buffer.concat(tee).toString()).toContain('Debugger listening on');
    const m = await gcMemoryUsage(url);
    expect(m.heapUsed).toBeGreaterThan(1e6);
    expect(m.heapUsed).toBeLessThan(m.heapTotal);
    expect(m.rss).toBeGreaterThan(m.heapUsed);
    // A second reading works (the first session detached), and the process exits normally after it.
    const again = await gcMemoryUsage(url);
    expect(again.heapUsed).toBeGreaterThan(1e6);
    const exited = new Promise<string | null>((resolve) => child!.once('exit', (_c, sig) => resolve(sig)));
    child.kill('SIGTERM');
    expect(await exited).toBe('SIGTERM');
  }, 20_000);

  it('accepts only loopback inspector URLs', () => {
    expect(parseInspectorUrl('Debugger listening on ws://127.0.0.1:9229/abc-1\nFor help')).toBe('ws://127.0.0.1:9229/abc-1');
    expect(parseInspectorUrl('Debugger listening on ws://0.0.0.0:9229/abc')).toBeUndefined();
    expect(parseInspectorUrl('no inspector here')).toBeUndefined();
  });

  it('rejects when stderr ends without an inspector line', async () => {
    child = spawn(process.execPath, ['-e', 'process.stderr.write("nothing\\n")'], { stdio: ['ignore', 'ignore', 'pipe'] });
    await expect(watchInspectorUrl(child.stderr!)).rejects.toThrow(/stderr ended/);
  });
});
