/** check_service_area: postcode or address -> served or not, with the nearest served postcode. */
import { z } from 'zod';
import type { Tenant } from '../tenants/index.js';
import { nearestServed, normalisePostcode, postcodeInAddress, postcodeMatches } from './area.js';
import type { ToolDefinition } from '../model/index.js';
import { toolOk, toolError, type ToolResult } from './tool-runner.js';

export const CheckServiceAreaArgs = z
  .object({
    postcode: z.string().trim().min(3).max(10).optional().describe('The postcode or ZIP code, e.g. 10001'),
    address: z.string().trim().min(3).max(300).optional().describe('The street address when the caller gave no postcode'),
  })
  .refine((a) => a.postcode !== undefined || a.address !== undefined, { message: 'give a postcode or an address' });

export const checkServiceAreaDefinition: ToolDefinition = {
  type: 'function',
  name: 'check_service_area',
  description: 'Check whether the business serves a postcode (or an address containing one). Returns served true/false and, if not served, the nearest served postcode.',
  parameters: z.toJSONSchema(CheckServiceAreaArgs, { io: 'input' }),
};

export function checkServiceArea(args: z.infer<typeof CheckServiceAreaArgs>, tenant: Tenant): ToolResult {
  const raw = args.postcode ?? (args.address !== undefined ? postcodeInAddress(args.address) : undefined);
  if (raw === undefined) {
    return toolError('invalid_arguments', 'No postcode found in that address. Ask the caller for their postcode.');
  }
  const postcode = normalisePostcode(raw);
  const area = tenant.business.serviceArea;
  const served = area.some((p) => postcodeMatches(p, postcode));
  if (served) return toolOk({ postcode, served: true });
  const nearest = nearestServed(area, postcode);
  return toolOk({
    postcode,
    served: false,
    ...(nearest !== undefined ? { nearestServedPostcode: nearest } : {}),
    note: 'Not in the service area: apologise, and mention the nearest area served if it helps.',
  });
}
