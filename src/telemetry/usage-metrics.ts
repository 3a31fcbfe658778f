/**
 * The usage and budget metrics, on the relay's registry: tokens by direction and modality, call
 * seconds, estimated cost, budget use. Names are fixed by the product contract; labels stay bounded
 * (tenants are an operator-defined set, never a CallSid).
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export interface UsageMetrics {
  readonly tokens: Counter<'tenant' | 'direction' | 'modality'>;
  readonly callSeconds: Counter<'tenant'>;
  readonly costUsd: Counter<'tenant'>;
  readonly writeFailures: Counter;
  readonly budgetUsedRatio: Gauge<'tenant'>;
  readonly budgetWarnRatio: Gauge<'tenant'>;
  readonly budgetRefusals: Counter<'tenant'>;
}

export function createUsageMetrics(registry: Registry): UsageMetrics {
  const registers = [registry];
  return {
    tokens: new Counter({
      name: 'switchboard_model_tokens_total',
      help: 'Model tokens from response.done usage, by tenant, direction (input|output) and modality (text|audio|cached_text|cached_audio; input kinds do not overlap).',
      labelNames: ['tenant', 'direction', 'modality'],
      registers,
    }),
    callSeconds: new Counter({
      name: 'switchboard_call_seconds_total',
      help: 'Call seconds (media stream start to stop), counted while calls run, by tenant.',
      labelNames: ['tenant'],
      registers,
    }),
    costUsd: new Counter({
      name: 'switchboard_estimated_cost_usd_total',
      help: 'Estimated model cost in USD from the price table, by tenant.',
      labelNames: ['tenant'],
      registers,
    }),
    writeFailures: new Counter({
      name: 'switchboard_usage_write_failures_total',
      help: 'Usage writes to the store that failed (retried at the next interval).',
      registers,
    }),
    budgetUsedRatio: new Gauge({
      name: 'switchboard_budget_used_ratio',
      help: "Share of the tenant's budget used in the current period (1 = exhausted); tenants with a budget only.",
      labelNames: ['tenant'],
      registers,
    }),
    budgetWarnRatio: new Gauge({
      name: 'switchboard_budget_warn_ratio',
      help: "The tenant's budget warning threshold (budget.warnAt).",
      labelNames: ['tenant'],
      registers,
    }),
    budgetRefusals: new Counter({
      name: 'switchboard_budget_refusals_total',
      help: 'Calls answered with the tenant budget TwiML instead of the model.',
      labelNames: ['tenant'],
      registers,
    }),
  };
}
