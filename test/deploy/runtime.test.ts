/**
 * The runtime in one place: the Dockerfile's base image, package.json's uWS builds and their recorded
 * checksums ("runtime"), and .ci/run's production runtime agree; this Node loads the build recorded for
 * it natively; the image's recipe (stages, user, signals, what it copies); and the compiled relay
 * (`npm run build`, what the image runs) starts with node alone and drains on SIGTERM.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { checksumProblems, readRuntimes } from '../../scripts/verify-uws.mjs';
import { loadUws } from '../../src/server/index.js';
import { eventually } from '../helpers/relay.js';
import { freePort } from '../helpers/redis-server.js';

const ROOT = resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string };
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const runtimes = readRuntimes(ROOT);
const { production: prod, legacy } = runtimes;

/** Dockerfile instructions, continuation lines joined, comments dropped, grouped by stage. */
function dockerfile(): { lines: string[]; stages: { from: string; name: string | undefined; lines: string[] }[] } {
  const lines = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const stages: { from: string; name: string | undefined; lines: string[] }[] = [];
  for (const l of lines) {
    const m = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?$/i.exec(l);
    if (m) stages.push({ from: m[1] ?? '', name: m[2], lines: [] });
    else stages.at(-1)?.lines.push(l);
  }
  return { lines, stages };
}
const instr = (lines: string[], name: string) => lines.filter((l) => l.toUpperCase().startsWith(name + ' '));

describe('the production runtime agrees everywhere', () => {
  it('Dockerfile: every stage is the recorded image, Node major and Debian release', () => {
    const { stages } = dockerfile();
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(prod.image).toBe(`node:${prod.node}-${prod.debian}-slim`);
    for (const s of stages) expect(s.from).toBe(prod.image);
  });

  it('.ci/run tests on the same Node major and Debian release', () => {
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    const node = /^PROD_NODE_VERSION=(\d+)\.\d+\.\d+$/m.exec(ci);
    const debian = /^PROD_DEBIAN=(\S+)$/m.exec(ci);
    expect(node, 'PROD_NODE_VERSION=x.y.z in .ci/run').not.toBeNull();
    expect(Number(node?.[1])).toBe(prod.node);
    expect(debian?.[1]).toBe(prod.debian);
    expect(ci).toMatch(/^PROD_PACKAGES=.*\bredis-server\b.*\bprometheus\b/m);
  });

  it('package.json installs the recorded uWS builds under their module names', () => {
    // The production build is what `import 'uWebSockets.js'` names (SPEC); the image omits dev dependencies.
    expect(prod.uws.module).toBe('uWebSockets.js');
    // `package` is the exact package.json spec: an npm alias, or the official release's git tag.
    expect(pkg.dependencies[prod.uws.module]).toBe(prod.uws.package);
    expect(prod.uws.package.endsWith(`@${prod.uws.version}`) || prod.uws.package.endsWith(`#v${prod.uws.version}`)).toBe(true);
    expect(pkg.devDependencies[legacy.uws.module]).toBe(legacy.uws.package);
    expect(pkg.dependencies[legacy.uws.module]).toBeUndefined();
    expect(prod.uws.upstream).toBe(`https://github.com/uNetworking/uWebSockets.js/releases/tag/v${prod.uws.version}`);
    // Each recorded binary is for the runtime's Node ABI, on Linux.
    for (const [r, re] of [
      [prod, /^uws_linux_(x64|arm64)_(\d+)\.node$/],
      [legacy, /^binaries\/uws_linux_(x64|arm64)_(\d+)\.node$/],
    ] as const) {
      expect(Object.keys(r.uws.sha256)).toContain(`${r === legacy ? 'binaries/' : ''}uws_linux_x64_${r.nodeModuleVersion}.node`);
      for (const f of Object.keys(r.uws.sha256)) expect(Number(re.exec(f)?.[2]), f).toBe(r.nodeModuleVersion);
    }
    // engines: the legacy line and the production line.
    expect(pkg.engines.node).toBe('>=20.6');
    expect(legacy.endOfLife).toBe('2026-04-30');
  });

  it('the installed binaries match the recorded sha256 (both builds)', () => {
    expect(checksumProblems(prod.uws, ROOT)).toEqual([]);
    expect(checksumProblems(legacy.uws, ROOT)).toEqual([]);
  });

  it('this Node loads the native build recorded for its runtime', () => {
    const { native, build } = loadUws({ allowFallback: false });
    expect(native).toBe(true);
    const major = Number(process.versions.node.split('.')[0]);
    const abi = Number(process.versions.modules);
    if (major === legacy.node) {
      expect(abi).toBe(legacy.nodeModuleVersion);
      // On bookworm's glibc only the legacy build loads; on a newer glibc the production one does.
      const glibc = glibcVersion();
      expect(build).toBe(glibc !== undefined && glibc < Number(prod.uws.glibc) ? legacy.uws.module : prod.uws.module);
    } else {
      // The production runtime (and any other supported Node) runs the production build.
      expect(build).toBe(prod.uws.module);
      if (major === prod.node) {
        expect(abi).toBe(prod.nodeModuleVersion);
        expect(Object.keys(prod.uws.sha256)).toContain(`uws_${process.platform}_${process.arch}_${abi}.node`);
      }
    }
  });
});

/** glibc as a number (2.41), from the process report; undefined off glibc. */
function glibcVersion(): number | undefined {
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
  return header?.glibcVersionRuntime ? Number(header.glibcVersionRuntime) : undefined;
}

describe('Dockerfile', () => {
  const { lines, stages } = dockerfile();
  const runtime = stages.at(-1) ?? { from: '', name: undefined, lines: [] };

  it('compiles in one stage, installs production dependencies in another, and runs neither tsx nor tsc', () => {
    const build = stages.find((s) => s.lines.some((l) => /^RUN npm run build\b/.test(l)));
    expect(build, 'a stage that runs npm run build').toBeDefined();
    const deps = stages.find((s) => s.lines.some((l) => /npm ci --omit=dev/.test(l)));
    expect(deps, 'a stage with npm ci --omit=dev').toBeDefined();
    // The uWS binary is verified (sha256, native load) where the shipped node_modules is installed.
    expect(deps?.lines.join('\n')).toMatch(/node scripts\/verify-uws\.mjs --load --prune/);
    const copies = instr(runtime.lines, 'COPY');
    expect(copies).toContain(`COPY --from=${deps?.name} /app/node_modules ./node_modules`);
    expect(copies).toContain(`COPY --from=${build?.name} /app/dist ./dist`);
    expect(copies.some((c) => /\bsrc\b/.test(c))).toBe(false);
    // Nothing that runs TypeScript is a production dependency.
    for (const d of ['tsx', 'typescript', 'esbuild']) expect(pkg.dependencies[d], d).toBeUndefined();
  });

  it('runs as a non-root numeric user, stops with SIGTERM and starts the compiled relay with node directly', () => {
    const user = instr(runtime.lines, 'USER').at(-1) ?? '';
    expect(user).toMatch(/^USER [1-9]\d{3,}(:\d+)?$/);
    expect(instr(runtime.lines, 'STOPSIGNAL')).toEqual(['STOPSIGNAL SIGTERM']);
    const cmd = instr(runtime.lines, 'CMD').at(-1) ?? '';
    expect(JSON.parse(cmd.slice(4))).toEqual(['node', COMPILED_ENTRY]); // exec form: node is PID 1
    expect(instr(lines, 'ENTRYPOINT')).toEqual([]);
    // main.ts handles both signals itself (PID 1 gets no default action for them).
    const main = readFileSync(join(ROOT, 'src/main.ts'), 'utf8');
    expect(main).toContain("process.on('SIGTERM'");
    expect(main).toContain("process.on('SIGINT'");
  });

  it('copies only what exists and .dockerignore lets in', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8');
    for (const l of instr(lines, 'COPY').filter((x) => !x.includes('--from='))) {
      const parts = l.split(/\s+/).slice(1, -1);
      for (const p of parts) {
        expect(existsSync(join(ROOT, p)), p).toBe(true);
        expect(ignore).toContain(`!${p.replace(/\/$/, '')}`);
      }
    }
  });
});

/** tsconfig.build.json: outDir dist, rootDir the repo, so src/main.ts becomes dist/src/main.js. */
const COMPILED_ENTRY = 'dist/src/main.js';

/**
 * What the image runs, relative to dist/: the relay, `npm run check` (docs/runtime.md), and the
 * simulated caller (`npm run call`, which operators point at a deployed relay). The simulated model
 * is reached through the relay's import() when MODEL_PROVIDER=sim.
 */
const IMAGE_ENTRIES = ['src/main.js', 'src/check.js', 'src/sim/call-cli.js'];

/** Relative specifiers of a compiled module: static imports, re-exports and literal import(). */
function relativeLoads(text: string): string[] {
  const res = [
    /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"](\.[^'"\s]*)['"]/gm,
    /^\s*import\s*['"](\.[^'"\s]*)['"]/gm,
    /\bimport\(\s*['"](\.[^'"\s]*)['"]\s*\)/g,
  ];
  return res.flatMap((re) => [...text.matchAll(re)].map((m) => m[1] ?? ''));
}

/**
 * The compiled .js files under `dist` that no entry reaches and that are not empty type-only
 * modules (`export {};` and comments), relative to `dist`.
 */
function unreachable(dist: string, entries: readonly string[]): string[] {
  const reached = new Set<string>();
  const queue = [...entries];
  for (let i = 0; i < queue.length; i++) {
    const f = queue[i]!;
    if (reached.has(f)) continue;
    reached.add(f);
    const text = readFileSync(join(dist, f), 'utf8');
    for (const spec of relativeLoads(text)) queue.push(relative(dist, resolve(dist, dirname(f), spec)));
  }
  const files = readdirSync(dist, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.js'))
    .map((e) => relative(dist, join(e.parentPath, e.name)));
  const typeOnly = (f: string): boolean =>
    readFileSync(join(dist, f), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/^\s*\/\/.*$/gm, '')
      .trim() === 'export {};';
  return files.filter((f) => !reached.has(f) && !typeOnly(f)).sort();
}

describe('the compiled relay (npm run build), as the image runs it', () => {
  it('imports only production dependencies, starts with node alone and drains on SIGTERM', async () => {
    // Emit only: `npm run typecheck` (and the image's `npm run build`) check the types. From an
    // empty dist/, as the image builds it: what an earlier build left there proves nothing.
    rmSync(join(ROOT, 'dist'), { recursive: true, force: true });
    await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--noCheck'], {
      cwd: ROOT,
    });
    expect(existsSync(join(ROOT, COMPILED_ENTRY))).toBe(true);
    // Everything tsc compiled comes from what the image's build stage copies in (src/ imports nothing else).
    const buildStage = dockerfile().stages.find((s) => s.lines.some((l) => /^RUN npm run build\b/.test(l)));
    const copied = instr(buildStage?.lines ?? [], 'COPY').flatMap((l) => l.split(/\s+/).slice(1, -1));
    const compiled = readdirSync(join(ROOT, 'dist'), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => relative(join(ROOT, 'dist'), join(e.parentPath, e.name)));
    expect(compiled.length).toBeGreaterThan(20);
    // The image ships src/ alone: the simulator's k6-shared JS is src/sim/portable, not loadtest/.
    expect(compiled.filter((f) => !f.startsWith('src/'))).toEqual([]);
    expect(compiled).toContain('src/sim/portable/caller-core.js');
    for (const f of compiled) expect(copied.some((c) => f.startsWith(`${c.replace(/\/$/, '')}/`)), `dist/${f}`).toBe(true);
    // Nothing in the image is there for tests, bench or load tests alone: every compiled module is
    // loaded (statically or by import()) from what the image runs, or is a type-only module that
    // compiles to nothing. Harnesses (simulated Twilio API, local cluster, redis launcher, loopback
    // service) live in test/helpers/.
    expect(unreachable(join(ROOT, 'dist'), IMAGE_ENTRIES)).toEqual([]);

    const allowed = new Set(Object.keys(pkg.dependencies));
    const bare: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (p.endsWith('.js')) {
          const text = readFileSync(p, 'utf8');
          const specifiers = [
            /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"\s]+)['"]/gm, // import x from 'a'; export * from 'a'
            /^\s*import\s*['"]([^'"\s]+)['"]/gm, // import 'a'
            /\b(?:import|require)\(\s*['"]([^'"\s]+)['"]\s*\)/g, // import('a'), require('a')
          ];
          for (const re of specifiers) for (const m of text.matchAll(re)) bare.push(m[1] ?? '');
        }
      }
    };
    walk(join(ROOT, 'dist'));
    const packages = bare
      .filter((s) => !s.startsWith('.') && !s.startsWith('node:'))
      .map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : (s.split('/')[0] ?? s)));
    expect(packages.length).toBeGreaterThan(5);
    expect([...new Set(packages)].filter((p) => !allowed.has(p))).toEqual([]);

    const port = await freePort();
    const child = spawn(process.execPath, [COMPILED_ENTRY], {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '', PORT: String(port), HOST: '127.0.0.1', SIM_MODEL_MODE: 'loadtest', NODE_ENV: 'production' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const url = `http://127.0.0.1:${port}`;
      await eventually(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.status === 200, 30_000, 'compiled relay up').catch((err: unknown) => {
        throw new Error(`${String(err)}\n${out}`);
      });
      // The listening line can reach the pipe after /healthz answers.
      await eventually(() => /"msg":"relay listening"/.test(out), 10_000, 'the relay listening line');
      expect(out).toMatch(/"uws":"native \(/);
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
      expect(out).toContain('drain finished');
    } finally {
      child.kill('SIGKILL');
    }
  }, 120_000); // tsc reads the whole program: tens of seconds on a busy machine
});
