/**
 * `npm run bench -- --tls`: a throw-away CA and a server certificate for 127.0.0.1, made at run time
 * with the `openssl` CLI (node:crypto makes keys but not X.509 certificates; openssl is on every image
 * the bench runs on, so no npm package is added for it). The simulated model serves `wss` with the
 * server pair; each relay child trusts the CA through NODE_EXTRA_CA_CERTS, the way any Node process
 * is told about a private CA, so no relay grows a TLS knob for the bench.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface BenchTls {
  /** PEM of the CA: give its path to the relays as NODE_EXTRA_CA_CERTS. */
  caPath: string;
  key: Buffer;
  cert: Buffer;
}

/** Writes ca.pem, key.pem and cert.pem (P-256, valid 1 day, SAN IP:127.0.0.1) under `dir`. Throws without openssl. */
export function makeBenchTls(dir: string): BenchTls {
  mkdirSync(dir, { recursive: true });
  const p = (f: string): string => join(dir, f);
  const ssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '1', '-subj', '/CN=Switchboard bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  ssl('req', ...ec, '-keyout', p('key.pem'), '-out', p('server.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  ssl('x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('cert.pem'),
    '-days', '1', '-extfile', p('server.ext'));
  return { caPath: p('ca.pem'), key: readFileSync(p('key.pem')), cert: readFileSync(p('cert.pem')) };
}
