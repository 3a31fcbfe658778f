/**
 * The ToolRunner used by the relay: validates arguments with each tool's zod schema, runs built-in
 * and tenant webhook tools, and makes every (callSid, call_id) run at most once: a replayed call_id
 * gets the first result back from the store. Tools' own logic lives in one file each.
 */
import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { errorMessage } from '../errors.js';
import { MemoryCallStore, type CallStore, type StoredToolResult } from '../store/index.js';
import { resolveSecret, type Tenant, type WebhookTool } from '../tenants/index.js';
import type { CallControl } from '../twilio/call-control.js';
import { AssignTechnicianArgs, assignTechnician, assignTechnicianDefinition } from './assign-technician.js';
import { BookAppointmentArgs, bookAppointment, bookAppointmentDefinition } from './book-appointment.js';
import { CheckServiceAreaArgs, checkServiceArea, checkServiceAreaDefinition } from './check-service-area.js';
import { CreateCallSummaryArgs, createCallSummary, createCallSummaryDefinition } from './create-call-summary.js';
import { EndCallArgs, endCall, endCallDefinition } from './end-call.js';
import { FlagEmergencyArgs, flagEmergency, flagEmergencyDefinition } from './flag-emergency.js';
import { QuotePriceArgs, quotePrice, quotePriceDefinition } from './quote-price.js';
import type { ToolDefinition } from '../model/index.js';
import { toolError, type ToolContext, type ToolDeps, type ToolOutcome, type ToolResult, type ToolRunner } from './tool-runner.js';
import { TransferToHumanArgs, transferToHuman, transferToHumanDefinition } from './transfer-to-human.js';
import { runWebhookTool } from './webhook-tools.js';

export interface ToolImpl<S extends z.ZodType> {
  definition: ToolDefinition;
  schema: S;
  run(args: z.infer<S>, ctx: ToolContext, deps: ToolDeps): ToolResult | Promise<ToolResult>;
}

export function tool<S extends z.ZodType>(impl: ToolImpl<S>): ToolImpl<z.ZodType> {
  return impl;
}

export interface BuiltinToolRunnerOptions {
  /** Shared state: slot and technician claims, tool-result idempotency, the call record. */
  store?: CallStore;
  /** Twilio REST control for emergency transfers; without it hand-offs use the after-stream redirect. */
  callControl?: CallControl;
  clock?: Clock;
  /** Tenant webhook tools (tenant.webhookTools). */
  webhooks?: {
    /** Dev only: allow private/loopback targets and http (WEBHOOK_TOOLS_ALLOW_PRIVATE). */
    allowPrivateNetworks?: boolean;
    /** Where `{ env: NAME }` secret references are looked up (the relay passes Config.secretEnv). */
    env?: NodeJS.ProcessEnv;
  };
}

/** Outcomes worth remembering for a replay: the tool acted (or firmly said no). Failures may be retried. */
const KEPT: ReadonlySet<ToolOutcome> = new Set(['ok', 'rejected']);

const EffectShape = z.union([
  z.object({ kind: z.literal('end_call'), reason: z.string() }),
  z.object({ kind: z.literal('transfer'), to: z.string(), reason: z.enum(['emergency', 'caller-asked']) }),
]);

function fromStored(s: StoredToolResult): ToolResult {
  const r: ToolResult = { output: s.output, outcome: s.outcome as ToolOutcome };
  const e = EffectShape.safeParse(s.effect);
  if (e.success) r.effect = e.data;
  return r;
}

/** A webhook tool's JSON Schema as a validator; a schema zod cannot read accepts any object. */
function webhookArgsSchema(t: WebhookTool): z.ZodType {
  try {
    return z.fromJSONSchema(t.parameters);
  } catch {
    return z.record(z.string(), z.unknown());
  }
}

export class BuiltinToolRunner implements ToolRunner {
  private readonly tools = new Map<string, ToolImpl<z.ZodType>>();
  private readonly deps: ToolDeps;
  /** Runs in progress per (callSid, call_id): a duplicate arriving meanwhile shares the first run. */
  private readonly inflight = new Map<string, Promise<ToolResult>>();
  private readonly webhookSchemas = new WeakMap<WebhookTool, z.ZodType>();

  /**
   * Without options the runner keeps claims and results in its own memory store: fine for one
   * process, but the relay should pass its `store` so every pod shares them.
   */
  constructor(private readonly o: BuiltinToolRunnerOptions = {}) {
    this.deps = {
      store: o.store ?? new MemoryCallStore(),
      clock: o.clock ?? systemClock,
      ...(o.callControl ? { callControl: o.callControl } : {}),
    };
    this.register(tool({ definition: checkServiceAreaDefinition, schema: CheckServiceAreaArgs, run: (a, ctx) => checkServiceArea(a, ctx.tenant) }));
    this.register(tool({ definition: quotePriceDefinition, schema: QuotePriceArgs, run: (a, ctx) => quotePrice(a, ctx.tenant) }));
    this.register(tool({ definition: bookAppointmentDefinition, schema: BookAppointmentArgs, run: bookAppointment }));
    this.register(tool({ definition: assignTechnicianDefinition, schema: AssignTechnicianArgs, run: assignTechnician }));
    this.register(tool({ definition: flagEmergencyDefinition, schema: FlagEmergencyArgs, run: flagEmergency }));
    this.register(tool({ definition: transferToHumanDefinition, schema: TransferToHumanArgs, run: (a, ctx) => transferToHuman(a, ctx) }));
    this.register(tool({ definition: endCallDefinition, schema: EndCallArgs, run: (a) => endCall(a) }));
    this.register(tool({ definition: createCallSummaryDefinition, schema: CreateCallSummaryArgs, run: createCallSummary }));
  }

  register(impl: ToolImpl<z.ZodType>): void {
    this.tools.set(impl.definition.name, impl);
  }

  definitions(tenant: Tenant): ToolDefinition[] {
    const enabled = new Set<string>(tenant.tools);
    const builtin = [...this.tools.values()].filter((t) => enabled.has(t.definition.name)).map((t) => t.definition);
    const hooks = tenant.webhookTools
      .filter((w) => !this.tools.has(w.name))
      .map((w): ToolDefinition => ({ type: 'function', name: w.name, description: w.description, parameters: w.parameters }));
    return [...builtin, ...hooks];
  }

  run(ctx: ToolContext, name: string, argumentsJson: string): Promise<ToolResult> {
    const key = `${ctx.callSid}\u0000${ctx.callId}`;
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.runOnce(ctx, name, argumentsJson).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async runOnce(ctx: ToolContext, name: string, argumentsJson: string): Promise<ToolResult> {
    const store = this.deps.store;
    try {
      const prior = await store.getToolResult(ctx.callSid, ctx.callId);
      if (prior) {
        ctx.log.info({ tool: name }, 'replayed tool call answered with its first result');
        return fromStored(prior);
      }
    } catch (err) {
      // Claims carry the call_id as owner, so running again cannot book twice; go on.
      ctx.log.warn({ code: 'store_unavailable', err: errorMessage(err) }, 'tool result lookup failed');
    }
    const result = await this.execute(ctx, name, argumentsJson);
    if (!KEPT.has(result.outcome)) return result;
    const record: StoredToolResult = {
      output: result.output,
      outcome: result.outcome,
      at: this.deps.clock.now(),
      ...(result.effect ? { effect: { ...result.effect } } : {}),
    };
    try {
      // Another pod may have answered the same call_id first: the stored result is the answer.
      return fromStored(await store.putToolResult(ctx.callSid, ctx.callId, record));
    } catch (err) {
      ctx.log.warn({ code: 'store_unavailable', err: errorMessage(err) }, 'tool result not stored');
      return result;
    }
  }

  private async execute(ctx: ToolContext, name: string, argumentsJson: string): Promise<ToolResult> {
    const impl = this.tools.get(name);
    const hook = impl ? undefined : ctx.tenant.webhookTools.find((w) => w.name === name);
    if ((!impl || !(ctx.tenant.tools as readonly string[]).includes(name)) && !hook) {
      return toolError('unknown_tool', `No tool named ${name} is available on this call.`);
    }
    let raw: unknown;
    try {
      raw = argumentsJson.trim() === '' ? {} : JSON.parse(argumentsJson);
    } catch {
      return toolError('invalid_arguments', 'Arguments were not valid JSON. Send a JSON object matching the schema.');
    }
    const schema = impl ? impl.schema : this.schemaOf(hook!);
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      const why = parsed.error.issues.map((i) => `${i.path.join('.') || 'arguments'}: ${i.message}`).join('; ');
      return toolError('invalid_arguments', `Invalid arguments: ${why}`);
    }
    if (hook) {
      return runWebhookTool(hook, parsed.data, ctx, {
        allowPrivateNetworks: this.o.webhooks?.allowPrivateNetworks === true,
        resolveSecret: (ref, where) => resolveSecret(ref, this.o.webhooks?.env ?? {}, where),
        now: () => this.deps.clock.now(),
      });
    }
    try {
      return await impl!.run(parsed.data, ctx, this.deps);
    } catch (err) {
      ctx.log.warn({ code: 'tool_failed', tool: name, err: errorMessage(err) }, 'tool failed');
      return toolError('error', `The ${name} tool failed; apologise and offer another way to help.`);
    }
  }

  private schemaOf(hook: WebhookTool): z.ZodType {
    let s = this.webhookSchemas.get(hook);
    if (!s) {
      s = webhookArgsSchema(hook);
      this.webhookSchemas.set(hook, s);
    }
    return s;
  }
}
