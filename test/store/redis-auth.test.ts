/**
 * Redis with AUTH and TLS, as managed Redis runs it: a real redis-server with requirepass and an ACL
 * user, and one serving only TLS with a certificate from a private CA. The relay reads the password,
 * user and CA from REDIS_PASSWORD, REDIS_USERNAME and REDIS_TLS_CA_FILE (the chart mounts them from
 * Secrets) and is ready only when Redis accepted it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Relay } from '../../src/server/index.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { eventually, startTestRelay } from '../helpers/relay.js';

const PASSWORD = 'default-user-password-0123';
const ALICE = 'alice-acl-password-4567';
const dir = mkdtempSync(join(tmpdir(), 'sb-redis-tls-'));
const file = (name: string) => join(dir, name);

/** A private CA and a server certificate for 127.0.0.1 it signed (openssl, as a cloud provider would). */
function makeCertificates(): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=switchboard test CA', '-keyout', file('ca.key'), '-out', file('ca.crt'));
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', file('server.key'), '-out', file('server.csr'));
  writeFileSync(file('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', file('san.ext'), '-out', file('server.crt'));
  // A CA that signed nothing here: trusting it must not be enough.
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=other CA', '-keyout', file('other.key'), '-out', file('other.crt'));
}

let auth: RedisServer;
let tls: RedisServer;
const relays: Relay[] = [];

beforeAll(async () => {
  makeCertificates();
  [auth, tls] = await Promise.all([
    startRedisServer({ args: ['--requirepass', PASSWORD, '--user', 'alice', 'on', `>${ALICE}`, '~*', '&*', '+@all'] }),
    startRedisServer({ args: ['--requirepass', PASSWORD], tls: { certFile: file('server.crt'), keyFile: file('server.key'), caFile: file('ca.crt') } }),
  ]);
});
afterAll(async () => {
  await Promise.all(relays.map((r) => r.close()));
  await Promise.all([auth?.stop(), tls?.stop()]);
});

async function relayWith(env: Record<string, string>): Promise<Relay> {
  const relay = await startTestRelay(env);
  relays.push(relay);
  return relay;
}
const readyz = async (relay: Relay) => (await fetch(`${relay.url}/readyz`)).status;

describe('Redis AUTH', () => {
  it('is ready with REDIS_PASSWORD for the default user', async () => {
    const relay = await relayWith({ REDIS_URL: auth.url, REDIS_PASSWORD: PASSWORD });
    await eventually(async () => (await readyz(relay)) === 200, 5000, 'ready with the password');
  });

  it('is ready as an ACL user with REDIS_USERNAME and REDIS_PASSWORD', async () => {
    const relay = await relayWith({ REDIS_URL: auth.url, REDIS_USERNAME: 'alice', REDIS_PASSWORD: ALICE });
    await eventually(async () => (await readyz(relay)) === 200, 5000, 'ready as alice');
  });

  it('stays unready without the password or with a wrong one', async () => {
    const none = await relayWith({ REDIS_URL: auth.url });
    const wrong = await relayWith({ REDIS_URL: auth.url, REDIS_PASSWORD: 'not-the-password' });
    // Give both time to connect and be refused; readiness must never turn 200.
    for (let i = 0; i < 10; i++) {
      expect(await readyz(none)).toBe(503);
      expect(await readyz(wrong)).toBe(503);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});

describe('Redis over TLS (rediss://) with a private CA', () => {
  it('is ready when REDIS_TLS_CA_FILE names the CA that signed the server certificate', async () => {
    const relay = await relayWith({ REDIS_URL: tls.url, REDIS_PASSWORD: PASSWORD, REDIS_TLS_CA_FILE: file('ca.crt') });
    expect(tls.url.startsWith('rediss://')).toBe(true);
    await eventually(async () => (await readyz(relay)) === 200, 5000, 'ready over TLS');
  });

  it('stays unready without that CA or with another one', async () => {
    const system = await relayWith({ REDIS_URL: tls.url, REDIS_PASSWORD: PASSWORD });
    const other = await relayWith({ REDIS_URL: tls.url, REDIS_PASSWORD: PASSWORD, REDIS_TLS_CA_FILE: file('other.crt') });
    for (let i = 0; i < 10; i++) {
      expect(await readyz(system)).toBe(503);
      expect(await readyz(other)).toBe(503);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});

describe('configuration', () => {
  const problems = (env: NodeJS.ProcessEnv): string => {
    try {
      loadConfig(env);
    } catch (err) {
      return (err as Error).message;
    }
    return '';
  };

  it('reads the three variables beside REDIS_URL', () => {
    const c = loadConfig({ REDIS_URL: 'rediss://cache:6380', REDIS_USERNAME: 'relay', REDIS_PASSWORD: 'pw', REDIS_TLS_CA_FILE: file('ca.crt') });
    expect([c.redisUsername, c.redisPassword, c.redisTlsCaFile]).toEqual(['relay', 'pw', file('ca.crt')]);
  });

  it('refuses a password in two places, a CA without TLS, a missing CA file and auth without Redis', () => {
    expect(problems({ REDIS_URL: 'redis://:inurl@cache:6379', REDIS_PASSWORD: 'pw' })).toMatch(/REDIS_PASSWORD: REDIS_URL already carries a password/);
    expect(problems({ REDIS_URL: 'redis://u:p@cache:6379', REDIS_USERNAME: 'relay' })).toMatch(/REDIS_USERNAME: REDIS_URL already carries a user name/);
    expect(problems({ REDIS_URL: 'redis://cache:6379', REDIS_TLS_CA_FILE: file('ca.crt') })).toMatch(/REDIS_TLS_CA_FILE: needs a rediss:\/\/ REDIS_URL/);
    expect(problems({ REDIS_URL: 'rediss://cache:6379', REDIS_TLS_CA_FILE: file('nope.crt') })).toMatch(/REDIS_TLS_CA_FILE: .*nope\.crt does not exist/);
    expect(problems({ REDIS_PASSWORD: 'pw' })).toMatch(/REDIS_PASSWORD: set only with REDIS_URL/);
  });
});
