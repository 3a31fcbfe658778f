/**
 * assign_technician: skill, area and slot -> a free technician, claimed atomically per
 * (technician, slot) across pods. Candidates are tried in a fixed order, so a replayed call_id
 * meets its own claim before any free technician and gets the same person back.
 */
import { z } from 'zod';
import { postcodeMatches } from './area.js';
import { SLOT, claimOwner, slotHoldSeconds } from './book-appointment.js';
import { serviceKey } from './quote-price.js';
import type { ToolDefinition } from '../model/index.js';
import { toolOk, toolRejected, type ToolContext, type ToolDeps, type ToolResult } from './tool-runner.js';

export const AssignTechnicianArgs = z.object({
  skill: z.string().trim().min(1).max(100).describe('The skill needed, usually the service name (e.g. leak_repair)'),
  postcode: z.string().trim().max(10).optional().describe('Where the job is'),
  slot: z.string().regex(SLOT, { message: 'must be local time YYYY-MM-DDTHH:MM' }).describe('The booked slot, local time YYYY-MM-DDTHH:MM'),
});

export const assignTechnicianDefinition: ToolDefinition = {
  type: 'function',
  name: 'assign_technician',
  description: 'Assign a free technician with the needed skill who covers the postcode, for a booked slot.',
  parameters: z.toJSONSchema(AssignTechnicianArgs, { io: 'input' }),
};

export async function assignTechnician(args: z.infer<typeof AssignTechnicianArgs>, ctx: ToolContext, deps: ToolDeps): Promise<ToolResult> {
  const skill = serviceKey(args.skill);
  const candidates = ctx.tenant.business.technicians.filter(
    (t) =>
      t.skills.some((s) => serviceKey(s) === skill) &&
      (args.postcode === undefined || t.areas.length === 0 || t.areas.some((a) => postcodeMatches(a, args.postcode!))),
  );
  if (candidates.length === 0) {
    return toolRejected(`No technician has the skill ${args.skill}${args.postcode ? ` in ${args.postcode}` : ''}. Offer a call back instead.`);
  }
  const owner = claimOwner(ctx);
  const ttlSeconds = slotHoldSeconds(args.slot, deps.clock.now());
  for (const t of candidates) {
    const holder = await deps.store.claim({ tenantId: ctx.tenant.id, key: `tech:${t.id}:${args.slot}`, owner, ttlSeconds, callSid: ctx.callSid });
    if (holder === owner) return toolOk({ assigned: true, technicianId: t.id, technicianName: t.name, slot: args.slot });
  }
  return toolRejected(`Every ${args.skill} technician is busy at ${args.slot}. Offer another slot.`, { allBusy: true });
}
