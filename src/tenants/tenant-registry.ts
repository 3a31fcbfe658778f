/**
 * Tenant lookup by number or id. This registry holds validated tenants in memory; secrets are
 * resolved once at load (env var or mounted file) and never leave the process in a response.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { SwitchboardError } from '../errors.js';
import { DEMO_TENANT, TenantSchema, type SecretRef, type Tenant, type TenantConfig } from './tenant.js';

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

/** Parse a TENANTS_FILE body (YAML or JSON; a list, or `{tenants: [...]}`), naming each bad field. */
export function parseTenantsDocument(text: string, source: string): TenantConfig[] {
  let doc: unknown;
  try {
    doc = parseYaml(text); // YAML is a superset of JSON
  } catch (err) {
    throw new SwitchboardError('config_invalid', `${source}: not valid YAML or JSON`, false, { cause: err });
  }
  const list = Array.isArray(doc) ? doc : (doc as { tenants?: unknown } | null)?.tenants;
  if (!Array.isArray(list)) throw new SwitchboardError('config_invalid', `${source}: expected a list of tenants or {tenants: [...]}`);
  const problems: string[] = [];
  const out: TenantConfig[] = [];
  list.forEach((raw, i) => {
    const r = TenantSchema.safeParse(raw);
    if (r.success) out.push(r.data);
    else for (const issue of r.error.issues) problems.push(`${source}: tenants[${i}].${issue.path.join('.')}: ${issue.message}`);
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

export class StaticTenantRegistry implements TenantDirectory {
  private readonly byNum = new Map<string, Tenant>();
  private readonly byIdMap = new Map<string, Tenant>();

  constructor(tenants: readonly Tenant[]) {
    for (const t of tenants) {
      this.byIdMap.set(t.id, t);
      for (const n of t.phoneNumbers) this.byNum.set(n, t);
    }
  }

  static demo(): StaticTenantRegistry {
    return new StaticTenantRegistry([resolveTenant(TenantSchema.parse(DEMO_TENANT), {})]);
  }

  static fromFile(path: string, env: NodeJS.ProcessEnv): StaticTenantRegistry {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new SwitchboardError('config_invalid', `TENANTS_FILE: cannot read ${path}`, false, { cause: err });
    }
    return new StaticTenantRegistry(parseTenantsDocument(text, path).map((t) => resolveTenant(t, env)));
  }

  byNumber(to: string, accountSid?: string): Tenant | undefined {
    const t = this.byNum.get(to);
    if (!t) return undefined;
    if (accountSid !== undefined && t.twilio.accountSid !== accountSid) return undefined;
    return t;
  }

  byId(id: string): Tenant | undefined {
    return this.byIdMap.get(id);
  }

  list(): readonly Tenant[] {
    return [...this.byIdMap.values()];
  }
}
