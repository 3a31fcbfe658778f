/**
 * Postcode matching against a tenant's service area (exact codes or `prefix*`), shared by the
 * service-area, technician and booking tools. Pure functions; the tenant data is the caller's.
 */

/** Uppercase without spaces: "sw1a 1aa" and "SW1A1AA" are one postcode. */
export function normalisePostcode(p: string): string {
  return p.replace(/\s+/g, '').toUpperCase();
}

/** True when `postcode` matches `pattern` (an exact postcode, or a prefix ending in `*`). */
export function postcodeMatches(pattern: string, postcode: string): boolean {
  const p = normalisePostcode(pattern);
  const c = normalisePostcode(postcode);
  return p.endsWith('*') ? c.startsWith(p.slice(0, -1)) : c === p;
}

/** The first postcode-looking token in an address: a 5-digit ZIP, else a UK-style outward+inward code. */
export function postcodeInAddress(address: string): string | undefined {
  const zip = /\b(\d{5})(?:-\d{4})?\b/.exec(address);
  if (zip?.[1]) return zip[1];
  const uk = /\b([A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2})\b/i.exec(address);
  return uk?.[1] ? normalisePostcode(uk[1]) : undefined;
}

/**
 * The served postcode closest to `postcode`: numeric distance for numeric codes (a prefix pattern
 * stands for its first code, `112*` -> 11200), else the longest shared prefix.
 */
export function nearestServed(area: readonly string[], postcode: string): string | undefined {
  const c = normalisePostcode(postcode);
  let best: { code: string; score: number } | undefined;
  for (const pattern of area) {
    const p = normalisePostcode(pattern);
    const code = p.endsWith('*') ? p.slice(0, -1).padEnd(c.length, '0') : p;
    let score: number;
    if (/^\d+$/.test(code) && /^\d+$/.test(c)) score = Math.abs(Number(code) - Number(c));
    else {
      let shared = 0;
      while (shared < code.length && code[shared] === c[shared]) shared++;
      score = 1000 - shared;
    }
    if (!best || score < best.score) best = { code, score };
  }
  return best?.code;
}
