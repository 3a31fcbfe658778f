/** Query-string values the admin routes share: tenant ids and points in time. */

/** A tenant id as the tenant schema allows it. */
export const TENANT_ID = /^[a-z0-9][a-z0-9_-]{1,62}$/;

/** `2026-12-05`, or a full ISO time with zone (`2026-12-05T13:00:00Z`). */
const DATE = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2}))?$/;

/** The message for a value `parseTime` refused. */
export const TIME_FORMAT = 'dates (2026-12-01) or ISO times with a zone (2026-12-01T00:00:00Z)';

/** A date (midnight UTC) or an ISO time with zone, in ms; undefined when it is neither. */
export function parseTime(v: string): number | undefined {
  if (!DATE.test(v)) return undefined;
  const t = Date.parse(v.length === 10 ? `${v}T00:00:00Z` : v);
  return Number.isNaN(t) ? undefined : t;
}
