/**
 * The seed tenants a relay starts from: TENANTS_FILE, or the demo tenant with the simulated model.
 * Validation only; opening the stores and seeding them is the composition root's (server/open-tenants.ts).
 */
import { readFileSync } from 'node:fs';
import { SwitchboardError } from '../errors.js';
import { webhookUrlProblem } from '../ssrf.js';
import { parseTenantsDocument, resolveTenant } from './tenant-registry.js';
import { DEMO_TENANT, refusedWithRealModel, TenantSchema, type TenantConfig } from './tenant.js';

/** The model the relay speaks to: the demo tenant exists only with the simulated one. */
export type TenantsProvider = 'openai' | 'azure' | 'sim';

/**
 * Read and validate the seed tenants: TENANTS_FILE, or the demo tenant (simulated model only).
 * Every seed tenant's secrets must resolve here, so a bad file stops the process at start with one
 * line per problem (`secrets: false` checks the file without them, as `npm run check -- --no-secrets`
 * does). With a real provider, tenants on the demo account or with an inline auth token are refused;
 * webhook tool URLs with userinfo, or (unless `allowPrivateWebhooks`) localhost or a blocked IP literal, too.
 * @throws SwitchboardError `config_invalid`
 */
export function loadSeedTenants(
  tenantsFile: string | undefined,
  env: NodeJS.ProcessEnv,
  opts: { secrets?: boolean; provider?: TenantsProvider; allowPrivateWebhooks?: boolean } = {},
): TenantConfig[] {
  const provider = opts.provider ?? 'sim';
  if (tenantsFile === undefined) return provider === 'sim' ? [TenantSchema.parse(DEMO_TENANT)] : [];
  let text: string;
  try {
    text = readFileSync(tenantsFile, 'utf8');
  } catch (err) {
    throw new SwitchboardError('config_invalid', `TENANTS_FILE: cannot read ${tenantsFile}`, false, { cause: err });
  }
  const seed = parseTenantsDocument(text, tenantsFile);
  const problems: string[] = [];
  for (const cfg of seed) {
    const refused = provider === 'sim' ? undefined : refusedWithRealModel(cfg);
    if (refused) problems.push(`${tenantsFile}: tenant ${cfg.id} ${refused}`);
    cfg.webhookTools.forEach((t, i) => {
      const problem = webhookUrlProblem(t.url, opts.allowPrivateWebhooks === true);
      if (problem !== undefined) problems.push(`${tenantsFile}: tenant ${cfg.id}: webhookTools.${i}.url: ${problem}`);
    });
  }
  if (opts.secrets === false) {
    if (problems.length > 0) throw new SwitchboardError('config_invalid', problems.join('\n'));
    return seed;
  }
  for (const cfg of seed) {
    try {
      resolveTenant(cfg, env);
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
    }
  }
  if (problems.length > 0) throw new SwitchboardError('config_invalid', problems.join('\n'));
  return seed;
}
