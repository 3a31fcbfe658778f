/**
 * Tenant budgets: how much of the current UTC day or month a tenant used against its limits, the
 * warning gauges, and the TwiML a new call gets once the budget is spent. The voice webhook asks;
 * live calls are never cut. Usage itself comes from the UsageStore, shared by every pod.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { UsageStore, UsageTotals } from '../store/index.js';
import type { Budget, Tenant } from '../tenants/index.js';
import { dialTwiml, sayHangupTwiml, voicemailTwiml } from '../twilio/index.js';
import { NANO_PER_USD } from './price-table.js';
import type { UsageMetrics } from '../telemetry/index.js';

export interface BudgetUse {
  /** The larger of minutes used / limit and cost / limit: 1 means spent. */
  ratio: number;
  callMinutes: number;
  costUsd: number;
}

export function budgetUse(budget: Budget, u: Readonly<UsageTotals>): BudgetUse {
  const callMinutes = u.callMs / 60_000;
  const costUsd = u.costNanoUsd / NANO_PER_USD;
  let ratio = 0;
  if (budget.callMinutes !== undefined) ratio = Math.max(ratio, callMinutes / budget.callMinutes);
  if (budget.costUsd !== undefined) ratio = Math.max(ratio, costUsd / budget.costUsd);
  return { ratio, callMinutes, costUsd };
}

/**
 * What a caller hears instead of the model: the tenant's message, its human, or its voicemail.
 * `<Record>` posts to `voicemailActionUrl` (without an action Twilio would re-request the voice
 * webhook and loop); if the caller records nothing, the message after it ends the call.
 */
export function budgetTwiml(tenant: Tenant, budget: Budget, voicemailActionUrl: string): string {
  const w = budget.whenExceeded;
  switch (w.action) {
    case 'message':
      return sayHangupTwiml(w.message);
    case 'human':
      return dialTwiml({ to: w.number, ...(w.message !== undefined ? { say: w.message } : {}), ...(tenant.phoneNumbers[0] ? { callerId: tenant.phoneNumbers[0] } : {}) });
    case 'voicemail':
      return voicemailTwiml({ say: w.message, actionUrl: voicemailActionUrl, maxSeconds: w.maxSeconds });
  }
}

export type BudgetDecision = { admit: true } | { admit: false; twiml: string; use: BudgetUse };

export interface BudgetGateOptions {
  store: UsageStore;
  metrics: UsageMetrics;
  clock: Clock;
  log: Logger;
  /** Absolute URL Twilio posts a finished voicemail recording to (`/twilio/voicemail`). */
  voicemailActionUrl: string;
}

/** Asked by the voice webhook before a call is connected to the model. */
export class BudgetGate {
  constructor(private readonly o: BudgetGateOptions) {}

  /**
   * Admit the call unless the tenant's budget for the current period is spent. The tenant comes from
   * the registry, so a budget changed through /v1/tenants applies as soon as the registry has it.
   * A store that cannot answer admits the call (logged): a budget is a cap, not a reason for dead air.
   */
  async admit(tenant: Tenant): Promise<BudgetDecision> {
    const budget = tenant.budget;
    if (!budget) {
      this.clear(tenant.id);
      return { admit: true };
    }
    let use: BudgetUse;
    try {
      use = await this.use(tenant, budget);
    } catch (err) {
      this.o.log.warn({ code: 'store_unavailable', tenant: tenant.id, err: errorMessage(err) }, 'budget unknown (usage store unreachable): call admitted');
      return { admit: true };
    }
    if (use.ratio < 1) return { admit: true };
    this.o.metrics.budgetRefusals.labels(tenant.id).inc();
    return { admit: false, twiml: budgetTwiml(tenant, budget, this.o.voicemailActionUrl), use };
  }

  /** Refresh the tenant's gauges after its usage changed (a usage write landed). */
  async refresh(tenant: Tenant): Promise<void> {
    if (!tenant.budget) return this.clear(tenant.id);
    try {
      await this.use(tenant, tenant.budget);
    } catch (err) {
      this.o.log.debug({ code: 'store_unavailable', tenant: tenant.id, err: errorMessage(err) }, 'budget gauge not refreshed');
    }
  }

  private async use(tenant: Tenant, budget: Budget): Promise<BudgetUse> {
    const totals = await this.o.store.bucket(tenant.id, budget.period, this.o.clock.now());
    const use = budgetUse(budget, totals);
    this.o.metrics.budgetUsedRatio.labels(tenant.id).set(use.ratio);
    this.o.metrics.budgetWarnRatio.labels(tenant.id).set(budget.warnAt);
    return use;
  }

  private clear(tenantId: string): void {
    // A budget removed through /v1/tenants: its series go, so the warning alert resolves.
    this.o.metrics.budgetUsedRatio.remove(tenantId);
    this.o.metrics.budgetWarnRatio.remove(tenantId);
  }
}
