/**
 * The layering of src/, checked on every `npm run lint`: the import graph (type-only imports,
 * re-exports, dynamic `import()`, `createRequire(...)` requires, `new Worker(new URL(...))`,
 * `/// <reference path>` and JSDoc import types included; .ts/.mts/.cts/.js/.mjs/.cjs files) has no cycle, each
 * folder imports only the layers below it, no module imports its own folder's barrel (index.ts) or
 * composition root, nothing in src/ imports from outside src/ (test/, loadtest/, bench/), every
 * load names its module literally and by a relative path (or is allowed below, with a reason), a
 * require function is only ever called (never aliased, reassigned or passed on), and production code loads
 * the simulator only where MODEL_PROVIDER=sim asks for it. docs/architecture.md (*Layers*) draws
 * the same table; test/docs/layers.test.ts keeps the two equal.
 *
 * Usage: npx tsx scripts/check-layers.ts [SRC_DIR]   (exit 1 and one line per problem)
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
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

/**
 * A folder's composition root: the module that wires the folder's parts together. The parts are
 * leaves under it and never import it (nor the folder's index.ts barrel, which re-exports it), so
 * each part can be built and tested alone and the folder has no inner cycle through its root.
 */
export const FOLDER_ROOTS: Readonly<Record<string, string>> = {
  call: 'call/call-bridge.ts',
  server: 'server/app.ts',
};

/**
 * Loads whose module the check cannot see (`import(x)`, `require(x)` with a non-literal argument),
 * keyed `file: expression` as the problems name them, with the reason each is safe. Any other such
 * load in src/ is refused: it would hide an edge from the layer and cycle checks.
 */
export const OPAQUE_ALLOWED: Readonly<Record<string, string>> = {
  'server/uws.ts: require(build)':
    'build is one of UWS_BUILDS, two package names (uWebSockets.js, uws-legacy), never a module of src/',
};

export interface Edge {
  /** Both relative to the source root, `/`-separated. */
  from: string;
  to: string;
  /** An `import()` expression or a require (loaded when reached), not a static import. */
  dynamic: boolean;
  /** `import type` / `export type` / `import('x').T`: erased, loads nothing at run time. */
  typeOnly: boolean;
  /** The specifier as written when it is an absolute path or a file: URL (refused: a relative path only). */
  absolute?: string;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.[mc]?[tj]s$/.test(e.name) && !/\.d\.[mc]?ts$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

/** A load whose argument is not a literal: `import(x)`, `require(x)`. */
export interface OpaqueLoad {
  /** Relative to the source root, `/`-separated. */
  file: string;
  /** The call as written, e.g. `require(build)`. */
  call: string;
}

/**
 * Names bound to node:module's createRequire: `createRequire` itself, an import of it under another
 * name (`import { createRequire as cr }`) and a destructured one (`const { createRequire: cr } = ...`).
 * `x.createRequire` (a namespace or default import of node:module) is recognised by its property.
 */
function createRequireNames(sf: ts.SourceFile): Set<string> {
  const names = new Set(['createRequire']);
  const visit = (n: ts.Node): void => {
    if ((ts.isImportSpecifier(n) || ts.isBindingElement(n)) && ts.isIdentifier(n.name)) {
      const key = n.propertyName ?? n.name;
      if ((ts.isIdentifier(key) || ts.isStringLiteral(key)) && key.text === 'createRequire') names.add(n.name.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return names;
}

/** `createRequire(...)` under any of its names, or `x.createRequire(...)`. */
function isCreateRequire(n: ts.Node, fns: ReadonlySet<string>): n is ts.CallExpression {
  if (!ts.isCallExpression(n)) return false;
  const callee = n.expression;
  return (
    (ts.isIdentifier(callee) && fns.has(callee.text)) ||
    (ts.isPropertyAccessExpression(callee) && callee.name.text === 'createRequire')
  );
}

/** Names bound to a require function: `require`, and each `const r = createRequire(...)`. */
function requireNames(sf: ts.SourceFile, fns: ReadonlySet<string>): Set<string> {
  const names = new Set(['require']);
  const visit = (n: ts.Node): void => {
    if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && n.initializer && isCreateRequire(n.initializer, fns))
      names.add(n.name.text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return names;
}

/** Is this call a require: `r(x)`/`r.resolve(x)` for a require name, or `createRequire(...)(x)`? */
function isRequireCall(n: ts.CallExpression, names: ReadonlySet<string>, fns: ReadonlySet<string>): boolean {
  const callee = n.expression;
  if (ts.isIdentifier(callee)) return names.has(callee.text);
  if (ts.isPropertyAccessExpression(callee) && callee.name.text === 'resolve' && ts.isIdentifier(callee.expression))
    return names.has(callee.expression.text);
  return isCreateRequire(callee, fns);
}

/**
 * A use of a require function or of createRequire that the check cannot follow: anything but a
 * call (`r(x)`, `r.resolve(x)`, `createRequire(u)(x)`), `const r = createRequire(u)`, a binding
 * site or a type query. An alias (`const r2 = r`), an assignment (`q = createRequire(u)`) or a
 * require handed to a function would hide loads from the check, so they are refused as opaque.
 */
function unfollowable(n: ts.Node, names: ReadonlySet<string>, fns: ReadonlySet<string>): boolean {
  const p = n.parent;
  if (isCreateRequire(n, fns))
    return !(
      (ts.isVariableDeclaration(p) && p.initializer === n && ts.isIdentifier(p.name)) ||
      (ts.isCallExpression(p) && p.expression === n) ||
      (ts.isPropertyAccessExpression(p) && p.expression === n && p.name.text === 'resolve' && ts.isCallExpression(p.parent) && p.parent.expression === p)
    );
  if (!ts.isIdentifier(n) || !(names.has(n.text) || fns.has(n.text))) return false;
  if (ts.isCallExpression(p) && p.expression === n) return false;
  if (ts.isPropertyAccessExpression(p))
    return p.expression === n && !(p.name.text === 'resolve' && ts.isCallExpression(p.parent) && p.parent.expression === p);
  if ((ts.isVariableDeclaration(p) || ts.isParameter(p) || ts.isPropertyAssignment(p)) && p.name === n) return false;
  return !(ts.isImportSpecifier(p) || ts.isImportClause(p) || ts.isNamespaceImport(p) || ts.isBindingElement(p) || ts.isTypeQueryNode(p) || ts.isQualifiedName(p));
}

/** `new Worker(...)` (node:worker_threads, or `x.Worker`). */
const isWorker = (n: ts.Node): n is ts.NewExpression =>
  ts.isNewExpression(n) && ((ts.isIdentifier(n.expression) && n.expression.text === 'Worker') || (ts.isPropertyAccessExpression(n.expression) && n.expression.name.text === 'Worker'));

/** The literal of `new URL('lit', import.meta.url)`, or undefined. */
function moduleUrl(n: ts.Node | undefined): string | undefined {
  if (!n || !ts.isNewExpression(n) || !ts.isIdentifier(n.expression) || n.expression.text !== 'URL') return undefined;
  const [lit, base] = n.arguments ?? [];
  const metaUrl = base && ts.isPropertyAccessExpression(base) && ts.isMetaProperty(base.expression) && base.name.text === 'url';
  return lit && ts.isStringLiteralLike(lit) && metaUrl ? lit.text : undefined;
}

/** A module named by path rather than by package: relative, absolute, or a file: URL. */
const isPathSpec = (spec: string): boolean => spec.startsWith('.') || isAbsolute(spec) || spec.startsWith('file:');

/**
 * Relative specifiers of one file (import/export declarations, `import()`, requires and
 * `import('x').T` types), and the loads whose argument is not a literal.
 */
function specifiers(file: string): {
  specs: { spec: string; dynamic: boolean; typeOnly: boolean }[];
  opaque: string[];
} {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: { spec: string; dynamic: boolean; typeOnly: boolean }[] = [];
  const opaque: string[] = [];
  const fns = createRequireNames(sf);
  const requires = requireNames(sf, fns);
  for (const ref of sf.referencedFiles) {
    const spec = isPathSpec(ref.fileName) ? ref.fileName : './' + ref.fileName;
    out.push({ spec, dynamic: false, typeOnly: true });
  }
  const load = (n: ts.CallExpression, name: string): void => {
    const arg = n.arguments[0];
    if (arg && ts.isStringLiteralLike(arg)) out.push({ spec: arg.text, dynamic: true, typeOnly: false });
    else opaque.push(`${name}(${arg ? arg.getText(sf) : ''})`);
  };
  const visit = (n: ts.Node): void => {
    if (unfollowable(n, requires, fns)) opaque.push(n.parent.getText(sf));
    if (isWorker(n)) {
      const spec = moduleUrl(n.arguments?.[0]);
      if (spec !== undefined) out.push({ spec, dynamic: true, typeOnly: false });
      else opaque.push(n.getText(sf));
    }
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, dynamic: false, typeOnly: n.importClause?.isTypeOnly === true });
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, dynamic: false, typeOnly: n.isTypeOnly });
    } else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      load(n, 'import');
    } else if (ts.isCallExpression(n) && isRequireCall(n, requires, fns)) {
      load(n, 'require');
    } else if (
      ts.isImportEqualsDeclaration(n) &&
      ts.isExternalModuleReference(n.moduleReference) &&
      ts.isStringLiteral(n.moduleReference.expression)
    ) {
      out.push({ spec: n.moduleReference.expression.text, dynamic: false, typeOnly: n.isTypeOnly });
    } else if (ts.isJSDocImportTag(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, dynamic: false, typeOnly: true });
    } else if (
      ts.isImportTypeNode(n) &&
      ts.isLiteralTypeNode(n.argument) &&
      ts.isStringLiteral(n.argument.literal)
    ) {
      out.push({ spec: n.argument.literal.text, dynamic: false, typeOnly: true });
    }
    // JSDoc (types of plain-JS modules: `{import('./x.js').T}`, `@import`) hangs off its node.
    for (const doc of (n as { jsDoc?: readonly ts.Node[] }).jsDoc ?? []) visit(doc);
    ts.forEachChild(n, visit);
  };
  ts.forEachChild(sf, visit);
  return { specs: out.filter((s) => isPathSpec(s.spec)), opaque };
}

/**
 * `./x.js` as NodeNext writes it, to the file on disk (`x.ts`, `x.mts` for `.mjs`, `x.cts` for
 * `.cjs`, or the plain-JS module itself); an absolute path or file: URL as it points.
 */
function resolveSpec(fromFile: string, spec: string): string {
  let path = spec;
  if (spec.startsWith('file:')) {
    try {
      path = fileURLToPath(spec);
    } catch {
      path = spec.slice('file:'.length);
    }
  }
  const base = resolve(dirname(fromFile), path);
  const candidates = [base.replace(/\.js$/, '.ts'), base.replace(/\.mjs$/, '.mts'), base.replace(/\.cjs$/, '.cts'), base, base + '.ts', join(base, 'index.ts')];
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

const posix = (p: string): string => p.split(sep).join('/');

/** Every load under `root` whose module is not named literally. */
export function opaqueLoads(root: string): OpaqueLoad[] {
  return sourceFiles(root).flatMap((f) =>
    specifiers(f).opaque.map((call) => ({ file: posix(relative(root, f)), call })),
  );
}

/** Every import by path (relative, absolute or file: URL) of every file under `root`. */
export function importGraph(root: string): Edge[] {
  return sourceFiles(root).flatMap((f) =>
    specifiers(f).specs.map(({ spec, dynamic, typeOnly }) => ({
      from: posix(relative(root, f)),
      to: posix(relative(root, resolveSpec(f, spec))),
      dynamic,
      typeOnly,
      ...(spec.startsWith('.') ? {} : { absolute: spec }),
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

/** The exceptions a check runs with: the real tree's by default, none in a test's fixture. */
export interface Allowed {
  outside: readonly string[];
  opaque: Readonly<Record<string, string>>;
}

/** Everything wrong with the imports under `root`, one line each; empty when the layering holds. */
export function checkLayers(
  root: string,
  { outside: outsideAllowed, opaque: opaqueAllowed }: Allowed = { outside: OUTSIDE_ALLOWED, opaque: OPAQUE_ALLOWED },
): string[] {
  const edges = importGraph(root);
  const problems: string[] = [];
  for (const cycle of findCycles(edges)) problems.push(`import cycle: ${cycle.join(' -> ')}`);
  const opaque = opaqueLoads(root).map((o) => `${o.file}: ${o.call}`);
  for (const o of opaque)
    if (!Object.hasOwn(opaqueAllowed, o))
      problems.push(`${o}: a load the layer check cannot follow (name the module literally, or allow it in OPAQUE_ALLOWED with a reason)`);
  for (const allowed of Object.keys(opaqueAllowed))
    if (!opaque.includes(allowed)) problems.push(`${allowed}: allowed in OPAQUE_ALLOWED but no longer written (remove it)`);
  for (const e of edges) {
    const arrow = `${e.from} -> ${e.to}`;
    if (e.absolute !== undefined) {
      problems.push(`${arrow}: names its module by an absolute path or file: URL (${e.absolute}); use a relative path`);
      continue;
    }
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
    if (from === to) {
      if (e.from !== `${from}/index.ts` && e.to === `${from}/index.ts`)
        problems.push(`${arrow}: a module of ${from}/ imports its own folder's barrel (import the part itself)`);
      else if (e.from !== `${from}/index.ts` && e.to === FOLDER_ROOTS[from])
        problems.push(`${arrow}: ${e.to} is the composition root of ${from}/; its parts never import it`);
      continue;
    }
    if (SHARED_LEAVES.includes(e.to)) continue;
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
