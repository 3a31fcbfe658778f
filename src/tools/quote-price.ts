/** quote_price: service and options -> a price range from the tenant's price book, in its currency. */
import { z } from 'zod';
import type { Tenant } from '../tenants/index.js';
import type { ToolDefinition } from '../model/index.js';
import { toolError, toolOk, type ToolResult } from './tool-runner.js';

export const QuotePriceArgs = z.object({
  service: z.string().trim().min(1).max(100).describe('The service, as named in the price book (e.g. drain_cleaning)'),
  options: z.array(z.string().trim().min(1).max(50)).max(10).default([]).describe('Price-book options that apply, e.g. after_hours'),
  afterHours: z.boolean().default(false).describe('True for evening, night or weekend work (adds the after_hours option)'),
});

export const quotePriceDefinition: ToolDefinition = {
  type: 'function',
  name: 'quote_price',
  description: "Quote a price range for a service from the business's price book. Always say it is an estimate.",
  parameters: z.toJSONSchema(QuotePriceArgs, { io: 'input' }),
};

/** "Drain cleaning" and "drain-cleaning" find `drain_cleaning`. */
export function serviceKey(s: string): string {
  return s.trim().toLowerCase().replace(/[\s-]+/g, '_');
}

export function findService(tenant: Tenant, service: string): Tenant['business']['priceBook'][number] | undefined {
  const key = serviceKey(service);
  return tenant.business.priceBook.find((p) => serviceKey(p.service) === key);
}

export function quotePrice(args: z.infer<typeof QuotePriceArgs>, tenant: Tenant): ToolResult {
  const entry = findService(tenant, args.service);
  const known = tenant.business.priceBook.map((p) => p.service);
  if (!entry) {
    return toolError('invalid_arguments', `Unknown service "${args.service}". Services offered: ${known.join(', ') || 'none listed'}.`);
  }
  const wanted = new Set(args.options.map(serviceKey));
  if (args.afterHours) wanted.add('after_hours');
  const unknown = [...wanted].filter((o) => !(o in entry.options));
  if (unknown.length > 0) {
    const offered = Object.keys(entry.options);
    return toolError('invalid_arguments', `Unknown option ${unknown.join(', ')} for ${entry.service}. Options: ${offered.join(', ') || 'none'}.`);
  }
  const extra = [...wanted].reduce((sum, o) => sum + (entry.options[o] ?? 0), 0);
  return toolOk({
    service: entry.service,
    description: entry.description,
    currency: tenant.business.currency,
    minPrice: entry.minPrice + extra,
    maxPrice: entry.maxPrice + extra,
    options: [...wanted],
    note: 'This is an estimate; the technician confirms the final price on site.',
  });
}
