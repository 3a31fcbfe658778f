/**
 * book_appointment: service, slot and customer -> a confirmation id. The slot is claimed atomically
 * in the shared store (one booking per slot across all pods); the claim's owner is the model's
 * call_id, so a replayed call gets its own booking back instead of a second one.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Tenant } from '../tenants/index.js';
import { findService } from './quote-price.js';
import type { ToolDefinition } from '../model/index.js';
import { toolError, toolOk, toolRejected, type ToolContext, type ToolDeps, type ToolResult } from './tool-runner.js';

export const SLOT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/;

export const BookAppointmentArgs = z.object({
  service: z.string().trim().min(1).max(100).describe('The service, as named in the price book'),
  slot: z.string().regex(SLOT, { message: 'must be local time YYYY-MM-DDTHH:MM, one of the offered slots' }).describe('The appointment slot, local time YYYY-MM-DDTHH:MM'),
  customerName: z.string().trim().min(1).max(100).describe("The customer's name"),
  customerPhone: z.string().trim().regex(/^\+?[\d\s().-]{7,20}$/, { message: 'must be a phone number' }).optional().describe('A callback number, if different from the calling number'),
  address: z.string().trim().max(300).optional().describe('Where the work is'),
  postcode: z.string().trim().max(10).optional(),
});

export const bookAppointmentDefinition: ToolDefinition = {
  type: 'function',
  name: 'book_appointment',
  description: 'Book an appointment slot for a service. Returns a confirmation id to read back to the caller, or that the slot is taken with alternatives.',
  parameters: z.toJSONSchema(BookAppointmentArgs, { io: 'input' }),
};

/** `callSid:callId`: the owner of claims made by one model function call. */
export function claimOwner(ctx: Pick<ToolContext, 'callSid' | 'callId'>): string {
  return `${ctx.callSid}:${ctx.callId}`;
}

/** Deterministic, so any pod replaying the same call_id reads back the same id. */
export function confirmationId(tenantId: string, slot: string, owner: string): string {
  const h = createHash('sha256').update(`${tenantId}\u0000${slot}\u0000${owner}`).digest('hex');
  return `BK-${h.slice(0, 8).toUpperCase()}`;
}

/** Hold a booked slot until a day after it (slots are local time; ±14 h of zone slack is inside that day). */
export function slotHoldSeconds(slot: string, now: number): number {
  const at = Date.parse(`${slot}:00Z`);
  const until = (Number.isNaN(at) ? now : at) + 2 * 86_400_000;
  return Math.max(86_400, Math.ceil((until - now) / 1000));
}

export async function bookAppointment(args: z.infer<typeof BookAppointmentArgs>, ctx: ToolContext, deps: ToolDeps): Promise<ToolResult> {
  const tenant: Tenant = ctx.tenant;
  const entry = findService(tenant, args.service);
  if (tenant.business.priceBook.length > 0 && !entry) {
    return toolError('invalid_arguments', `Unknown service "${args.service}". Services offered: ${tenant.business.priceBook.map((p) => p.service).join(', ')}.`);
  }
  const slots = tenant.business.slots;
  if (slots.length > 0 && !slots.includes(args.slot)) {
    return toolError('invalid_arguments', `${args.slot} is not an offered slot. Offered slots: ${slots.join(', ')}.`);
  }
  const owner = claimOwner(ctx);
  const holder = await deps.store.claim({
    tenantId: tenant.id,
    key: `slot:${args.slot}`,
    owner,
    ttlSeconds: slotHoldSeconds(args.slot, deps.clock.now()),
    callSid: ctx.callSid,
  });
  if (holder !== owner) {
    const alternatives = slots.filter((s) => s !== args.slot).slice(0, 3);
    return toolRejected(`The ${args.slot} slot was just taken by another booking.`, { slotTaken: true, alternatives });
  }
  return toolOk({
    booked: true,
    confirmationId: confirmationId(tenant.id, args.slot, owner),
    service: entry?.service ?? args.service,
    slot: args.slot,
    timeZone: tenant.business.timeZone,
    customerName: args.customerName,
    note: 'Read the confirmation id back to the caller.',
  });
}
