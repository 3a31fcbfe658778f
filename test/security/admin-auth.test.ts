/** bearerAuth: the admin API's token check. */
import { describe, expect, it } from 'vitest';
import { bearerAuth } from '../../src/server/admin-auth.js';

const TOKEN = 'admin-token-0123456789abcdef';

describe('bearerAuth', () => {
  it('accepts exactly the configured bearer token', () => {
    const ok = bearerAuth(TOKEN);
    expect(ok(`Bearer ${TOKEN}`)).toBe(true);
    expect(ok(`bearer ${TOKEN}`)).toBe(true);
    expect(ok(`Bearer ${TOKEN}x`)).toBe(false);
    expect(ok(`Bearer ${TOKEN.slice(0, -1)}`)).toBe(false);
    expect(ok(TOKEN)).toBe(false);
    expect(ok(`Basic ${TOKEN}`)).toBe(false);
    expect(ok('Bearer ')).toBe(false);
    expect(ok('')).toBe(false);
  });

  it('is always false when ADMIN_TOKEN is unset or empty', () => {
    expect(bearerAuth(undefined)('Bearer ')).toBe(false);
    expect(bearerAuth(undefined)('Bearer undefined')).toBe(false);
    expect(bearerAuth('')('Bearer ')).toBe(false);
    expect(bearerAuth(' , ')('Bearer ')).toBe(false);
  });

  it('accepts each of several comma-separated tokens (rotation)', () => {
    const ok = bearerAuth(`${TOKEN}, next-admin-token-abcdef0123`);
    expect(ok(`Bearer ${TOKEN}`)).toBe(true);
    expect(ok('Bearer next-admin-token-abcdef0123')).toBe(true);
    expect(ok(`Bearer ${TOKEN},next-admin-token-abcdef0123`)).toBe(false);
  });
});
