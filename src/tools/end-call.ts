/** end_call: the model says goodbye, then the relay hangs up once that audio has played. */
import { z } from 'zod';
import type { ToolResult } from './tool-runner.js';

export const EndCallArgs = z.object({
  reason: z.string().max(500).default('conversation finished'),
});

export const endCallDefinition = {
  type: 'function' as const,
  name: 'end_call',
  description:
    'Hang up the call. Say goodbye to the caller first; the line closes once your goodbye has played.',
  parameters: z.toJSONSchema(EndCallArgs, { io: 'input' }) as Record<string, unknown>,
};

export function endCall(args: z.infer<typeof EndCallArgs>): ToolResult {
  return {
    outcome: 'ok',
    output: JSON.stringify({ ok: true, note: 'Say a short goodbye now; the call ends after it plays.' }),
    effect: { kind: 'end_call', reason: args.reason },
  };
}
