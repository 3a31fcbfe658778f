/**
 * The /v1/tenants admin API over real HTTP: bearer auth (401, and 404 when ADMIN_TOKEN is unset),
 * validation errors that name fields, body limits, conflicts, secrets only by reference and never
 * returned, and a tenant created on one pod answering calls on another pod through Redis.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placeCall } from '../../src/sim/sim-caller.js';
import { ACME, eventually, startTenantRelay, TENANT_ENV, type TenantRelay, writeTenantsFile } from '../helpers/relay.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const GAMMA_TOKEN = 'gamma-auth-token-value-789';

let redis: RedisServer;
let a: TenantRelay;
let b: TenantRelay;
beforeAll(async () => {
  redis = await startRedisServer();
  const shared = {
    env: { ADMIN_TOKEN: ADMIN },
    tenantsFile: writeTenantsFile(),
    tenantEnv: { ...TENANT_ENV, TENANT_GAMMA_TOKEN: GAMMA_TOKEN },
    redisUrl: redis.url,
    keyPrefix: 'adm:',
  };
  a = await startTenantRelay(shared);
  b = await startTenantRelay(shared);
});
afterAll(async () => {
  await a.close();
  await b.close();
  await redis.stop();
});

/** What the admin API answers, loosely: each test reads the part it expects. */
interface ApiJson {
  error: { code: string; message: string; fields: { path: string; message: string }[] };
  tenants: { id: string }[];
  twilio: { authToken: unknown };
  displayName: string;
  maxConcurrentCalls: number;
  humanFallbackNumber?: string;
}

async function api(
  sr: TenantRelay,
  method: string,
  path: string,
  body?: unknown,
  token: string | null = ADMIN,
): Promise<{ status: number; json: ApiJson; text: string; headers: Headers }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  const res = await fetch(sr.relay.url + path, {
    method,
    headers,
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: the test will look at `text`
  }
  return { status: res.status, json: json as ApiJson, text, headers: res.headers };
}

const gamma = (extra: Record<string, unknown> = {}) => ({
  id: 'gamma',
  displayName: 'Gamma Heating',
  phoneNumbers: ['+14155550300'],
  twilio: { accountSid: ACME.accountSid, authToken: { env: 'TENANT_GAMMA_TOKEN' } },
  maxConcurrentCalls: 2,
  ...extra,
});

describe('admin API auth', () => {
  it('answers 401 with a stable code for a missing, wrong or non-bearer token', async () => {
    for (const token of [null, 'wrong-token-0123456789abcdef', `${ADMIN}x`]) {
      for (const [method, path] of [['GET', '/v1/tenants'], ['POST', '/v1/tenants'], ['GET', '/v1/tenants/acme'], ['DELETE', '/v1/tenants/acme']] as const) {
        const r = await api(a, method, path, method === 'POST' ? gamma() : undefined, token);
        expect(r.status).toBe(401);
        expect(r.json).toEqual({ error: { code: 'unauthorized', message: 'missing or wrong bearer token' } });
        expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
      }
    }
    const basic = await fetch(a.relay.url + '/v1/tenants', { headers: { authorization: `Basic ${ADMIN}` } });
    expect(basic.status).toBe(401);
    expect((await api(a, 'GET', '/v1/tenants/acme')).status).toBe(200);
  });

  it('is off (404, like any unknown path) when ADMIN_TOKEN is unset', async () => {
    const off = await startTenantRelay({ tenantsFile: writeTenantsFile(), tenantEnv: TENANT_ENV });
    try {
      for (const token of [ADMIN, null, '']) {
        const r = await api(off, 'GET', '/v1/tenants', undefined, token);
        expect(r.status).toBe(404);
        expect(r.json.error.code).toBe('not_found');
      }
      expect((await api(off, 'POST', '/v1/tenants', gamma())).status).toBe(404);
    } finally {
      await off.close();
    }
  });
});

describe('admin API validation', () => {
  it('names every bad field', async () => {
    const r = await api(a, 'POST', '/v1/tenants', {
      id: 'Bad Id',
      displayName: '',
      phoneNumbers: ['0800 123'],
      twilio: { accountSid: 'AC123', authToken: { env: 'TENANT_GAMMA_TOKEN' } },
      maxConcurrentCalls: 0,
      maxConcurentCalls: 3,
    });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('bad_request');
    const paths = r.json.error.fields.map((f) => f.path).sort();
    expect(paths).toEqual(['displayName', 'id', 'maxConcurrentCalls', 'phoneNumbers.0', 'twilio.accountSid']);
    expect(r.json.error.fields.find((f) => f.path === 'phoneNumbers.0')?.message).toMatch(/E\.164/);
  });

  it('reports unknown fields instead of dropping them', async () => {
    const r = await api(a, 'POST', '/v1/tenants', gamma({ maxConcurentCalls: 3, business: { timeZone: 'UTC', hourz: [] } }));
    expect(r.status).toBe(400);
    expect(r.json.error.fields).toEqual([
      { path: 'maxConcurentCalls', message: 'unknown field' },
      { path: 'business.hourz', message: 'unknown field' },
    ]);
  });

  it('refuses inline secret values without echoing them, and references that do not resolve here', async () => {
    const inline = await api(a, 'POST', '/v1/tenants', gamma({ twilio: { accountSid: ACME.accountSid, authToken: { value: 'sekrit-inline-value' } } }));
    expect(inline.status).toBe(400);
    expect(inline.json.error.fields.map((f) => f.path)).toEqual(['twilio.authToken']);
    expect(inline.json.error.fields[0]?.message).toMatch(/inline secret values are not accepted/);
    expect(inline.text).not.toContain('sekrit-inline-value');
    const missing = await api(a, 'POST', '/v1/tenants', gamma({ twilio: { accountSid: ACME.accountSid, authToken: { env: 'TENANT_NOT_SET_HERE' } } }));
    expect(missing.status).toBe(400);
    expect(missing.json.error.fields[0]?.message).toMatch(/TENANT_NOT_SET_HERE is not set/);
    const shape = await api(a, 'POST', '/v1/tenants', gamma({ twilio: { accountSid: ACME.accountSid, authToken: 'plain' } }));
    expect(shape.json.error.fields).toEqual([{ path: 'twilio.authToken', message: 'must be {"env": "NAME"} or {"file": "/path"}' }]);
  });

  it('answers 400 for bad JSON and 413 for an oversized body', async () => {
    const bad = await api(a, 'POST', '/v1/tenants', '{"id": ');
    expect(bad.status).toBe(400);
    expect(bad.json).toEqual({ error: { code: 'bad_request', message: 'body is not valid JSON' } });
    const big = await api(a, 'POST', '/v1/tenants', JSON.stringify(gamma({ displayName: 'x'.repeat(300 * 1024) })));
    expect(big.status).toBe(413);
    expect(big.json.error.code).toBe('payload_too_large');
  });
});

describe('admin API CRUD across pods', () => {
  it('creates on pod a, serves calls on pod b, patches, conflicts, and deletes', async () => {
    const created = await api(a, 'POST', '/v1/tenants', gamma());
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/v1/tenants/gamma');
    expect(created.json.twilio.authToken).toEqual({ env: 'TENANT_GAMMA_TOKEN' });
    expect((await api(a, 'POST', '/v1/tenants', gamma())).json.error.code).toBe('conflict');
    const taken = await api(a, 'POST', '/v1/tenants', gamma({ id: 'delta', phoneNumbers: [ACME.to] }));
    expect(taken.status).toBe(409);
    expect(taken.json.error).toEqual({
      code: 'conflict',
      message: `number ${ACME.to} belongs to tenant acme`,
      fields: [{ path: 'phoneNumbers.0', message: 'belongs to tenant acme' }],
    });

    // Pod b learns about gamma through the change notice and answers its number.
    await eventually(() => b.runtime.registry.byId('gamma') !== undefined, 3000, 'pod b to load gamma');
    const report = await placeCall({
      baseUrl: b.relay.url,
      publicUrl: b.relay.url,
      to: '+14155550300',
      accountSid: ACME.accountSid,
      authToken: GAMMA_TOKEN,
      script: { turns: [], hangupAfterMs: 0, maxCallMs: 10_000 },
    });
    expect(report.stage).toBe('connected');
    expect(report.twiml?.kind === 'stream' && report.twiml.parameters['tenant']).toBe('gamma');

    const patched = await api(b, 'PATCH', '/v1/tenants/gamma', { maxConcurrentCalls: 9, humanFallbackNumber: '+14155550399' });
    expect(patched.status).toBe(200);
    expect(patched.json.maxConcurrentCalls).toBe(9);
    const unset = await api(b, 'PATCH', '/v1/tenants/gamma', { humanFallbackNumber: null });
    expect(unset.json.humanFallbackNumber).toBeUndefined();
    expect((await api(b, 'PATCH', '/v1/tenants/gamma', { maxConcurrentCalls: -1 })).json.error.fields.map((f) => f.path)).toEqual([
      'maxConcurrentCalls',
    ]);
    expect((await api(b, 'PATCH', '/v1/tenants/gamma', { id: 'other' })).json.error.fields[0]?.path).toBe('id');
    await eventually(() => a.runtime.registry.byId('gamma')?.maxConcurrentCalls === 9, 3000, 'pod a to see the patch');

    const put = await api(a, 'PUT', '/v1/tenants/gamma', gamma({ id: undefined, displayName: 'Gamma Renamed' }));
    expect(put.status).toBe(200);
    expect(put.json.displayName).toBe('Gamma Renamed');
    expect((await api(a, 'PUT', '/v1/tenants/gamma', gamma({ id: 'zeta' }))).json.error.fields).toEqual([
      { path: 'id', message: 'must match the tenant id in the URL' },
    ]);
    expect((await api(a, 'PUT', '/v1/tenants/epsilon', gamma({ id: 'epsilon', phoneNumbers: ['+14155550400'] }))).status).toBe(201);

    const list = await api(a, 'GET', '/v1/tenants');
    expect(list.json.tenants.map((t) => t.id)).toEqual(['acme', 'beta', 'epsilon', 'gamma']);

    expect((await api(a, 'DELETE', '/v1/tenants/gamma')).status).toBe(204);
    expect((await api(a, 'DELETE', '/v1/tenants/gamma')).json.error.code).toBe('not_found');
    expect((await api(a, 'GET', '/v1/tenants/gamma')).status).toBe(404);
    expect((await api(a, 'PATCH', '/v1/tenants/gamma', { maxConcurrentCalls: 1 })).status).toBe(404);
    await eventually(() => b.runtime.registry.byNumber('+14155550300') === undefined, 3000, 'pod b to drop gamma');
  });
});
