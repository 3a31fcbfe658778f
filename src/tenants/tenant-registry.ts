/**
 * The tenant directory contract (lookup by number or id), secret resolution and tenants-file parsing.
 * Secrets are resolved once at load (env var or mounted file) and never leave the process in a response.
 */
import { readFileSync } from 'node:fs';
import { isScalar, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { SwitchboardError } from '../errors.js';
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
    throw new SwitchboardError('config_invalid', `${where}: cannot read secret file ${ref.file}`, false, { cause: err });
  }
}

export function resolveTenant(cfg: TenantConfig, env: NodeJS.ProcessEnv): Tenant {
  const resolvedAuthToken = resolveSecret(cfg.twilio.authToken, env, `tenant ${cfg.id}: twilio.authToken`);
  const prev = cfg.twilio.previousAuthToken;
  if (prev === undefined) return Object.freeze({ ...cfg, resolvedAuthToken });
  const resolvedPreviousAuthToken = resolveSecret(prev, env, `tenant ${cfg.id}: twilio.previousAuthToken`);
  return Object.freeze({ ...cfg, resolvedAuthToken, resolvedPreviousAuthToken });
}

/** Where a YAML node starts, as `line:column` (1-based), or undefined for a node without a range. */
function position(node: unknown, lines: LineCounter): string | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  if (!range) return undefined;
  const { line, col } = lines.linePos(range[0]);
  return `${line}:${col}`;
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

/**
 * Parse a TENANTS_FILE body (YAML or JSON; a list, or `{tenants: [...]}`). Every problem is one
 * line naming the file, the line and column, and the field: `tenants.yaml:4:20: tenants[0].phoneNumbers.0: …`.
 */
export function parseTenantsDocument(text: string, source: string): TenantConfig[] {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines }); // YAML is a superset of JSON
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => {
      const at = e.linePos ? `${e.linePos[0].line}:${e.linePos[0].col}` : '?';
      const what = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      return `${source}:${at}: not valid YAML: ${what}`;
    });
    throw new SwitchboardError('config_invalid', problems.join('\n'));
  }
  const root: unknown = doc.toJS();
  const inList = Array.isArray(root);
  const list = inList ? root : (root as { tenants?: unknown } | null)?.tenants;
  if (!Array.isArray(list)) throw new SwitchboardError('config_invalid', `${source}: expected a list of tenants or {tenants: [...]}`);
  const base = inList ? [] : ['tenants'];
  /** The closest node with a position on the way to `path` (a missing field points at its parent). */
  const where = (path: readonly PropertyKey[]): { node: unknown; at: string } => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn([...base, ...path.slice(0, n)], true);
      const at = position(node, lines);
      if (at) return { node: n === path.length ? node : undefined, at };
    }
    return { node: undefined, at: '1:1' };
  };
  const problems: string[] = [];
  const out: TenantConfig[] = [];
  list.forEach((raw, i) => {
    const r = TenantSchema.safeParse(raw);
    if (r.success) return void out.push(r.data);
    const found = r.error.issues.map((issue) => ({ issue, ...where([i, ...issue.path]) }));
    // In file order, not schema order: the operator reads them top to bottom.
    const key = (at: string) => at.split(':').map(Number) as [number, number];
    found.sort((a, b) => key(a.at)[0] - key(b.at)[0] || key(a.at)[1] - key(b.at)[1]);
    for (const { issue, node, at } of found) problems.push(`${source}:${at}: tenants[${i}].${issue.path.join('.')}: ${explain(issue, node)}`);
  });
  const seenNumbers = new Map<string, string>();
  const seenIds = new Set<string>();
  for (const t of out) {
    if (seenIds.has(t.id)) problems.push(`${source}: tenant id ${t.id} appears twice`);
    seenIds.add(t.id);
    for (const n of t.phoneNumbers) {
      const other = seenNumbers.get(n);
      if (other) problems.push(`${source}: number ${n} belongs to both ${other} and ${t.id}`);
      seenNumbers.set(n, t.id);
    }
  }
  if (problems.length > 0) throw new SwitchboardError('config_invalid', problems.join('\n'));
  return out;
}

