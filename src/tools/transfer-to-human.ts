/** transfer_to_human: the caller asks for a person; the call hands off after the model's last words (src/call/wind-down.ts). */
import { z } from 'zod';
import type { ToolDefinition } from '../model/index.js';
import { toolOk, toolRejected, type ToolContext, type ToolResult } from './tool-runner.js';

export const TransferToHumanArgs = z.object({
  reason: z.string().trim().max(500).default('caller asked for a person').describe('Why the caller wants a person'),
});

export const transferToHumanDefinition: ToolDefinition = {
  type: 'function',
  name: 'transfer_to_human',
  description: 'Hand the call to a person at the business. Say you are connecting them first; the transfer happens after you finish speaking.',
  parameters: z.toJSONSchema(TransferToHumanArgs, { io: 'input' }),
};

export function transferToHuman(_args: z.infer<typeof TransferToHumanArgs>, ctx: ToolContext): ToolResult {
  const to = ctx.tenant.humanFallbackNumber;
  if (to === undefined) {
    return toolRejected('Nobody is available to take the call. Offer to book a call back or take a message.');
  }
  return toolOk({ transferring: true, note: 'Say one short sentence: you are connecting them now.' }, { kind: 'transfer', to, reason: 'caller-asked' });
}
