/**
 * Loads uWebSockets.js and insists on the native addon. Two builds are installed under two names
 * (package.json; versions and checksums in its `runtime` record, docs in README "Runtime"):
 * - `uWebSockets.js`: the production build (Node 20/22/24/25, glibc >= 2.38: Debian trixie, the image);
 * - `uws-legacy`: an older build for Node <= 20 on glibc 2.36 (Debian bookworm development hosts; a
 *   devDependency, absent from the image). It silently falls back to a slow `ws`-based shim when its
 *   binary does not load, which would pass every test and fail in production.
 * The first build whose binary loads natively on this Node ABI and glibc wins.
 */
import { createRequire } from 'node:module';
import type * as UwsModule from 'uWebSockets.js';
import { setUwsMaxHeaderBytes } from '../config.js';
import { SwitchboardError } from '../errors.js';

export type Uws = typeof UwsModule;

/** Module names in order of preference: production first. */
export const UWS_BUILDS = ['uWebSockets.js', 'uws-legacy'] as const;

const require = createRequire(import.meta.url);

/** uWS's header limit when the caller gives none: Node's http default (uWS's own is 4 KiB). */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

/** True when `App` is the C++ binding rather than the JavaScript fallback. */
export function isNativeUws(uws: Uws): boolean {
  return Function.prototype.toString.call(uws.App).includes('[native code]');
}

/** The last line of a load error: the loader's own preamble is noise, the dlopen reason is not. */
function reason(err: unknown): string {
  if ((err as { code?: unknown }).code === 'MODULE_NOT_FOUND') return 'not installed';
  const lines = String(err instanceof Error ? err.message : err)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  return lines.at(-1) ?? 'unknown error';
}

/**
 * The addon reads UWS_HTTP_MAX_HEADERS_SIZE once, when it loads (a static initialiser): it is set
 * before the first require, and the first load in a process fixes it.
 */
export function loadUws(opts: { allowFallback: boolean; maxHeaderBytes?: number }): { uws: Uws; native: boolean; build: string } {
  setUwsMaxHeaderBytes(opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES);
  const failures: string[] = [];
  let fallback: { uws: Uws; build: string } | undefined;
  for (const build of UWS_BUILDS) {
    let uws: Uws;
    try {
      uws = require(build) as Uws;
    } catch (err) {
      failures.push(`${build}: ${reason(err)}`);
      continue;
    }
    if (isNativeUws(uws)) return { uws, native: true, build };
    failures.push(`${build}: binary did not load, JS fallback only`);
    fallback ??= { uws, build };
  }
  if (opts.allowFallback && fallback) return { uws: fallback.uws, native: false, build: fallback.build };
  throw new SwitchboardError(
    'uws_native_missing',
    `uWebSockets.js native addon did not load for Node ${process.version} (${process.platform}-${process.arch}, ABI ${process.versions.modules}): ` +
      `${failures.join('; ')}. Run Node 24 on glibc >= 2.38 (Debian trixie, as the image does), or Node 20 on Debian bookworm ` +
      'with the dev dependencies installed (legacy)' +
      (fallback ? ', or set UWS_ALLOW_FALLBACK=1 to accept the slow JS fallback' : ''),
  );
}
