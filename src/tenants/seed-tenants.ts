/**
 * The seed tenants a relay starts from: TENANTS_FILE, or the demo tenant with the simulated model.
 * Validation only; opening the stores and seeding them is the composition root's (server/open-tenants.ts).
 */
import { readFileSync } from 'node:fs';
import { errorMessage, fileErrorReason, SwitchboardError } from '../errors.js';
import { webhookUrlProblem } from '../ssrf.js';
import { formatTenantsProblems, readTenantsDocument, resolveSecret } from './tenant-registry.js';
import { DEMO_TENANT, refusedWithRealModel, SecretRef, TenantSchema, type TenantConfig } from './tenant.js';

/** The model the relay speaks to: the demo tenant exists only with the simulated one. */
export type TenantsProvider = 'openai' | 'azure' | 'sim';

/** Options of loadSeedTenants and checkSeedTenants. */
export interface SeedTenantsOptions {
  /** False: secret references are checked for shape only (`npm run check -- --no-secrets`). */
  secrets?: boolean;
  provider?: TenantsProvider;
  allowPrivateWebhooks?: boolean;
  /** Also resolve webhook tools' secrets (the relay resolves them only when a tool runs). */
  webhookSecrets?: boolean;
}

/** The secret references of one raw tenants-file entry, with their paths. */
function secretRefs(raw: unknown): { path: PropertyKey[]; name: string; ref: SecretRef }[] {
  const out: { path: PropertyKey[]; name: string; ref: SecretRef }[] = [];
  const r = raw as { twilio?: Record<string, unknown>; webhookTools?: unknown } | null;
  for (const key of ['authToken', 'previousAuthToken']) {
    const ref = SecretRef.safeParse(r?.twilio?.[key]);
    if (ref.success) out.push({ path: ['twilio', key], name: `twilio.${key}`, ref: ref.data });
  }
  if (Array.isArray(r?.webhookTools)) {
    r.webhookTools.forEach((t: unknown, j) => {
      const tool = t as { name?: unknown; secret?: unknown } | null;
      const ref = SecretRef.safeParse(tool?.secret);
      const name = typeof tool?.name === 'string' ? tool.name : String(j);
      if (ref.success) out.push({ path: ['webhookTools', j, 'secret'], name: `webhookTools.${name}.secret`, ref: ref.data });
    });
  }
  return out;
}

/**
 * Every problem of the seed tenants in one pass, each `file:line:col: …` (file order): YAML and
 * schema problems, tenants a real provider refuses, refused webhook URLs and, with `secrets`,
 * references that do not resolve (also of entries whose schema failed). No file: the demo tenant.
 */
export function checkSeedTenants(tenantsFile: string | undefined, env: NodeJS.ProcessEnv, opts: SeedTenantsOptions = {}): { tenants: TenantConfig[]; problems: string[] } {
  const provider = opts.provider ?? 'sim';
  if (tenantsFile === undefined) return { tenants: provider === 'sim' ? [TenantSchema.parse(DEMO_TENANT)] : [], problems: [] };
  let text: string;
  try {
    text = readFileSync(tenantsFile, 'utf8');
  } catch (err) {
    return { tenants: [], problems: [`TENANTS_FILE: cannot read ${tenantsFile}: ${fileErrorReason(err)}`] };
  }
  const doc = readTenantsDocument(text, tenantsFile);
  const problems = [...doc.problems];
  for (const { index, raw, tenant } of doc.entries) {
    const rawId = (raw as { id?: unknown } | null)?.id;
    const id = tenant?.id ?? (typeof rawId === 'string' ? rawId : `tenants[${index}]`);
    const refused = tenant && provider !== 'sim' ? refusedWithRealModel(tenant) : undefined;
    if (refused) problems.push({ ...doc.locate(index, ['twilio']), message: `tenant ${id} ${refused}` });
    tenant?.webhookTools.forEach((t, j) => {
      const problem = webhookUrlProblem(t.url, opts.allowPrivateWebhooks === true);
      if (problem !== undefined) problems.push({ ...doc.locate(index, ['webhookTools', j, 'url']), message: `tenant ${id}: webhookTools.${j}.url: ${problem}` });
    });
    if (opts.secrets === false) continue;
    for (const { path, name, ref } of secretRefs(raw)) {
      if (path[0] === 'webhookTools' && !opts.webhookSecrets) continue;
      try {
        resolveSecret(ref, env, `tenant ${id}: ${name}`);
      } catch (err) {
        problems.push({ ...doc.locate(index, path), message: errorMessage(err) });
      }
    }
  }
  return { tenants: doc.entries.flatMap((e) => (e.tenant ? [e.tenant] : [])), problems: formatTenantsProblems(tenantsFile, problems) };
}

/**
 * Read and validate the seed tenants: TENANTS_FILE, or the demo tenant (simulated model only).
 * Every seed tenant's secrets must resolve here, so a bad file stops the process at start with one
 * line per problem (`secrets: false` checks the file without them, as `npm run check -- --no-secrets`
 * does). With a real provider, tenants on the demo account or with an inline auth token are refused;
 * webhook tool URLs with userinfo, or (unless `allowPrivateWebhooks`) localhost or a blocked IP literal, too.
 * @throws SwitchboardError `config_invalid`
 */
export function loadSeedTenants(tenantsFile: string | undefined, env: NodeJS.ProcessEnv, opts: SeedTenantsOptions = {}): TenantConfig[] {
  const { tenants, problems } = checkSeedTenants(tenantsFile, env, opts);
  if (problems.length > 0) throw new SwitchboardError('config_invalid', problems.join('\n'));
  return tenants;
}
