/**
 * Listening on the relay's port, exclusively. uWS (uSockets) sets SO_REUSEPORT unless told
 * otherwise, so a second relay on a taken port would start "fine" and the kernel would split
 * connections between the two: a webhook answered by one, its media stream landing on the other.
 */
import { createServer } from 'node:net';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { SwitchboardError } from '../errors.js';
import type { Uws } from './uws.js';

/** uSockets' LIBUS_LISTEN_EXCLUSIVE_PORT; builds that do not export it still take the value 1. */
function exclusiveOption(uws: Uws): number {
  const v = (uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT?: unknown }).LIBUS_LISTEN_EXCLUSIVE_PORT;
  return typeof v === 'number' ? v : 1;
}

// The typings of the pinned build omit the (host, port, options, cb) overload the addon accepts.
type ListenWithOptions = (
  host: string,
  port: number,
  options: number,
  cb: (socket: us_listen_socket | false) => void,
) => TemplatedApp;

const REASONS: Record<string, string> = {
  EADDRINUSE: 'address in use (another relay or process listens there)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'address not available on this host (check HOST)',
};

/**
 * uWS reports only "no socket"; binding a plain Node server to the same address says why
 * (EADDRINUSE, EACCES, EADDRNOTAVAIL). Only called after a failed listen.
 */
async function whyNotListening(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(REASONS[err.code ?? ''] ?? err.code ?? err.message));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve('reason unknown (the address is free now)')));
  });
}

/**
 * Fails with `listen_failed` when host:port cannot be bound, before the relay opens anything else:
 * a start that is bound to fail must not first apply a tenants file to a shared store. Port 0 (any
 * free port) is always bindable. A second check at the real listen covers the short race.
 */
export async function assertCanListen(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const problem = await new Promise<string | undefined>((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(REASONS[err.code ?? ''] ?? err.code ?? err.message));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
  if (problem) throw new SwitchboardError('listen_failed', `cannot listen on ${host}:${port}: ${problem}`);
}

/** Listen on host:port without sharing it; rejects with `listen_failed` and the reason. */
export async function listenExclusive(uws: Uws, app: TemplatedApp, host: string, port: number): Promise<us_listen_socket> {
  const socket = await new Promise<us_listen_socket | false>((resolve) => {
    (app.listen as unknown as ListenWithOptions).call(app, host, port, exclusiveOption(uws), resolve);
  });
  if (socket) return socket;
  const reason = await whyNotListening(host, port);
  throw new SwitchboardError('listen_failed', `cannot listen on ${host}:${port}: ${reason}`);
}
