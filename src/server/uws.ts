/**
 * Loads uWebSockets.js and insists on the native addon: the package silently falls back to a slow
 * `ws`-based shim when its binary does not load, which would pass every test and fail in production.
 */
import { createRequire } from 'node:module';
import type * as UwsModule from 'uWebSockets.js';
import { SwitchboardError } from '../errors.js';

export type Uws = typeof UwsModule;

const require = createRequire(import.meta.url);

/** True when `App` is the C++ binding rather than the JavaScript fallback. */
export function isNativeUws(uws: Uws): boolean {
  return Function.prototype.toString.call(uws.App).includes('[native code]');
}

export function loadUws(opts: { allowFallback: boolean }): { uws: Uws; native: boolean } {
  const uws = require('uWebSockets.js') as Uws;
  const native = isNativeUws(uws);
  if (!native && !opts.allowFallback) {
    throw new SwitchboardError(
      'uws_native_missing',
      `uWebSockets.js native addon did not load for Node ${process.version} (${process.platform}-${process.arch}, ABI ${process.versions.modules}); ` +
        'run on Node 20 with glibc >= 2.36 (Debian bookworm), or set UWS_ALLOW_FALLBACK=1 to accept the slow JS fallback',
    );
  }
  return { uws, native };
}
