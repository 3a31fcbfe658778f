/**
 * The tenant directory contract (lookup by number or id), secret resolution and tenants-file parsing.
 * Secrets are resolved once at load (env var or mounted file) and never leave the process in a response.
 */
import { readFileSync } from 'node:fs';
import { isScalar, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { fileErrorReason, SwitchboardError } from '../errors.js';
import { TenantSchema, type SecretRef, type Tenant, type TenantConfig } from './tenant.js';

export interface TenantDirectory {
  /** The tenant owning `to`; when `accountSid` is given it must match the tenant's account. */
  byNumber(to: string, accountSid?: string): Tenant | undefined;
  byId(id: string): Tenant | undefined;
  list(): readonly Tenant[];
}

export function resolveSecret(ref: SecretRef, env: NodeJS.ProcessEnv, where: string): string {
  if ('value' in ref) return ref.value;
  if ('env' in ref) {
    const v = env[ref.env];
    if (!v) throw new SwitchboardError('config_invalid', `${where}: environment variable ${ref.env} is not set`);
    return v;
  }
  try {
    return readFileSync(ref.file, 'utf8').trim();
  } catch (err) {
    throw new SwitchboardError('config_invalid', `${where}: cannot read secret file ${ref.file}: ${fileErrorReason(err)}`, false, { cause: err });
  }
}

export function resolveTenant(cfg: TenantConfig, env: NodeJS.ProcessEnv): Tenant {
  const resolvedAuthToken = resolveSecret(cfg.twilio.authToken, env, `tenant ${cfg.id}: twilio.authToken`);
  const prev = cfg.twilio.previousAuthToken;
  if (prev === undefined) return Object.freeze({ ...cfg, resolvedAuthToken });
  const resolvedPreviousAuthToken = resolveSecret(prev, env, `tenant ${cfg.id}: twilio.previousAuthToken`);
  return Object.freeze({ ...cfg, resolvedAuthToken, resolvedPreviousAuthToken });
}

/** Where a YAML node starts (1-based), or undefined for a node without a range. */
function position(node: unknown, lines: LineCounter): { line: number; col: number } | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range ? lines.linePos(range[0]) : undefined;
}

/**
 * A schema problem in operator terms. The common YAML trap gets its own sentence: an unquoted
 * `+14155550100` or `007` is read as a number, so a field that must be text fails on it.
 */
function explain(issue: z.core.$ZodIssue, node: unknown): string {
  if (issue.code === 'invalid_type' && isScalar(node) && typeof node.source === 'string') {
    const value = node.value;
    if (issue.expected === 'string' && (typeof value === 'number' || typeof value === 'boolean')) {
      return `must be text, but YAML reads unquoted ${node.source} as a ${typeof value}: quote it ('${node.source}')`;
    }
    if (issue.expected === 'number' && typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) {
      return `must be a number, but it is quoted text: write ${value.trim()} without quotes`;
    }
  }
  return issue.message;
}

/** A problem at a place in a tenants file: `line` and `col` are 1-based (1:1 when it has no node). */
export interface TenantsFileProblem {
  line: number;
  col: number;
  message: string;
}

/** A tenants file read without giving up at the first problem. */
export interface TenantsDocument {
  source: string;
  /** Every list entry in file order: its raw value, and the tenant when it validates. */
  entries: { index: number; raw: unknown; tenant?: TenantConfig }[];
  /** YAML, schema and duplicate problems. */
  problems: TenantsFileProblem[];
  /** Where `path` inside entry `index` is (the closest node that exists: a missing field, its parent). */
  locate(index: number, path: readonly PropertyKey[]): { line: number; col: number };
}

/** `source:line:col: message` lines in file order (top to bottom, as the operator reads). */
export function formatTenantsProblems(source: string, problems: readonly TenantsFileProblem[]): string[] {
  return [...problems].sort((a, b) => a.line - b.line || a.col - b.col).map((p) => `${source}:${p.line}:${p.col}: ${p.message}`);
}

/**
 * Read a tenants file (a list, or `{tenants: [...]}`) and validate every entry, collecting all
 * problems instead of stopping at the first. YAML syntax errors leave no entries.
 */
export function readTenantsDocument(text: string, source: string): TenantsDocument {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines }); // YAML is a superset of JSON
  const none = { line: 1, col: 1 };
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => ({
      ...(e.linePos ? { line: e.linePos[0].line, col: e.linePos[0].col } : none),
      message: `not valid YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
    }));
    return { source, entries: [], problems, locate: () => none };
  }
  const root: unknown = doc.toJS();
  const inList = Array.isArray(root);
  const list = inList ? root : (root as { tenants?: unknown } | null)?.tenants;
  if (!Array.isArray(list)) return { source, entries: [], problems: [{ ...none, message: 'expected a list of tenants or {tenants: [...]}' }], locate: () => none };
  const base = inList ? [] : ['tenants'];
  const where = (path: readonly PropertyKey[]): { node: unknown; line: number; col: number } => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn([...base, ...path.slice(0, n)], true);
      const at = position(node, lines);
      if (at) return { node: n === path.length ? node : undefined, ...at };
    }
    return { node: undefined, ...none };
  };
  const locate = (index: number, path: readonly PropertyKey[]): { line: number; col: number } => {
    const { line, col } = where([index, ...path]);
    return { line, col };
  };
  const problems: TenantsFileProblem[] = [];
  const entries: TenantsDocument['entries'] = list.map((raw: unknown, i) => {
    const r = TenantSchema.safeParse(raw);
    if (r.success) return { index: i, raw, tenant: r.data };
    for (const issue of r.error.issues) {
      const { node, line, col } = where([i, ...issue.path]);
      problems.push({ line, col, message: `tenants[${i}].${issue.path.join('.')}: ${explain(issue, node)}` });
    }
    return { index: i, raw };
  });
  const seenNumbers = new Map<string, string>();
  const seenIds = new Set<string>();
  for (const { index, tenant: t } of entries) {
    if (!t) continue;
    if (seenIds.has(t.id)) problems.push({ ...locate(index, ['id']), message: `tenant id ${t.id} appears twice` });
    seenIds.add(t.id);
    t.phoneNumbers.forEach((n, k) => {
      const other = seenNumbers.get(n);
      if (other) problems.push({ ...locate(index, ['phoneNumbers', k]), message: `number ${n} belongs to both ${other} and ${t.id}` });
      seenNumbers.set(n, t.id);
    });
  }
  return { source, entries, problems, locate };
}

/**
 * Parse and validate a tenants file, all or nothing.
 * @throws SwitchboardError `config_invalid` with one `source:line:col: …` line per problem
 */
export function parseTenantsDocument(text: string, source: string): TenantConfig[] {
  const d = readTenantsDocument(text, source);
  if (d.problems.length > 0) throw new SwitchboardError('config_invalid', formatTenantsProblems(source, d.problems).join('\n'));
  return d.entries.flatMap((e) => (e.tenant ? [e.tenant] : []));
}

