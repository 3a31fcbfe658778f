/**
 * The layering of src/ (scripts/check-layers.ts, run by `npm run lint`): the real tree passes, a
 * tree with a cycle, an upward import, an import from outside src/, a static simulator import, a
 * load the check cannot follow (a non-literal, an aliased or reassigned require, a Worker of an
 * unknown file), an absolute path or file: URL, or a part importing its folder's barrel or composition root fails
 * with a line naming it, and docs/architecture.md draws the same layer table as the code.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { checkLayers, findCycles, importGraph, LAYERS, opaqueLoads } from '../../scripts/check-layers.js';

const ROOT = join(import.meta.dirname, '../..');

let tmp: string | undefined;
afterEach(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
});

/** A throwaway src/ tree: path -> text. */
function tree(files: Record<string, string>): string {
  tmp = mkdtempSync(join(tmpdir(), 'sb-layers-'));
  const src = join(tmp, 'src');
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(src, p)), { recursive: true });
    writeFileSync(join(src, p), text);
  }
  writeFileSync(join(tmp, 'outside.ts'), 'export const x = 1;\n');
  return src;
}

/** No exceptions: what a fixture tree is checked with. */
const NONE = { outside: [], opaque: {} };

describe('layers', () => {
  it('src/ has no import cycle and every import goes down the layers', () => {
    expect(checkLayers(join(ROOT, 'src'))).toEqual([]);
  });

  it('sees type-only imports, re-exports, import() and import types', () => {
    const src = tree({
      'model/a.ts': "import type { B } from './b.js';\nexport type A = B;\n",
      'model/b.ts': "export * from './c.js';\nexport type B = import('./d.js').D;\n",
      'model/c.ts': "export const load = () => import('./a.js');\n",
      'model/d.ts': 'export type D = number;\n',
    });
    const edges = importGraph(src).map((e) => `${e.from} -> ${e.to}${e.dynamic ? ' (dynamic)' : ''}`);
    expect(edges.sort()).toEqual([
      'model/a.ts -> model/b.ts',
      'model/b.ts -> model/c.ts',
      'model/b.ts -> model/d.ts',
      'model/c.ts -> model/a.ts (dynamic)',
    ]);
    expect(findCycles(importGraph(src))).toEqual([['model/a.ts', 'model/b.ts', 'model/c.ts', 'model/a.ts']]);
  });

  it('sees requires through createRequire, import-equals and every form of re-export', () => {
    const src = tree({
      'model/a.ts':
        "import { createRequire } from 'node:module';\nconst req = createRequire(import.meta.url);\n" +
        "export const b = req('./b.js');\nexport const c = createRequire(import.meta.url)('./c.js');\n" +
        "export const where = req.resolve('./d.js');\nexport const pkg = req('ws');\n",
      'model/b.ts': "export { d } from './d.js';\nexport type { D } from './d.js';\nexport * as all from './c.js';\n",
      'model/c.ts': "import d = require('./d.js');\nexport const c = d;\n",
      'model/d.ts': 'export const d = 1;\nexport type D = number;\n',
    });
    const edges = importGraph(src).map((e) => `${e.from} -> ${e.to}${e.typeOnly ? ' (type)' : ''}`);
    expect(edges.sort()).toEqual([
      'model/a.ts -> model/b.ts',
      'model/a.ts -> model/c.ts',
      'model/a.ts -> model/d.ts',
      'model/b.ts -> model/c.ts',
      'model/b.ts -> model/d.ts',
      'model/b.ts -> model/d.ts (type)',
      'model/c.ts -> model/d.ts',
    ]);
  });

  it('refuses import() and require() of a non-literal unless allowed with a reason', () => {
    const src = tree({
      'model/a.ts':
        "import { createRequire } from 'node:module';\nconst r = createRequire(import.meta.url);\n" +
        "export const load = (name: string) => import(name);\nexport const tpl = (n: string) => import(`./${n}.js`);\n" +
        "export const req = (name: string) => r(name);\nexport const lit = () => import(`./b.js`);\n",
      'model/b.ts': 'export const b = 1;\n',
    });
    expect(opaqueLoads(src)).toEqual([
      { file: 'model/a.ts', call: 'import(name)' },
      { file: 'model/a.ts', call: 'import(`./${n}.js`)' },
      { file: 'model/a.ts', call: 'require(name)' },
    ]);
    const problems = checkLayers(src, NONE);
    expect(problems).toHaveLength(3);
    for (const call of ['import(name)', 'import(`./${n}.js`)', 'require(name)'])
      expect(problems).toContain(
        `model/a.ts: ${call}: a load the layer check cannot follow (name the module literally, or allow it in OPAQUE_ALLOWED with a reason)`,
      );
    const allowed = { 'model/a.ts: import(name)': 'r', 'model/a.ts: import(`./${n}.js`)': 'r', 'model/a.ts: require(name)': 'r', 'model/z.ts: import(x)': 'gone' };
    expect(checkLayers(src, { outside: [], opaque: allowed })).toEqual([
      'model/z.ts: import(x): allowed in OPAQUE_ALLOWED but no longer written (remove it)',
    ]);
  });

  it('scans .mts, .cts and .cjs files too, resolving .mjs/.cjs specifiers to their .mts/.cts sources', () => {
    const src = tree({
      'model/a.mts': "import { b } from './b.cjs';\nexport const a = b;\n",
      'model/b.cts': "import { c } from '../call/c.js';\nexport const b = c;\n",
      'model/e.cjs': "const c = require('../call/c.js');\nmodule.exports = c;\n",
      'model/f.ts': "export { a } from './a.mjs';\n",
      'call/c.ts': 'export const c = 1;\n',
    });
    expect(importGraph(src).map((e) => `${e.from} -> ${e.to}`).sort()).toEqual([
      'model/a.mts -> model/b.cts',
      'model/b.cts -> call/c.ts',
      'model/e.cjs -> call/c.ts',
      'model/f.ts -> model/a.mts',
    ]);
    expect(checkLayers(src, NONE).sort()).toEqual([
      'model/b.cts -> call/c.ts: model (layer 3) may import only layers below it, not call (layer 7)',
      'model/e.cjs -> call/c.ts: model (layer 3) may import only layers below it, not call (layer 7)',
    ]);
  });

  it('refuses an absolute path or a file: URL as a module name, even one inside src/', () => {
    const src = tree({ 'call/c.ts': 'export const c = 1;\n', 'model/keep.ts': '', 'tools/keep.ts': '' });
    const c = join(src, 'call/c.ts');
    writeFileSync(
      join(src, 'model/m.ts'),
      `import { c } from ${JSON.stringify(c.replace(/\.ts$/, '.js'))};\nexport const load = () => import(${JSON.stringify(pathToFileURL(c).href)});\nexport const m = c;\n`,
    );
    writeFileSync(join(src, 'tools/t.ts'), `export const load = () => import(${JSON.stringify(pathToFileURL(join(src, 'model/x.js')).href)});\n`);
    expect(checkLayers(src, NONE).sort()).toEqual([
      `model/m.ts -> call/c.ts: names its module by an absolute path or file: URL (${pathToFileURL(c).href}); use a relative path`,
      `model/m.ts -> call/c.ts: names its module by an absolute path or file: URL (${c.replace(/\.ts$/, '.js')}); use a relative path`,
      `tools/t.ts -> model/x.js: names its module by an absolute path or file: URL (${pathToFileURL(join(src, 'model/x.js')).href}); use a relative path`,
    ].sort());
  });

  it('follows createRequire through a renamed import, a namespace or default import and destructuring', () => {
    const src = tree({
      'model/a.ts':
        "import { createRequire as cr } from 'node:module';\nconst r = cr(import.meta.url);\nexport const b = r('./b.js');\n",
      'model/b.ts':
        "import * as mod from 'node:module';\nexport const c = mod.createRequire(import.meta.url)('./c.js');\n",
      'model/c.ts':
        "import module from 'module';\nconst q = module.createRequire(import.meta.url);\nexport const d = q.resolve('./d.js');\n",
      'model/d.ts':
        "const { createRequire: make } = await import('node:module');\nconst need = make(import.meta.url);\nexport const e = need('./e.js');\n",
      'model/e.ts': 'export const e = 1;\n',
    });
    expect(importGraph(src).map((e) => `${e.from} -> ${e.to}`).sort()).toEqual([
      'model/a.ts -> model/b.ts',
      'model/b.ts -> model/c.ts',
      'model/c.ts -> model/d.ts',
      'model/d.ts -> model/e.ts',
    ]);
    expect(opaqueLoads(src)).toEqual([]);
  });

  it('refuses a require it cannot follow: an alias, a later assignment, one handed to a function', () => {
    const src = tree({
      'model/a.ts':
        "import { createRequire as cr } from 'node:module';\nconst r = cr(import.meta.url);\nconst r2 = r;\nexport const b = r2('./b.js');\n",
      'model/b.ts':
        "import { createRequire } from 'node:module';\nlet q: NodeRequire | undefined;\nq = createRequire(import.meta.url);\nexport const c = q('./c.js');\n",
      'model/c.ts':
        "import { createRequire } from 'node:module';\nconst make = createRequire;\nexport const use = (f: unknown) => f;\nexport const u = use(createRequire(import.meta.url));\nexport const m = make;\n",
    });
    expect(opaqueLoads(src)).toEqual([
      { file: 'model/a.ts', call: 'r2 = r' },
      { file: 'model/b.ts', call: 'q = createRequire(import.meta.url)' },
      { file: 'model/c.ts', call: 'make = createRequire' },
      { file: 'model/c.ts', call: 'use(createRequire(import.meta.url))' },
    ]);
    expect(checkLayers(src, NONE)).toContain(
      'model/a.ts: r2 = r: a load the layer check cannot follow (name the module literally, or allow it in OPAQUE_ALLOWED with a reason)',
    );
  });

  it('sees new Worker(new URL(...)) and /// <reference path> as imports', () => {
    const src = tree({
      'model/m.ts':
        "/// <reference path=\"../call/types.d.ts\" />\nimport { Worker } from 'node:worker_threads';\n" +
        "export const w = new Worker(new URL('../call/w.js', import.meta.url));\nexport const v = (p: string) => new Worker(p);\n",
      'call/types.d.ts': 'declare const T: number;\n',
      'call/w.ts': 'export const w = 1;\n',
    });
    expect(importGraph(src).map((e) => `${e.from} -> ${e.to}${e.dynamic ? ' (dynamic)' : ''}${e.typeOnly ? ' (type)' : ''}`).sort()).toEqual([
      'model/m.ts -> call/types.d.ts (type)',
      'model/m.ts -> call/w.ts (dynamic)',
    ]);
    expect(opaqueLoads(src)).toEqual([{ file: 'model/m.ts', call: 'new Worker(p)' }]);
    expect(checkLayers(src, NONE).filter((p) => p.includes('may import only layers below')).sort()).toEqual([
      'model/m.ts -> call/types.d.ts: model (layer 3) may import only layers below it, not call (layer 7)',
      'model/m.ts -> call/w.ts: model (layer 3) may import only layers below it, not call (layer 7)',
    ]);
  });

  it('sees JSDoc import() types and @import tags in plain-JS modules', () => {
    const src = tree({
      'model/p.js': "/** @param {import('../call/c.js').C} c */\nexport const p = (c) => c;\n",
      'model/q.mjs': "/** @import { C } from '../call/c.js' */\n/** @type {C | undefined} */\nexport const q = undefined;\n",
      'call/c.ts': 'export type C = number;\n',
    });
    expect(importGraph(src).map((e) => `${e.from} -> ${e.to}${e.typeOnly ? ' (type)' : ''}`).sort()).toEqual([
      'model/p.js -> call/c.ts (type)',
      'model/q.mjs -> call/c.ts (type)',
    ]);
  });

  it("refuses a part that imports its folder's barrel or composition root", () => {
    const src = tree({
      'call/index.ts': "export * from './call-bridge.js';\nexport * from './playback.js';\n",
      'call/call-bridge.ts': "import { play } from './playback.js';\nexport const bridge = play;\n",
      'call/playback.ts': 'export const play = 1;\n',
      'call/tools.ts': "import type { bridge } from './call-bridge.js';\nexport type T = typeof bridge;\n",
      'call/wind.ts': "import { play } from './index.js';\nexport const w = play;\n",
      'server/app.ts': "import { bridge } from '../call/index.js';\nexport const app = bridge;\n",
      'server/index.ts': "export * from './app.js';\n",
      'server/routes/media.ts': "import type { app } from '../app.js';\nexport type M = typeof app;\n",
    });
    expect(checkLayers(src, NONE).sort()).toEqual([
      "call/tools.ts -> call/call-bridge.ts: call/call-bridge.ts is the composition root of call/; its parts never import it",
      "call/wind.ts -> call/index.ts: a module of call/ imports its own folder's barrel (import the part itself)",
      "server/routes/media.ts -> server/app.ts: server/app.ts is the composition root of server/; its parts never import it",
    ]);
  });

  it('fails on a cycle made of type-only imports, naming its path', () => {
    const src = tree({
      'call/x.ts': "import type { Y } from './y.js';\nexport interface X { y: Y }\n",
      'call/y.ts': "import type { X } from './x.js';\nexport interface Y { x: X }\n",
    });
    expect(checkLayers(src, NONE)).toEqual(['import cycle: call/x.ts -> call/y.ts -> call/x.ts']);
  });

  it('fails when a lower layer imports a higher one, src/ imports from outside it, or the simulator is loaded elsewhere', () => {
    const src = tree({
      'model/m.ts': "import type { C } from '../call/c.js';\nexport type M = C;\n",
      'call/c.ts': 'export type C = string;\n',
      'call/lifecycle.ts': 'export type Outcome = string;\n',
      'tenants/t.ts': "import type { Outcome } from '../call/lifecycle.js';\nexport type T = Outcome;\n",
      'tools/o.ts': "import { x } from '../../outside.js';\nexport const y = x;\n",
      'sim/s.ts': 'export const s = 1;\nexport type S = number;\n',
      'server/routes.ts': "import { s } from '../sim/s.js';\nexport const r = s;\n",
      'server/app.ts': "import type { S } from '../sim/s.js';\nexport type A = S;\n",
      'server/model-connector.ts': "import { s } from '../sim/s.js';\nexport const load = () => import('../sim/s.js');\nexport const t = s;\n",
      'call/sim-user.ts': "export const load = () => import('../sim/s.js');\n",
      'widgets/w.ts': 'export const w = 1;\n',
      'server/w.ts': "import { w } from '../widgets/w.js';\nexport const v = w;\n",
    });
    const problems = checkLayers(src, { outside: ['sim/s.ts -> ../gone.js'], opaque: {} });
    expect(problems).toContain('model/m.ts -> call/c.ts: model (layer 3) may import only layers below it, not call (layer 7)');
    expect(problems.some((p) => p.startsWith('tools/o.ts -> ../outside.ts: src/ imports from outside src/'))).toBe(true);
    expect(problems).toContain('server/routes.ts -> sim/s.ts: production code loads the simulator only in server/model-connector.ts');
    expect(problems).toContain('call/sim-user.ts -> sim/s.ts: production code loads the simulator only in server/model-connector.ts');
    expect(problems).toContain('server/model-connector.ts -> sim/s.ts: the simulator is loaded with import() when MODEL_PROVIDER=sim, never statically');
    expect(problems.some((p) => p.startsWith('server/w.ts -> widgets/w.ts: widgets has no layer'))).toBe(true);
    expect(problems).toContain('sim/s.ts -> ../gone.js: allowed in OUTSIDE_ALLOWED but no longer imported (remove it)');
    // The shared leaf is the one file of call/ that lower layers may use; server/ may name the simulator's types.
    expect(problems.some((p) => p.startsWith('tenants/t.ts') || p.startsWith('server/app.ts'))).toBe(false);
    expect(problems).toHaveLength(7);
  });

  it('docs/architecture.md lists the same layers, bottom to top', () => {
    const doc = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8');
    const rows = doc
      .split('\n')
      .filter((l) => /^\|\s*\d+\s*\|/.test(l))
      .map((l) => l.split('|').map((c) => c.trim()))
      .map((cells) => ({
        rank: Number(cells[1]),
        units: [...cells[2]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!),
      }));
    expect(rows.map((r) => r.rank)).toEqual(LAYERS.map((_, i) => LAYERS.length - 1 - i));
    const norm = (u: string): string => (u.endsWith('.ts') ? './' + u : u.replace(/\/$/, ''));
    expect(rows.map((r) => r.units.map(norm)).reverse()).toEqual(LAYERS.map((l) => [...l]));
  });
});
