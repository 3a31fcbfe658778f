/**
 * Secrets through the /v1/tenants admin API over real HTTP: inline values are refused wherever a
 * secret goes (Twilio tokens and webhook-tool signing secrets, on POST, PUT and PATCH, also when
 * smuggled under `__proto__` or `constructor`), and no answer ever carries a secret value, even for a
 * tenant whose file gave one inline.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME, TENANT_ENV, startTenantRelay, type TenantRelay } from '../helpers/relay.js';

const ADMIN = 'admin-token-for-secrets-0123456789';
const FILE_SECRET = 'whsec_' + Buffer.from('file-seeded-inline-signing-key').toString('base64');
const POSTED_SECRET = 'whsec_' + Buffer.from('posted-inline-signing-key').toString('base64');

let sr: TenantRelay;
let secretDir: string;
beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-admin-secrets-'));
  const file = join(dir, 'tenants.json');
  writeFileSync(
    file,
    JSON.stringify({
      tenants: [
        {
          id: 'acme',
          displayName: 'Acme',
          phoneNumbers: [ACME.to],
          twilio: { accountSid: ACME.accountSid, authToken: { env: 'ACME_TOKEN' } },
          webhookTools: [{ name: 'lookup', description: 'Look up', url: 'https://tools.example.com/lookup', secret: { value: FILE_SECRET } }],
        },
      ],
    }),
  );
  secretDir = join(dir, 'secrets');
  mkdirSync(secretDir);
  writeFileSync(join(secretDir, 'gamma'), 'gamma-token-from-file-0123');
  sr = await startTenantRelay({
    env: { ADMIN_TOKEN: ADMIN, ADMIN_SECRET_DIR: secretDir },
    tenantsFile: file,
    tenantEnv: { ...TENANT_ENV, TENANT_GAMMA_TOKEN: 'gamma-token-value-0123', OPENAI_API_KEY: 'sk-operator-key' },
  });
});
afterAll(async () => {
  await sr.close();
});

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; text: string; json: { error?: { fields?: { path: string; message: string }[] } } & Record<string, unknown> }> {
  const res = await fetch(sr.relay.url + path, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, text, json: text ? (JSON.parse(text) as never) : ({}) };
}

const tool = (secret: unknown) => ({ name: 'lookup', description: 'Look up', url: 'https://tools.example.com/lookup', secret });
const gamma = (extra: Record<string, unknown> = {}) => ({
  id: 'gamma',
  displayName: 'Gamma',
  phoneNumbers: ['+14155550301'],
  twilio: { accountSid: ACME.accountSid, authToken: { env: 'TENANT_GAMMA_TOKEN' } },
  ...extra,
});

describe('admin API: webhook-tool secrets', () => {
  it('refuses an inline webhook-tool secret on POST, PUT and PATCH without echoing it', async () => {
    for (const [method, path, body] of [
      ['POST', '/v1/tenants', gamma({ webhookTools: [tool({ value: POSTED_SECRET })] })],
      ['PUT', '/v1/tenants/gamma', gamma({ webhookTools: [tool({ value: POSTED_SECRET })] })],
      ['PATCH', '/v1/tenants/acme', { webhookTools: [tool({ value: POSTED_SECRET })] }],
    ] as const) {
      const r = await api(method, path, body);
      expect(r.status, `${method} ${path}: ${r.text}`).toBe(400);
      expect(r.json.error?.fields).toContainEqual({ path: 'webhookTools.0.secret', message: expect.stringMatching(/inline secret values are not accepted/) as unknown });
      expect(r.text).not.toContain(POSTED_SECRET);
    }
    expect((await api('GET', '/v1/tenants/gamma')).status).toBe(404);
  });

  it('accepts a webhook-tool secret by reference and shows only the reference', async () => {
    const r = await api('POST', '/v1/tenants', gamma({ id: 'gamma-ref', phoneNumbers: ['+14155550302'], webhookTools: [tool({ env: 'TENANT_GAMMA_TOOL_SECRET' })] }));
    expect(r.status, r.text).toBe(201);
    expect((r.json['webhookTools'] as { secret: unknown }[])[0]?.secret).toEqual({ env: 'TENANT_GAMMA_TOOL_SECRET' });
  });

  it('never returns a stored inline secret: GET one, GET the list, and a PATCH answer show [redacted]', async () => {
    const one = await api('GET', '/v1/tenants/acme');
    const list = await api('GET', '/v1/tenants');
    const patched = await api('PATCH', '/v1/tenants/acme', { displayName: 'Acme Plumbing' });
    expect(patched.status, patched.text).toBe(200);
    for (const r of [one, list, patched]) expect(r.text).not.toContain(FILE_SECRET);
    expect((one.json['webhookTools'] as { secret: unknown }[])[0]?.secret).toEqual({ value: '[redacted]' });
  });
});

describe('admin API: webhook-tool URLs', () => {
  it('refuses a blocked IP literal, localhost or userinfo on POST, PUT and PATCH with a field-level 400', async () => {
    const ref = { env: 'TENANT_GAMMA_TOOL_SECRET' };
    for (const url of ['https://[fec0::1]/x', 'https://192.0.2.1/x', 'https://localhost:8443/x', 'https://user:pw@tools.example.com/x']) {
      const at = (u: string) => [{ ...tool(ref), url: u }];
      for (const [method, path, body] of [
        ['POST', '/v1/tenants', gamma({ id: 'gamma-url', phoneNumbers: ['+14155550309'], webhookTools: at(url) })],
        ['PUT', '/v1/tenants/gamma-url', gamma({ id: 'gamma-url', phoneNumbers: ['+14155550309'], webhookTools: at(url) })],
        ['PATCH', '/v1/tenants/acme', { webhookTools: at(url) }],
      ] as const) {
        const r = await api(method, path, body);
        expect(r.status, `${method} ${url}`).toBe(400);
        expect(r.json.error?.fields, `${method} ${url}`).toContainEqual({ path: 'webhookTools.0.url', message: expect.stringMatching(/public address|localhost|user name or password/) as unknown });
        expect(r.text).not.toContain('pw@');
      }
    }
    expect((await api('GET', '/v1/tenants/gamma-url')).status).toBe(404);
  });
});

describe('admin API: merge-patch and reference edges', () => {
  const inline = { accountSid: ACME.accountSid, authToken: { value: 'smuggled-inline-token' } };

  it('__proto__ and constructor keys cannot carry an inline secret past the ban', async () => {
    for (const key of ['__proto__', 'constructor']) {
      const r = await api('PATCH', '/v1/tenants/acme', `{"twilio": null, "${key}": {"twilio": ${JSON.stringify(inline)}}}`);
      expect(r.status, `${key}: ${r.text}`).toBe(400);
      expect(r.text).not.toContain('smuggled-inline-token');
    }
    const post = await api('POST', '/v1/tenants', `{"id":"proto-co","displayName":"P","phoneNumbers":["+14155550303"],"twilio":{"accountSid":"${ACME.accountSid}","authToken":{"env":"TENANT_GAMMA_TOKEN"}},"__proto__":{"twilio":${JSON.stringify(inline)}}}`);
    expect(post.status, post.text).toBe(400);
    expect(post.json.error?.fields).toContainEqual({ path: '__proto__', message: 'unknown field' });
    const acme = await api('GET', '/v1/tenants/acme');
    expect((acme.json['twilio'] as { authToken: unknown }).authToken).toEqual({ env: 'ACME_TOKEN' });
  });

  it('{env} references only with the allowed prefix, {file} only inside the secrets directory, with no file-existence oracle', async () => {
    const env = await api('POST', '/v1/tenants', gamma({ id: 'env-co', phoneNumbers: ['+14155550304'], twilio: { accountSid: ACME.accountSid, authToken: { env: 'OPENAI_API_KEY' } } }));
    expect(env.status).toBe(400);
    expect(env.json.error?.fields).toEqual([{ path: 'twilio.authToken', message: 'an {env} reference must name a variable starting with TENANT_' }]);
    const hook = await api('POST', '/v1/tenants', gamma({ id: 'env-co', phoneNumbers: ['+14155550304'], webhookTools: [tool({ env: 'STREAM_TOKEN_SECRET' })] }));
    expect(hook.json.error?.fields).toEqual([{ path: 'webhookTools.0.secret', message: 'an {env} reference must name a variable starting with TENANT_' }]);
    const answers = [];
    for (const file of ['/etc/passwd', '/no/such/file', `${secretDir}/../tenants.json`, `${secretDir}-other/x`, 'relative/path']) {
      const r = await api('POST', '/v1/tenants', gamma({ id: 'file-co', phoneNumbers: ['+14155550305'], twilio: { accountSid: ACME.accountSid, authToken: { file } } }));
      expect(r.status, file).toBe(400);
      answers.push(r.text);
    }
    expect(new Set(answers).size, 'the same answer whether the file exists or not').toBe(1);
    expect(answers[0]).toContain(`a {file} reference must be inside ${secretDir}`);
    const ok = await api('POST', '/v1/tenants', gamma({ id: 'file-co', phoneNumbers: ['+14155550305'], twilio: { accountSid: ACME.accountSid, authToken: { file: `${secretDir}/gamma` } } }));
    expect(ok.status, ok.text).toBe(201);
  });
});
