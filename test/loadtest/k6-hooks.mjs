// Loader hooks for the k6 shim's VU workers: `k6` and `k6/*` resolve to modules generated over
// k6-api.ts (the fakes), with the named exports k6's own modules have. Everything else is Node's.
let apiUrl = '';

/** @param {{ apiUrl: string }} data */
export function initialize(data) {
  apiUrl = data.apiUrl;
}

/** Named exports per k6 module, as the k6 docs list them (only what the shim implements). */
/** @type {Record<string, string[]>} */
const EXPORTS = {
  k6: ['check', 'sleep', 'group', 'fail'],
  'k6/http': ['get', 'post', 'request'],
  'k6/ws': ['connect'],
  'k6/crypto': ['hmac', 'randomBytes'],
  'k6/encoding': ['b64encode', 'b64decode'],
  'k6/metrics': ['Counter', 'Gauge', 'Rate', 'Trend'],
  'k6/execution': ['scenario', 'vu'],
};

/**
 * @param {string} specifier @param {unknown} context
 * @param {(s: string, c: unknown) => Promise<unknown>} next
 */
export async function resolve(specifier, context, next) {
  if (Object.hasOwn(EXPORTS, specifier)) return { url: `k6-shim:${specifier}`, shortCircuit: true };
  return next(specifier, context);
}

/**
 * @param {string} url @param {unknown} context
 * @param {(u: string, c: unknown) => Promise<unknown>} next
 */
export async function load(url, context, next) {
  if (!url.startsWith('k6-shim:')) return next(url, context);
  const name = url.slice('k6-shim:'.length);
  const names = EXPORTS[name] ?? [];
  const source = [
    `import { k6Modules } from ${JSON.stringify(apiUrl)};`,
    `const m = k6Modules[${JSON.stringify(name)}];`,
    'export default m;',
    ...names.map((n) => `export const ${n} = m.${n};`),
  ].join('\n');
  return { format: 'module', source, shortCircuit: true };
}
