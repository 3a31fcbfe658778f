/**
 * `npm run check` as an operator or a CI job runs it: a child process with only the environment it
 * is given. It validates the environment and TENANTS_FILE without starting the relay, prints one
 * line per problem (YAML errors and schema problems with line and column) and exits 1, or one
 * summary line and exits 0.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function check(args: string[], env: Record<string, string> = {}, viaNpm = false): Promise<Run> {
  const [cmd, argv] = viaNpm
    ? ['npm', ['run', '-s', 'check', '--', ...args]]
    : [process.execPath, ['--import', 'tsx', 'src/check.ts', ...args]];
  const child = spawn(cmd, argv, { env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

const dir = mkdtempSync(join(tmpdir(), 'sb-check-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const SID = 'AC0123456789abcdef0123456789abcdef';
const tenant = (extra = '', number = "'+14155550100'") =>
  `tenants:\n  - id: acme\n    displayName: Acme\n    phoneNumbers: [${number}]\n    twilio: {accountSid: ${SID}, authToken: {env: ACME_TOKEN}}\n${extra}`;

// Each case starts one to five child processes (tsx compiles on start): generous on a busy machine.
describe('npm run check', { timeout: 120_000 }, () => {
  it('exits 0 with one summary line for a valid configuration (through npm, as documented)', async () => {
    const f = file('ok.yaml', tenant());
    const r = await check([], { TENANTS_FILE: f, ACME_TOKEN: 'secret-token-value', ADMIN_TOKEN: 'admin-token-0123456789' }, true);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      `switchboard: configuration valid: provider sim, 1 tenant (acme) from ${f} (TENANTS_FILE_MODE=seed), Redis off (in-memory), admin API on`,
    ]);
    expect(r.stdout).not.toContain('secret-token-value');
  });

  it('explains a phone number written as a YAML number, with line and column', async () => {
    const f = file('number.yaml', tenant('', '+14155550100'));
    const r = await check([f], { ACME_TOKEN: 'x' });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `switchboard: invalid tenants: ${f}:4:20: tenants[0].phoneNumbers.0: must be text, but YAML reads unquoted +14155550100 as a number: quote it ('+14155550100')`,
    ]);
  });

  it('reports YAML syntax errors with line and column, and bad environment variables, one line each', async () => {
    const f = file('syntax.yaml', "tenants:\n  - id: acme\n    displayName: Acme\n   phoneNumbers: ['+14155550100']\n");
    // An empty numeric value (a Helm-rendered "") is unset, not 0; a hex one is refused, never read.
    const r = await check([], { TENANTS_FILE: f, PORT: 'eighty', LOG_LEVEL: 'loud', TWILIO_MARK_INTERVAL_MS: '', MAX_ACTIVE_CALLS: '0x64' });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines).toContain('switchboard: invalid configuration: PORT: must be a number written in decimal digits (e.g. 8080), not "eighty"');
    expect(lines).toContain('switchboard: invalid configuration: MAX_ACTIVE_CALLS: must be a number written in decimal digits (e.g. 0), not "0x64"');
    expect(lines.some((l) => l.startsWith('switchboard: invalid configuration: LOG_LEVEL: '))).toBe(true);
    expect(lines).toContain(`switchboard: invalid tenants: ${f}:4:1: not valid YAML: Sequence item without - indicator`);
    expect(r.stdout).toBe('');
  });

  it('points a schema problem at its line, and a quoted number at its quotes', async () => {
    const f = file('schema.yaml', tenant('    maxConcurrentCalls: "20"\n    tools: [end_call, teleport]\n'));
    const r = await check([f], { ACME_TOKEN: 'x' });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `switchboard: invalid tenants: ${f}:6:25: tenants[0].maxConcurrentCalls: must be a number, but it is quoted text: write 20 without quotes`,
      expect.stringMatching(new RegExp(`^switchboard: invalid tenants: ${f}:7:23: tenants\\[0\\]\\.tools\\.1: `)),
    ]);
  });

  it('names what a webhook tool lacks: its secret reference, an https URL', async () => {
    const f = file('hook.yaml', tenant(`    webhookTools:\n      - {name: crm_lookup, description: Look up a customer, url: not-a-url}\n`));
    const r = await check(['--no-secrets', f]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `switchboard: invalid tenants: ${f}:7:9: tenants[0].webhookTools.0.secret: must be a secret reference: { env: NAME } or { file: PATH }`,
      `switchboard: invalid tenants: ${f}:7:66: tenants[0].webhookTools.0.url: must be an https URL`,
    ]);
  });

  it('requires the secrets unless --no-secrets, which still checks their references', async () => {
    const hook = `    webhookTools:\n      - {name: crm_lookup, description: Look up a customer, url: 'https://crm.example/hook', secret: {env: CRM_HOOK_SECRET}}\n`;
    const f = file('secrets.yaml', tenant(hook));
    const env = { TENANTS_FILE: f, MODEL_PROVIDER: 'openai' };
    const strict = await check([], env);
    expect(strict.code).toBe(1);
    // Both at once: a bad environment does not hide a bad tenants file.
    expect(strict.stderr.trim().split('\n')).toEqual([
      'switchboard: invalid configuration: OPENAI_API_KEY: required when MODEL_PROVIDER is openai',
      `switchboard: invalid tenants: ${f}:5:73: tenant acme: twilio.authToken: environment variable ACME_TOKEN is not set`,
      `switchboard: invalid tenants: ${f}:7:102: tenant acme: webhookTools.crm_lookup.secret: environment variable CRM_HOOK_SECRET is not set`,
    ]);

    const keyed = await check([], { ...env, OPENAI_API_KEY: 'sk-test' });
    expect(keyed.code).toBe(1);
    expect(keyed.stderr.trim().split('\n')).toHaveLength(2);
    const tool = await check([], { ...env, OPENAI_API_KEY: 'sk-test', ACME_TOKEN: 'x' });
    expect(tool.stderr.trim().split('\n')).toEqual([
      `switchboard: invalid tenants: ${f}:7:102: tenant acme: webhookTools.crm_lookup.secret: environment variable CRM_HOOK_SECRET is not set`,
    ]);

    const relaxed = await check(['--no-secrets'], env);
    expect(relaxed.stderr).toBe('');
    expect(relaxed.code).toBe(0);
    expect(relaxed.stdout).toContain('provider openai, 1 tenant (acme) from');
    expect(relaxed.stdout).toContain('secrets not checked (--no-secrets)');

    const badRef = file('bad-ref.yaml', tenant().replace('{env: ACME_TOKEN}', '{env: acme-token}'));
    const shape = await check(['--no-secrets', badRef]);
    expect(shape.code).toBe(1);
    expect(shape.stderr).toContain(`${badRef}:5:`);
    expect(shape.stderr).toContain('tenants[0].twilio.authToken');
  });

  it('reports every problem in one run, secret references at their file:line:column too', async () => {
    const hook = `    webhookTools:\n      - {name: crm_lookup, description: Look up a customer, url: 'https://crm.example/hook', secret: {env: CRM_HOOK_SECRET}}\n`;
    const second =
      `  - id: bolt\n    displayName: Bolt\n    phoneNumbers: ['+14155550199']\n` +
      `    twilio: {accountSid: ${SID}, authToken: {file: /nonexistent/bolt-token}}\n    maxConcurrentCalls: "5"\n`;
    const f = file('everything.yaml', tenant(hook) + second);
    const r = await check([f], { MODEL_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-test' });
    expect(r.code).toBe(1);
    // Schema problems of one tenant do not hide the secrets of the others (or its own).
    expect(r.stderr.trim().split('\n')).toEqual([
      `switchboard: invalid tenants: ${f}:5:73: tenant acme: twilio.authToken: environment variable ACME_TOKEN is not set`,
      `switchboard: invalid tenants: ${f}:7:102: tenant acme: webhookTools.crm_lookup.secret: environment variable CRM_HOOK_SECRET is not set`,
      `switchboard: invalid tenants: ${f}:11:73: tenant bolt: twilio.authToken: cannot read secret file /nonexistent/bolt-token: no such file`,
      `switchboard: invalid tenants: ${f}:12:25: tenants[1].maxConcurrentCalls: must be a number, but it is quoted text: write 5 without quotes`,
    ]);
  });

  it('says why a tenants file cannot be read', async () => {
    const r = await check([join(dir, 'missing.yaml')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`switchboard: invalid tenants: TENANTS_FILE: cannot read ${join(dir, 'missing.yaml')}: no such file`);
  });

  it('checks the sample tenants file without its secrets, and answers --help', async () => {
    const r = await check(['--no-secrets', 'examples/tenants.yaml']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('2 tenants (acme-plumbing, bright-dental) from examples/tenants.yaml (TENANTS_FILE_MODE=seed)');
    const help = await check(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run check/);
    const unknown = await check(['--bogus']);
    expect(unknown.code).toBe(1);
    // Not node's advice about positionals after '--', which reads as nonsense behind `npm run check --`.
    expect(unknown.stderr).toBe("switchboard check: Unknown option '--bogus' (see --help)\n");
  });
});
