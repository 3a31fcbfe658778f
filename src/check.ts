/**
 * `npm run check`: validates the configuration the relay would start with (the environment and
 * TENANTS_FILE) without starting it, for CI before a rollout. Exit 0 and one summary line when
 * valid; exit 1 and one line per problem otherwise. `--no-secrets` checks secret references
 * (their shape) without the secrets being present, for a CI job that does not hold them.
 */
import { parseArgs } from 'node:util';
import { loadConfig, processEnvironment, type Config } from './config.js';
import { errorMessage, SwitchboardError } from './errors.js';
import { checkSeedTenants, type TenantConfig } from './tenants/index.js';

const HELP = `usage: npm run check [-- [--no-secrets] [TENANTS_FILE]]

Validates the environment (every variable of README "Configuration") and the tenants file
(TENANTS_FILE, or the path given here) without starting the relay.
  --no-secrets   do not require the secrets themselves: provider API keys may be unset and tenant
                 secret references ({env: NAME}, {file: PATH}) are checked for shape only
  -h, --help     this text
Exit 0 when valid (one summary line), 1 with one line per problem.`;

export interface CheckResult {
  problems: string[];
  /** One line describing what would start, when there are no problems. */
  summary?: string;
}

function lines(err: unknown, prefix: string): string[] {
  if (err instanceof SwitchboardError && err.code === 'config_invalid') return err.message.split('\n').map((l) => `${prefix}: ${l}`);
  return [`${prefix}: ${errorMessage(err)}`];
}

function describe(config: Readonly<Config>, tenants: readonly TenantConfig[], secrets: boolean): string {
  const source = config.tenantsFile
    ? `from ${config.tenantsFile} (TENANTS_FILE_MODE=${config.tenantsFileMode})`
    : config.model.provider === 'sim'
      ? 'built in (no TENANTS_FILE)'
      : '(no TENANTS_FILE: the demo tenant exists only with MODEL_PROVIDER=sim)';
  const ids = tenants.length > 0 ? ` (${tenants.map((t) => t.id).join(', ')})` : '';
  return [
    `configuration valid: provider ${config.model.provider}`,
    `${tenants.length} tenant${tenants.length === 1 ? '' : 's'}${ids} ${source}`,
    `Redis ${config.redisUrl ? 'on' : 'off (in-memory)'}`,
    `admin API ${config.adminToken ? 'on' : 'off'}`,
    ...(secrets ? [] : ['secrets not checked (--no-secrets)']),
  ].join(', ');
}

/** Check `env` as the relay would read it at start; `tenantsFile` overrides TENANTS_FILE. */
export function checkConfiguration(env: NodeJS.ProcessEnv, opts: { secrets: boolean; tenantsFile?: string }): CheckResult {
  const effective: NodeJS.ProcessEnv = opts.tenantsFile === undefined ? env : { ...env, TENANTS_FILE: opts.tenantsFile };
  let config: Readonly<Config>;
  try {
    config = loadConfig(effective, { secrets: opts.secrets });
  } catch (err) {
    // The tenants file is still worth checking when only the environment is wrong.
    const problems = lines(err, 'invalid configuration');
    const file = effective['TENANTS_FILE']?.trim();
    if (file) problems.push(...checkSeedTenants(file, effective, { secrets: opts.secrets, webhookSecrets: true }).problems.map((l) => `invalid tenants: ${l}`));
    return { problems };
  }
  // Webhook tools' secrets too: the relay resolves them only when a tool runs, mid-call.
  const { tenants, problems } = checkSeedTenants(config.tenantsFile, config.secretEnv, {
    secrets: opts.secrets,
    webhookSecrets: true,
    provider: config.model.provider,
    allowPrivateWebhooks: config.webhookToolsAllowPrivate,
  });
  if (problems.length > 0) return { problems: problems.map((l) => `invalid tenants: ${l}`) };
  return { problems: [], summary: describe(config, tenants, opts.secrets) };
}

function main(argv: readonly string[]): number {
  let values: { 'no-secrets'?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: { 'no-secrets': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    }));
  } catch (err) {
    // Node adds advice on positionals after '--' that makes no sense behind `npm run check --`: drop it.
    console.error(`switchboard check: ${errorMessage(err).replace(/\. To specify a positional argument[\s\S]*$/, '')} (see --help)`);
    return 1;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length > 1) {
    console.error('switchboard check: give at most one tenants file (see --help)');
    return 1;
  }
  const r = checkConfiguration(processEnvironment(), {
    secrets: !values['no-secrets'],
    ...(positionals[0] !== undefined ? { tenantsFile: positionals[0] } : {}),
  });
  for (const p of r.problems) console.error(`switchboard: ${p}`);
  if (r.summary) console.log(`switchboard: ${r.summary}`);
  return r.problems.length > 0 ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
