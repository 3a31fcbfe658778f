// @ts-check
/* global process, console */
/**
 * Checks the installed uWebSockets.js binaries against package.json's `runtime` record (version,
 * source, sha256 of each binary), and with --load that this Node loads the recorded binary natively.
 * Plain JS with no dependencies: the image build runs it (`node scripts/verify-uws.mjs --load`) right
 * after `npm ci --omit=dev`, the test suite imports it. Exit 1 with one line per problem.
 *
 * With --prune (after a successful --load) it deletes the build's binaries for other platforms and ABIs:
 * the image keeps the one it runs.
 *
 *   node scripts/verify-uws.mjs [--build production|legacy] [--load [--prune]]
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * @typedef {{ module: string, version: string, package: string, upstream: string, glibc: string, sha256: Record<string, string> }} UwsRecord
 * @typedef {{ node: number, nodeModuleVersion: number, debian: string, image?: string, endOfLife?: string, uws: UwsRecord }} RuntimeRecord
 * @typedef {{ production: RuntimeRecord, legacy: RuntimeRecord }} Runtimes
 */

/** @param {string} [root] @returns {Runtimes} */
export function readRuntimes(root = ROOT) {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  return pkg.runtime;
}

/** @param {string} file */
export function sha256File(file) {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/**
 * Problems with the installed binaries of one build: each recorded file must exist and match.
 * @param {UwsRecord} uws @param {string} [root] @returns {string[]}
 */
export function checksumProblems(uws, root = ROOT) {
  const problems = [];
  const dir = join(root, 'node_modules', uws.module);
  if (!existsSync(dir)) return [`${uws.module} is not installed (npm ci)`];
  const installed = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
  // A git install (the official release) has no npm version suffix; a republish may add one.
  if (typeof installed !== 'string' || !installed.startsWith(uws.version))
    problems.push(`${uws.module}: installed version ${installed}, recorded ${uws.version}`);
  for (const [file, want] of Object.entries(uws.sha256)) {
    const path = join(dir, file);
    if (!existsSync(path)) problems.push(`${uws.module}/${file}: missing`);
    else {
      const got = sha256File(path);
      if (got !== want) problems.push(`${uws.module}/${file}: sha256 ${got}, recorded ${want}`);
    }
  }
  return problems;
}

/** The binary name this process would load: `uws_<platform>_<arch>_<ABI>.node`. */
export function binaryName() {
  return `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
}

/**
 * Problems loading the build natively in this process: its binary for this platform and ABI must be
 * recorded (so it is the checksummed one) and `App` must be the C++ binding.
 * @param {UwsRecord} uws @param {string} [root] @returns {string[]}
 */
export function loadProblems(uws, root = ROOT) {
  const name = binaryName();
  if (!Object.keys(uws.sha256).some((f) => f === name || f.endsWith(`/${name}`)))
    return [`${uws.module}: no recorded binary for this Node (${name}); recorded: ${Object.keys(uws.sha256).join(', ')}`];
  const require = createRequire(join(root, 'package.json'));
  try {
    const mod = require(uws.module);
    if (!Function.prototype.toString.call(mod.App).includes('[native code]')) return [`${uws.module}: loaded the JS fallback, not ${name}`];
  } catch (err) {
    return [`${uws.module}: ${name} does not load: ${String(err).split('\n').filter(Boolean).at(-1)}`];
  }
  return [];
}

/**
 * Deletes the build's binaries other than the one this process loads; returns their names.
 * @param {UwsRecord} uws @param {string} [root] @returns {string[]}
 */
export function pruneOtherBinaries(uws, root = ROOT) {
  const removed = [];
  for (const sub of ['', 'binaries']) {
    const dir = join(root, 'node_modules', uws.module, sub);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) {
      if (/^uws_.+\.node$/.test(f) && f !== binaryName()) {
        unlinkSync(join(dir, f));
        removed.push(join(sub, f));
      }
    }
  }
  return removed;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const which = args.includes('--build') ? args[args.indexOf('--build') + 1] : 'production';
  if (which !== 'production' && which !== 'legacy') {
    console.error(`verify-uws: --build must be production or legacy, got ${which}`);
    process.exit(2);
  }
  const { uws } = readRuntimes()[which];
  const problems = [...checksumProblems(uws), ...(args.includes('--load') ? loadProblems(uws) : [])];
  for (const p of problems) console.error(`verify-uws: ${p}`);
  if (problems.length > 0) process.exit(1);
  if (args.includes('--prune')) {
    if (!args.includes('--load')) {
      console.error('verify-uws: --prune needs --load (keep only a binary proven to load)');
      process.exit(2);
    }
    console.log(`verify-uws: pruned ${pruneOtherBinaries(uws).length} binaries for other platforms and Node ABIs`);
  }
  console.log(`verify-uws: ${uws.module} ${uws.version} (${uws.package}) matches the recorded sha256${args.includes('--load') ? `; ${binaryName()} loads natively` : ''}`);
}
