/**
 * flag_emergency: the caller reports an emergency. The call record is marked; by the tenant's
 * policy the caller is advised and, with `transfer`, handed to the human fallback at once through
 * the Twilio REST API (the advice is spoken by Twilio before the dial). The call winds down
 * (src/call/wind-down.ts).
 */
import { z } from 'zod';
import { errorMessage } from '../errors.js';
import type { ToolDefinition } from '../model/index.js';
import { toolOk, type CallEffect, type ToolContext, type ToolDeps, type ToolResult } from './tool-runner.js';

export const EmergencyKind = z.enum(['flood', 'gas_leak', 'no_heat', 'sewage', 'electrical', 'fire', 'other']);

export const FlagEmergencyArgs = z.object({
  kind: EmergencyKind.default('other').describe('What kind of emergency'),
  description: z.string().trim().min(1).max(1000).describe("What the caller said is happening"),
  severity: z.enum(['low', 'high', 'critical']).default('high').describe('critical when anyone is in danger'),
});

export const flagEmergencyDefinition: ToolDefinition = {
  type: 'function',
  name: 'flag_emergency',
  description: 'Flag an emergency (flooding, gas, no heat in winter, sewage, electrical, fire). Gives safety advice to read out, and may hand the call to a person.',
  parameters: z.toJSONSchema(FlagEmergencyArgs, { io: 'input' }),
};

type Args = z.infer<typeof FlagEmergencyArgs>;

/** Safety first: the danger words win over the declared kind (the model may pick `other`). */
export function emergencyAdvice(a: Args): string {
  const text = `${a.kind} ${a.description}`.toLowerCase();
  if (/gas|smell/.test(text)) return 'Leave the building now. Do not use light switches or flames. Call your local emergency number from outside.';
  if (/fire|smoke|spark/.test(text)) return 'If there is fire or smoke, leave now and call your local emergency number.';
  if (/flood|burst|leak|water/.test(text)) return 'If it is safe, turn off the main water valve and keep away from electrics near the water.';
  if (/electric/.test(text)) return 'Keep away from the affected area and switch off power at the main panel only if it is dry and safe.';
  if (/sewage/.test(text)) return 'Stop using taps and toilets and keep people away from the affected area.';
  if (/heat|cold|boiler|furnace/.test(text)) return 'Keep warm with layers and a safe space heater while help is arranged.';
  return 'Stay safe and keep away from the problem area.';
}

export async function flagEmergency(args: Args, ctx: ToolContext, deps: ToolDeps): Promise<ToolResult> {
  const tenant = ctx.tenant;
  const advice = emergencyAdvice(args);
  const human = tenant.humanFallbackNumber;
  const transfer = tenant.business.emergencyPolicy === 'transfer' && human !== undefined;
  await deps.store.flagEmergency(ctx.callSid, { kind: args.kind, severity: args.severity, at: deps.clock.now(), transferred: transfer });
  if (!transfer) {
    return toolOk({ emergency: true, advice, transferring: false, note: 'Read the advice to the caller, then offer the earliest appointment.' });
  }
  let viaRest = false;
  const effect: CallEffect = { kind: 'transfer', to: human, reason: 'emergency' };
  if (deps.callControl) {
    // Twilio stops the media stream as soon as it takes the new TwiML, maybe before we hear back.
    ctx.handingOff?.(effect);
    try {
      const r = await deps.callControl.transfer(
        { accountSid: tenant.twilio.accountSid, authToken: tenant.resolvedAuthToken },
        ctx.callSid,
        { to: human, say: `${advice} Connecting you to our emergency line now.`, ...(tenant.phoneNumbers[0] ? { callerId: tenant.phoneNumbers[0] } : {}) },
      );
      viaRest = r === 'updated';
    } catch (err) {
      // The effect still hands off through the after-stream redirect once the stream closes.
      ctx.log.warn({ code: 'tool_failed', err: errorMessage(err) }, 'emergency transfer over REST failed; using the after-stream redirect');
    }
  }
  await deps.store.setPhase(ctx.callSid, 'handing-off');
  return toolOk(
    { emergency: true, advice, transferring: true, note: 'Tell the caller, in one short sentence, that you are connecting them to a person now.' , viaRest },
    effect,
  );
}
