/**
 * The upstream send path alone: the CPU this process spends per caller frame (20 ms, 160 bytes) sent
 * to the model as `input_audio_buffer.append` through a real `ws` client, over loopback TCP and over
 * TLS: ws's random mask against an all-zero mask (ws then skips copying and XOR-ing the text; a
 * client must mask, a zero key is valid), and one append per frame against appends of 2 and 3 frames
 * (AppendBatcher, MODEL_APPEND_FRAMES). Measured 2026-12-05: the zero mask saves nothing measurable
 * (the send's cost is the syscall and the TLS record, not the XOR), so the relay keeps ws's mask.
 * A `ws` server in a child process receives and discards (pinned to the other core when taskset is
 * there). Variants take turns round by round (order rotated), so a busy machine hits all alike.
 *
 *   npx tsx bench/ws-send.bench.ts [--frames 100000] [--rounds 4]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { AppendBatcher } from '../src/call/append-batcher.js';
import { hasTaskset } from './run.js';
import { makeBenchTls } from './tls.js';

const ROOT = join(import.meta.dirname, '..');

const SERVER = `
import { createServer as http } from 'node:http';
import { createServer as https } from 'node:https';
import { readFileSync } from 'node:fs';
import { WebSocketServer } from 'ws';
const tlsDir = process.argv[1];
const server = tlsDir === '-' ? http() : https({ key: readFileSync(tlsDir + '/key.pem'), cert: readFileSync(tlsDir + '/cert.pem') });
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws) => ws.on('message', (m) => { if (m.length === 5) ws.send('pong!'); }));
server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
`;

async function startServer(tlsDir: string | undefined, pin: boolean): Promise<{ child: ChildProcess; port: number }> {
  const args = ['--input-type=module', '-e', SERVER, tlsDir ?? '-'];
  const child = pin ? spawn('taskset', ['-c', '1', process.execPath, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] }) : spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server did not start in 10 s')), 10_000);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /port (\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
  });
  return { child, port };
}

interface Variant {
  name: string;
  zero: boolean;
  framesPerAppend: number;
}

/** All-zero masking key (ws's `generateMask` hook). */
const zeroMask = (mask: Buffer): void => void mask.fill(0);

const VARIANTS: readonly Variant[] = [
  { name: 'random mask, N=1 (before)', zero: false, framesPerAppend: 1 },
  { name: 'zero mask,   N=1', zero: true, framesPerAppend: 1 },
  { name: 'zero mask,   N=2', zero: true, framesPerAppend: 2 },
  { name: 'zero mask,   N=3', zero: true, framesPerAppend: 3 },
];

/** Sockets per round: like calls, each gets one frame per loop turn (a burst to one socket would let TLS coalesce writes). */
const SOCKETS = 50;

/** µs of this process's CPU per caller frame for about `frames` frames spread over SOCKETS sockets, one frame per socket per loop turn. */
async function round(url: string, ca: Buffer | undefined, v: Variant, frames: number): Promise<number> {
  const sockets = await Promise.all(
    Array.from({ length: SOCKETS }, async () => {
      const ws = new WebSocket(url, { perMessageDeflate: false, ...(ca ? { ca } : {}), ...(v.zero ? { generateMask: zeroMask } : {}) });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      return { ws, batcher: new AppendBatcher(v.framesPerAppend) };
    }),
  );
  const payload = Buffer.alloc(160, 0xff).toString('base64');
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const pongs = (): Promise<unknown> =>
    Promise.all(
      sockets.map(({ ws }) => {
        const p = new Promise((resolve) => ws.once('message', resolve));
        ws.send('ping!');
        return p;
      }),
    );
  // 30 loop turns of one frame per socket, then a ping-pong on each, so nothing queues unbounded.
  const block = async (): Promise<void> => {
    for (let t = 0; t < 30; t++) {
      for (const s of sockets) s.batcher.push(payload, s.ws, 0);
      await turn();
    }
    await pongs();
  };
  for (let i = 0; i < 3; i++) await block(); // warm-up
  const c0 = process.cpuUsage();
  let sent = 0;
  for (; sent < frames; sent += 30 * SOCKETS) await block();
  const c = process.cpuUsage(c0);
  for (const { ws } of sockets) ws.close();
  return (c.user + c.system) / sent;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { frames: { type: 'string' }, rounds: { type: 'string' } } });
  const frames = Math.max(1200, Math.min(2_000_000, Number(values.frames ?? 100_000) || 100_000));
  const rounds = Math.max(1, Math.min(20, Number(values.rounds ?? 4) || 4));
  const pin = hasTaskset() && (await import('node:os')).availableParallelism() >= 2;
  if (pin) execFileSync('taskset', ['-cp', '0', String(process.pid)], { stdio: 'ignore' });
  const dir = join(tmpdir(), `ws-send-bench-${process.pid}`);
  const tls = makeBenchTls(dir);
  const ca = readFileSync(tls.caPath);
  try {
    for (const mode of ['loopback', 'tls'] as const) {
      const { child, port } = await startServer(mode === 'tls' ? dir : undefined, pin);
      const url = `${mode === 'tls' ? 'wss' : 'ws'}://127.0.0.1:${port}/`;
      const res = VARIANTS.map(() => [] as number[]);
      try {
        for (let r = 0; r < rounds; r++) {
          for (let k = 0; k < VARIANTS.length; k++) {
            const i = (k + r) % VARIANTS.length;
            res[i]!.push(await round(url, mode === 'tls' ? ca : undefined, VARIANTS[i]!, frames));
          }
        }
      } finally {
        child.kill('SIGKILL');
      }
      const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      console.log(`${mode}: µs of CPU per caller frame, median of ${rounds} rounds of ${frames} frames${pin ? '' : ' (unpinned)'}`);
      VARIANTS.forEach((v, i) => console.log(`  ${v.name}  ${med(res[i]!).toFixed(2).padStart(6)}  [${res[i]!.map((x) => x.toFixed(2)).join(' ')}]`));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
