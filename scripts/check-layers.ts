/**
 * The layering of src/, checked on every `npm run lint`: the import graph (type-only imports,
 * re-exports and dynamic `import()` included) has no cycle, each folder imports only the layers
 * below it, nothing in src/ imports from outside src/ (test/, loadtest/, bench/), and production
 * code loads the simulator only where MODEL_PROVIDER=sim asks for it. docs/architecture.md
 * (*Layers*) draws the same table; test/docs/layers.test.ts keeps the two equal.
 *
 * Usage: npx tsx scripts/check-layers.ts [SRC_DIR]   (exit 1 and one line per problem)
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * Bottom to top. A module may import its own folder and any layer strictly below its own; folders
 * that share a layer do not import each other. `.` is src/'s own top-level files, split by role.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['./errors.ts', './clock.ts', './ip.ts'],
  ['./config.ts', './ssrf.ts'],
  ['telemetry'],
  ['twilio', 'model'],
  ['tenants'],
  ['store'],
  ['usage', 'tools'],
  ['call'],
  ['sim'],
  ['server'],
  ['./main.ts', './check.ts'],
];

/**
 * The call's contract with those who watch it (CallOutcome, the lifecycle listener): a leaf that
 * imports nothing, so any layer may import it.
 */
export const SHARED_LEAVES: readonly string[] = ['call/lifecycle.ts'];

/**
 * The one place production code loads the simulator, with `import()` when MODEL_PROVIDER=sim, so a
 * relay with a real model never loads src/sim. Other server/ files may name its types
 * (`import type`, erased at run time), nothing more.
 */
export const SIM_LOADER = 'server/model-connector.ts';

/**
 * Imports from src/ to outside it (`from -> ../to`, as the problems name them) that are allowed:
 * none. The image ships src/ alone; what k6 and src/sim share lives in src/sim/portable, and
 * loadtest/ imports it from there.
 */
export const OUTSIDE_ALLOWED: readonly string[] = [];

export interface Edge {
  /** Both relative to the source root, `/`-separated. */
  from: string;
  to: string;
  /** An `import()` expression (loaded when reached), not a static import. */
  dynamic: boolean;
  /** `import type` / `export type` / `import('x').T`: erased, loads nothing at run time. */
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** Relative specifiers of one file: import/export declarations, `import()` and `import('x').T` types. */
function specifiers(file: string): { spec: string; dynamic: boolean; typeOnly: boolean }[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false);
  const out: { spec: string; dynamic: boolean; typeOnly: boolean }[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, dynamic: false, typeOnly: n.importClause?.isTypeOnly === true });
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, dynamic: false, typeOnly: n.isTypeOnly });
    } else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = n.arguments[0];
      if (arg && ts.isStringLiteralLike(arg)) out.push({ spec: arg.text, dynamic: true, typeOnly: false });
    } else if (
      ts.isImportTypeNode(n) &&
      ts.isLiteralTypeNode(n.argument) &&
      ts.isStringLiteral(n.argument.literal)
    ) {
      out.push({ spec: n.argument.literal.text, dynamic: false, typeOnly: true });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out.filter((s) => s.spec.startsWith('.'));
}

/** `./x.js` as NodeNext writes it, to the file on disk (`x.ts`, or `x.js` for plain-JS modules). */
function resolveSpec(fromFile: string, spec: string): string {
  const base = resolve(dirname(fromFile), spec);
  const candidates = [base.replace(/\.js$/, '.ts'), base, base + '.ts', join(base, 'index.ts')];
  return (
    candidates.find((c) => {
      try {
        return statSync(c).isFile();
      } catch {
        return false;
      }
    }) ?? base
  );
}

/** Every relative import of every file under `root`. */
export function importGraph(root: string): Edge[] {
  const posix = (p: string): string => p.split(sep).join('/');
  return sourceFiles(root).flatMap((f) =>
    specifiers(f).map(({ spec, dynamic, typeOnly }) => ({
      from: posix(relative(root, f)),
      to: posix(relative(root, resolveSpec(f, spec))),
      dynamic,
      typeOnly,
    })),
  );
}

/** Each cycle once, as a path that returns to its start (Tarjan's strongly connected components). */
export function findCycles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let counter = 0;
  const strong = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component = new Set<string>();
    for (let w = stack.pop()!; ; w = stack.pop()!) {
      onStack.delete(w);
      component.add(w);
      if (w === v) break;
    }
    if (component.size > 1 || (next.get(v) ?? []).includes(v)) cycles.push(cycleThrough(v, component, next));
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) strong(v);
  return cycles;
}

/** One concrete cycle inside a strongly connected component, starting and ending at `start`. */
function cycleThrough(
  start: string,
  component: ReadonlySet<string>,
  next: ReadonlyMap<string, string[]>,
): string[] {
  const seen = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!;
    for (const w of next.get(v) ?? []) {
      if (!component.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = seen.get(u)!) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!seen.has(w)) {
        seen.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/** The folder a file belongs to for layering: its first path segment, or `./name` at the top. */
function unitOf(file: string): string {
  const slash = file.indexOf('/');
  return slash < 0 ? './' + file : file.slice(0, slash);
}

function rankOf(unit: string): number {
  return LAYERS.findIndex((layer) => layer.includes(unit));
}

/** Everything wrong with the imports under `root`, one line each; empty when the layering holds. */
export function checkLayers(root: string, outsideAllowed: readonly string[] = OUTSIDE_ALLOWED): string[] {
  const edges = importGraph(root);
  const problems: string[] = [];
  for (const cycle of findCycles(edges)) problems.push(`import cycle: ${cycle.join(' -> ')}`);
  for (const e of edges) {
    const arrow = `${e.from} -> ${e.to}`;
    if (e.to.startsWith('../')) {
      if (!outsideAllowed.includes(arrow))
        problems.push(`${arrow}: src/ imports from outside src/ (test/, loadtest/, bench/ are not shipped)`);
      continue;
    }
    const from = unitOf(e.from);
    const to = unitOf(e.to);
    if (to === 'sim' && from !== 'sim') {
      const loads = !e.typeOnly;
      if (from !== 'server' || (loads && e.from !== SIM_LOADER)) problems.push(`${arrow}: production code loads the simulator only in ${SIM_LOADER}`);
      else if (loads && !e.dynamic) problems.push(`${arrow}: the simulator is loaded with import() when MODEL_PROVIDER=sim, never statically`);
      continue;
    }
    if (from === to || SHARED_LEAVES.includes(e.to)) continue;
    const [rf, rt] = [rankOf(from), rankOf(to)];
    if (rf < 0)
      problems.push(
        `${e.from}: ${from} has no layer (add it to LAYERS in scripts/check-layers.ts and docs/architecture.md)`,
      );
    else if (rt < 0)
      problems.push(
        `${arrow}: ${to} has no layer (add it to LAYERS in scripts/check-layers.ts and docs/architecture.md)`,
      );
    else if (rt >= rf)
      problems.push(
        `${arrow}: ${from} (layer ${rf}) may import only layers below it, not ${to} (layer ${rt})`,
      );
  }
  const arrows = new Set(edges.map((e) => `${e.from} -> ${e.to}`));
  for (const allowed of outsideAllowed) if (!arrows.has(allowed)) problems.push(`${allowed}: allowed in OUTSIDE_ALLOWED but no longer imported (remove it)`);
  for (const leaf of SHARED_LEAVES) {
    for (const e of edges)
      if (e.from === leaf)
        problems.push(`${e.from} -> ${e.to}: ${leaf} is a shared leaf and imports nothing`);
  }
  return problems;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'src'));
  const problems = checkLayers(root);
  for (const p of problems) console.error(`check-layers: ${p}`);
  if (problems.length > 0) process.exit(1);
  console.log(
    `check-layers: ${importGraph(root).length} imports in ${relative(process.cwd(), root) || '.'}, no cycle, layers respected`,
  );
}
