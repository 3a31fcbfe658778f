/**
 * The tenant schema: one business served by Switchboard, its numbers, Twilio credentials (by
 * reference, never inline), model persona, enabled tools and the business data tools read.
 */
import { z } from 'zod';
import { REALTIME_VOICES, toolParametersProblem } from '../model/session-rules.js';

export const E164 = z.string().regex(/^\+[1-9]\d{6,14}$/, { message: 'must be an E.164 number like +14155550100' });

/** A secret given by reference: an environment variable name or a mounted file path. */
export const SecretRef = z.union([
  z.object({ env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, { message: 'must be an environment variable name' }) }),
  z.object({ file: z.string().min(1) }),
  /** Only for the embedded demo tenant and tests; rejected by the admin API. */
  z.object({ value: z.string().min(1) }),
], { error: 'must be a secret reference: { env: NAME } or { file: PATH }' });
export type SecretRef = z.infer<typeof SecretRef>;

const Slot = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/, { message: 'must be local time YYYY-MM-DDTHH:MM' });

export const BusinessData = z.object({
  currency: z.string().length(3).default('USD'),
  timeZone: z.string().default('UTC'),
  /** Postcodes (or prefixes ending in *) the business serves. */
  serviceArea: z.array(z.string().min(1)).default([]),
  priceBook: z
    .array(
      z.object({
        service: z.string().min(1),
        description: z.string().default(''),
        minPrice: z.number().nonnegative(),
        maxPrice: z.number().nonnegative(),
        options: z.record(z.string(), z.number()).default({}),
      }),
    )
    .default([]),
  technicians: z
    .array(z.object({ id: z.string().min(1), name: z.string().min(1), skills: z.array(z.string()).default([]), areas: z.array(z.string()).default([]) }))
    .default([]),
  hours: z
    .array(z.object({ day: z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']), open: z.string(), close: z.string() }))
    .default([]),
  slots: z.array(Slot).default([]),
  emergencyPolicy: z.enum(['transfer', 'advise']).default('transfer'),
});
export type BusinessData = z.infer<typeof BusinessData>;

export const ToolName = z.enum([
  'check_service_area',
  'quote_price',
  'book_appointment',
  'assign_technician',
  'flag_emergency',
  'transfer_to_human',
  'end_call',
  'create_call_summary',
]);
export type ToolName = z.infer<typeof ToolName>;

/**
 * A tenant-declared tool served by the tenant's own HTTPS endpoint (src/tools/webhook-tools.ts):
 * signed Standard Webhooks requests, bounded time and response size, SSRF-guarded.
 */
export const WebhookToolSchema = z.object({
  name: z.string().regex(/^[a-z][a-z0-9_]{1,63}$/, { message: 'must be 2-64 chars of a-z, 0-9 or _, starting with a letter' }),
  description: z.string().min(1).max(1000),
  url: z.string().url({ message: 'must be an https URL' }),
  /** JSON Schema of the arguments, as sent to the model; arguments are validated against it. */
  parameters: z
    .record(z.string(), z.unknown())
    .default({ type: 'object', properties: {} })
    // The model refuses the whole session.update over one bad schema: refuse it here instead.
    .superRefine((v, ctx) => {
      const problem = toolParametersProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  /** Signing secret; `whsec_<base64>` (Standard Webhooks) or raw text. */
  secret: SecretRef,
  timeoutMs: z.number().int().min(100).max(30_000).default(5000),
  maxResponseBytes: z.number().int().min(256).max(1_048_576).default(65_536),
});
export type WebhookTool = z.infer<typeof WebhookToolSchema>;

/** What a caller hears when the tenant is over its budget: never dead air, never the model. */
export const BudgetExceededSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('message'), message: z.string().min(1).max(1000) }),
  z.object({ action: z.literal('human'), number: E164, message: z.string().min(1).max(1000).optional() }),
  z.object({
    action: z.literal('voicemail'),
    message: z.string().min(1).max(1000),
    maxSeconds: z.number().int().min(5).max(600).default(120),
  }),
]);

export const DEFAULT_BUDGET_MESSAGE = 'Sorry, we cannot take your call right now. Please call again later. Goodbye.';

/**
 * A spending cap per UTC day or month, in call minutes and/or estimated model cost (src/usage/).
 * Past `warnAt` of either limit a warning metric rises; past the limit new calls get `whenExceeded`
 * instead of the model. Calls already live are never cut.
 */
export const BudgetSchema = z
  .object({
    period: z.enum(['day', 'month']).default('month'),
    callMinutes: z.number().positive().optional(),
    costUsd: z.number().positive().optional(),
    warnAt: z.number().gt(0).lt(1).default(0.8),
    whenExceeded: BudgetExceededSchema.default({ action: 'message', message: DEFAULT_BUDGET_MESSAGE }),
  })
  .refine((b) => b.callMinutes !== undefined || b.costUsd !== undefined, { message: 'set callMinutes, costUsd or both' });
export type Budget = z.infer<typeof BudgetSchema>;

export const TenantSchema = z.object({
  id: z.string().regex(/^[a-z0-9][a-z0-9_-]{1,62}$/, { message: 'must be 2-63 chars of a-z, 0-9, _ or -' }),
  displayName: z.string().min(1).max(200),
  phoneNumbers: z.array(E164).min(1),
  twilio: z.object({
    accountSid: z.string().regex(/^AC[0-9a-fA-F]{32}$/, { message: 'must be AC followed by 32 hex digits' }),
    authToken: SecretRef,
    /**
     * The token being rotated out: signatures made with it are still accepted, so a Twilio auth
     * token can be promoted without a window of refused webhooks (docs/operators.md).
     */
    previousAuthToken: SecretRef.optional(),
  }),
  model: z
    .object({
      // Checked here because the model rejects a bad session.update and the call falls back.
      voice: z.enum(REALTIME_VOICES, { message: `must be one of ${REALTIME_VOICES.join(', ')}` }).default('marin'),
      instructions: z.string().max(32_000).default('You answer the phone for a small business. Be brief and friendly.'),
      greeting: z.string().min(1).max(1000).default('Hello, thanks for calling. How can I help?'),
      language: z
        .string()
        .regex(/^[a-z]{2}$/, { message: 'must be an ISO-639-1 code like en' })
        .default('en'),
    })
    .default({ voice: 'marin', instructions: 'You answer the phone for a small business. Be brief and friendly.', greeting: 'Hello, thanks for calling. How can I help?', language: 'en' }),
  tools: z.array(ToolName).default(['end_call']),
  webhookTools: z.array(WebhookToolSchema).default([]),
  business: BusinessData.default(BusinessData.parse({})),
  humanFallbackNumber: E164.optional(),
  maxConcurrentCalls: z.number().int().positive().default(50),
  retentionDays: z.number().int().min(1).max(3650).default(30),
  /**
   * Drains may move this tenant's live calls to another pod (DRAIN_MODE=migrate). `false`: its calls
   * stay on a draining pod until they end or the drain times out (docs/operators.md).
   */
  migration: z.boolean().default(true),
  /** Optional spending cap (docs/operators.md, "Budgets"). */
  budget: BudgetSchema.optional(),
});
export type TenantInput = z.input<typeof TenantSchema>;
export type TenantConfig = z.infer<typeof TenantSchema>;

/** A tenant with its secrets resolved, as the relay uses it. Never serialised to a response. */
export interface Tenant extends TenantConfig {
  readonly resolvedAuthToken: string;
  /** Resolved `twilio.previousAuthToken`, when one is configured. */
  readonly resolvedPreviousAuthToken?: string;
}

/** The auth tokens a signature from this tenant's account may be made with, current first. */
export function tenantAuthTokens(t: Tenant): readonly string[] {
  return t.resolvedPreviousAuthToken === undefined ? [t.resolvedAuthToken] : [t.resolvedAuthToken, t.resolvedPreviousAuthToken];
}

/** How long this tenant's call records and usage are kept, in seconds (`retentionDays`). */
export function retentionSeconds(t: Pick<TenantConfig, 'retentionDays'>): number {
  return t.retentionDays * 86_400;
}

export const DEMO_ACCOUNT_SID = 'AC00000000000000000000000000000000';

/**
 * Why a tenant must not be served with a real model provider, or undefined when it may: the demo
 * account and an inline auth token are published or stored in plain text, so a webhook signed with
 * them would spend the operator's model key (docs/security.md).
 */
export function refusedWithRealModel(cfg: TenantConfig): string | undefined {
  if (cfg.twilio.accountSid === DEMO_ACCOUNT_SID) return 'uses the demo account (allowed only with MODEL_PROVIDER=sim)';
  if ('value' in cfg.twilio.authToken) return 'twilio.authToken is given inline (use an {env} or {file} reference)';
  if (cfg.twilio.previousAuthToken && 'value' in cfg.twilio.previousAuthToken) {
    return 'twilio.previousAuthToken is given inline (use an {env} or {file} reference)';
  }
  return undefined;
}
export const DEMO_AUTH_TOKEN = 'demo-auth-token-not-secret';
export const DEMO_NUMBER = '+15005550006';

/** The embedded tenant of `npm start`: a plumbing business with a little business data. */
export const DEMO_TENANT: TenantInput = {
  id: 'demo',
  displayName: 'Demo Plumbing',
  phoneNumbers: [DEMO_NUMBER],
  twilio: { accountSid: DEMO_ACCOUNT_SID, authToken: { value: DEMO_AUTH_TOKEN } },
  model: {
    voice: 'marin',
    instructions:
      'You answer the phone for Demo Plumbing. Be brief and friendly. Use the tools to check the ' +
      'service area, quote prices and book appointments. Call end_call after saying goodbye.',
    greeting: 'Thanks for calling Demo Plumbing, how can I help you today?',
    language: 'en',
  },
  tools: ['check_service_area', 'quote_price', 'book_appointment', 'assign_technician', 'flag_emergency', 'transfer_to_human', 'end_call', 'create_call_summary'],
  business: {
    currency: 'USD',
    timeZone: 'America/New_York',
    serviceArea: ['10001', '10002', '10003', '112*'],
    priceBook: [
      { service: 'drain_cleaning', description: 'Clear a blocked drain', minPrice: 120, maxPrice: 250, options: { after_hours: 80 } },
      { service: 'water_heater_repair', description: 'Repair a water heater', minPrice: 200, maxPrice: 600, options: { after_hours: 120 } },
      { service: 'leak_repair', description: 'Find and fix a leak', minPrice: 150, maxPrice: 400, options: {} },
    ],
    technicians: [
      { id: 'tech-ana', name: 'Ana', skills: ['drain_cleaning', 'leak_repair'], areas: ['10001', '10002'] },
      { id: 'tech-ben', name: 'Ben', skills: ['water_heater_repair', 'leak_repair'], areas: ['10002', '10003', '112*'] },
    ],
    hours: [
      { day: 'mon', open: '08:00', close: '18:00' },
      { day: 'tue', open: '08:00', close: '18:00' },
      { day: 'wed', open: '08:00', close: '18:00' },
      { day: 'thu', open: '08:00', close: '18:00' },
      { day: 'fri', open: '08:00', close: '18:00' },
    ],
    slots: ['2030-01-07T09:00', '2030-01-07T11:00', '2030-01-07T14:00', '2030-01-08T09:00', '2030-01-08T11:00'],
    emergencyPolicy: 'transfer',
  },
  humanFallbackNumber: '+15005550007',
  maxConcurrentCalls: 50,
  retentionDays: 30,
};
