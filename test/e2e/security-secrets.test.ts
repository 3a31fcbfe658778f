/**
 * No secret ever leaves the relay: tenant auth tokens, ADMIN_TOKEN and STREAM_TOKEN_SECRET (and the
 * one-time stream tokens) appear in no HTTP response body and no log line, across calls, refused
 * webhooks, replayed tokens and every admin route. Logs are captured through a pino destination.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placeCall, randomSid } from '../../src/sim/sim-caller.js';
import { createLogger } from '../../src/telemetry/index.js';
import { ACME, BETA, signed, startTenantRelay, TENANT_ENV, type TenantRelay, TEST_SECRET, voiceFields, writeTenantsFile } from '../helpers/relay.js';

const ADMIN = 'admin-token-secret-abcdef0123456789';
const INLINE = 'inline-secret-value-never-echoed';
const lines: string[] = [];
let sr: TenantRelay;

beforeAll(async () => {
  const log = createLogger({
    level: 'trace',
    destination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    }),
  });
  sr = await startTenantRelay({ env: { ADMIN_TOKEN: ADMIN }, tenantsFile: writeTenantsFile(), tenantEnv: TENANT_ENV, log });
});
afterAll(async () => {
  await sr.close();
});

describe('secrets', () => {
  it('appear in no response body and no log line', async () => {
    const bodies: string[] = [];
    const keep = async (p: Promise<{ body: string } | Response>): Promise<void> => {
      const r = await p;
      bodies.push(r instanceof Response ? await r.text() : r.body);
    };
    const admin = (method: string, path: string, body?: unknown, token = ADMIN) =>
      fetch(sr.relay.url + path, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });

    const callSid = randomSid('CA');
    const report = await placeCall({
      baseUrl: sr.relay.url,
      publicUrl: sr.relay.url,
      ...ACME,
      callSid,
      script: { turns: [{ say: 'Hello there' }], hangupAfterMs: 0, maxCallMs: 15_000 },
    });
    expect(report.stage).toBe('connected');
    const streamToken = report.twiml?.kind === 'stream' ? (report.twiml.parameters['token'] ?? '') : '';
    expect(streamToken.length).toBeGreaterThan(20);

    await keep(signed(sr, '/twilio/voice', voiceFields(randomSid('CA')), { authToken: BETA.authToken }));
    await keep(signed(sr, '/twilio/voice', voiceFields(randomSid('CA')), { signature: null }));
    await keep(signed(sr, '/twilio/voice', voiceFields(randomSid('CA'), '+14155559999')));
    await keep(signed(sr, '/twilio/status', { AccountSid: ACME.accountSid, CallSid: callSid, CallStatus: 'completed' }));
    await keep(signed(sr, '/twilio/after-stream', { AccountSid: ACME.accountSid, CallSid: callSid, To: ACME.to }));
    await keep(admin('GET', '/v1/tenants'));
    await keep(admin('GET', '/v1/tenants/acme'));
    await keep(admin('GET', '/v1/tenants', undefined, 'not-the-admin-token-0123'));
    await keep(
      admin('POST', '/v1/tenants', {
        id: 'leaky',
        displayName: 'Leaky',
        phoneNumbers: ['+14155550500'],
        twilio: { accountSid: ACME.accountSid, authToken: { value: INLINE } },
      }),
    );
    await keep(admin('PATCH', '/v1/tenants/acme', { twilio: { previousAuthToken: { value: INLINE } } }));
    await keep(admin('PATCH', '/v1/tenants/acme', { maxConcurrentCalls: 5 }));
    await keep(fetch(`${sr.relay.url}/metrics`));
    await keep(fetch(`${sr.relay.url}/readyz`));

    expect(bodies.length).toBe(13);
    expect(lines.length).toBeGreaterThan(5);
    const secrets = { acmeToken: ACME.authToken, betaToken: BETA.authToken, admin: ADMIN, streamSecret: TEST_SECRET, inline: INLINE, streamToken };
    for (const [name, secret] of Object.entries(secrets)) {
      for (const b of bodies) expect(b.includes(secret), `${name} in a response body`).toBe(false);
      for (const l of lines) expect(l.includes(secret), `${name} in log line ${l.slice(0, 200)}`).toBe(false);
    }
  });
});
