/**
 * The ToolRunner used by the relay: validates arguments with each tool's zod schema and runs it.
 * Bad JSON or arguments answer the model with the schema's complaint, so it can try again.
 */
import type { z } from 'zod';
import { errorMessage } from '../errors.js';
import type { Tenant } from '../tenants/index.js';
import { EndCallArgs, endCall, endCallDefinition } from './end-call.js';
import { toolError, type ToolContext, type ToolDefinition, type ToolResult, type ToolRunner } from './tool-runner.js';

interface ToolImpl<S extends z.ZodType> {
  definition: ToolDefinition;
  schema: S;
  run(args: z.infer<S>, ctx: ToolContext): ToolResult | Promise<ToolResult>;
}

function tool<S extends z.ZodType>(impl: ToolImpl<S>): ToolImpl<z.ZodType> {
  return impl;
}

export class BuiltinToolRunner implements ToolRunner {
  private readonly tools = new Map<string, ToolImpl<z.ZodType>>();

  constructor() {
    this.register(tool({ definition: endCallDefinition, schema: EndCallArgs, run: (a) => endCall(a) }));
  }

  register(impl: ToolImpl<z.ZodType>): void {
    this.tools.set(impl.definition.name, impl);
  }

  definitions(tenant: Tenant): ToolDefinition[] {
    const enabled = new Set<string>(tenant.tools);
    return [...this.tools.values()].filter((t) => enabled.has(t.definition.name)).map((t) => t.definition);
  }

  async run(ctx: ToolContext, name: string, argumentsJson: string): Promise<ToolResult> {
    const impl = this.tools.get(name);
    if (!impl || !(ctx.tenant.tools as readonly string[]).includes(name)) {
      return toolError('unknown_tool', `No tool named ${name} is available on this call.`);
    }
    let raw: unknown;
    try {
      raw = argumentsJson.trim() === '' ? {} : JSON.parse(argumentsJson);
    } catch {
      return toolError('invalid_arguments', 'Arguments were not valid JSON. Send a JSON object matching the schema.');
    }
    const parsed = impl.schema.safeParse(raw);
    if (!parsed.success) {
      const why = parsed.error.issues.map((i) => `${i.path.join('.') || 'arguments'}: ${i.message}`).join('; ');
      return toolError('invalid_arguments', `Invalid arguments: ${why}`);
    }
    try {
      return await impl.run(parsed.data, ctx);
    } catch (err) {
      ctx.log.warn({ code: 'tool_failed', tool: name, err: errorMessage(err) }, 'tool failed');
      return toolError('error', `The ${name} tool failed; apologise and offer another way to help.`);
    }
  }
}
