/**
 * A JSON merge patch nested ~10,000 levels deep used to overflow the stack in the recursive
 * mergePatch and come back as 503 store_unavailable; it must be a 400 bad_request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/server/index.js';
import { startTestRelay } from '../helpers/relay.js';

const ADMIN_TOKEN = 'admin-token-for-deep-patch-tests-01';
let relay: Relay;
beforeAll(async () => {
  relay = await startTestRelay({ ADMIN_TOKEN });
});
afterAll(async () => {
  await relay.close();
});

describe('admin API: a deeply nested merge patch', () => {
  it.each([10_000, 40_000])('%i levels under business: 400 bad_request, not 503', async (depth) => {
    const body = `{"business":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`;
    const res = await fetch(`${relay.url}/v1/tenants/demo`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('bad_request');
    // The tenant is untouched and the API still answers.
    const demo = await fetch(`${relay.url}/v1/tenants/demo`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(demo.status).toBe(200);
  });
});
