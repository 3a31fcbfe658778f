/**
 * The layering of src/ (scripts/check-layers.ts, run by `npm run lint`): the real tree passes, a
 * tree with a cycle, an upward import, an import from outside src/, a static simulator import, a
 * load the check cannot follow or a part importing its folder's barrel or composition root fails
 * with a line naming it, and docs/architecture.md draws the same layer table as the code.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
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
