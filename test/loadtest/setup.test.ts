/**
 * Every documented load-test scenario fits its documented setup: the relay command in
 * loadtest/README.md loads examples/loadtest-tenants.yaml, whose tenant is the scripts' default
 * target and admits the peak concurrency of every scenario (k6's VU cap) up to the largest SCALE the
 * file promises, so no scenario fails its refusal-rate threshold on the tenant's own limit.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scaleScenario, SCENARIOS } from '../../loadtest/lib/scenarios.js';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER, DEMO_TENANT, loadSeedTenants, resolveTenant } from '../../src/tenants/index.js';

const ROOT = join(import.meta.dirname, '../..');
const FILE = 'examples/loadtest-tenants.yaml';

/** The most calls a scenario can hold at once: k6's VU cap (arrival plans drop calls past maxVUs). */
function peakCalls(name: string, scale: number): number {
  const p = scaleScenario(SCENARIOS[name]!, { scale }).plan;
  return p.kind === 'arrival' ? p.maxVUs : p.vus;
}

describe('load-test setup', () => {
  const tenants = loadSeedTenants(join(ROOT, FILE), {}, { provider: 'sim' });

  it('the README starts the relay with the load-test tenants file', () => {
    const readme = readFileSync(join(ROOT, 'loadtest/README.md'), 'utf8');
    expect(readme).toContain(`TENANTS_FILE=${FILE} SIM_MODEL_MODE=loadtest`);
  });

  it("its tenant is the scripts' default target and admits every scenario's peak up to SCALE=10", () => {
    expect(tenants).toHaveLength(1);
    const t = resolveTenant(tenants[0]!, {});
    expect(t.phoneNumbers).toEqual([DEMO_NUMBER]);
    expect(t.twilio.accountSid).toBe(DEMO_ACCOUNT_SID);
    expect(t.resolvedAuthToken).toBe(DEMO_AUTH_TOKEN);
    const maxScale = Number(/up to SCALE=(\d+)/.exec(readFileSync(join(ROOT, FILE), 'utf8'))![1]);
    expect(maxScale).toBe(10);
    for (const name of Object.keys(SCENARIOS)) expect(peakCalls(name, maxScale), name).toBeLessThanOrEqual(t.maxConcurrentCalls);
  });

  it('the demo tenant alone would refuse calls in storm and steady (why the file exists)', () => {
    const demoLimit = DEMO_TENANT.maxConcurrentCalls ?? 50;
    expect(peakCalls('storm', 0.5)).toBeGreaterThan(demoLimit);
    expect(peakCalls('steady', 1)).toBeGreaterThan(demoLimit);
  });
});
