/**
 * What the realtime API accepts in a session.update, as far as tenants control it: the voice and the
 * JSON schema of each tool's parameters. The tenant registry checks these when a tenant is saved (so
 * a call never meets a rejected session.update) and the simulated model rejects what the real one
 * would, with the same error codes.
 */

/** Voices of OpenAI Realtime GA (and Azure's realtime deployments). */
export const REALTIME_VOICES = ['alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', 'verse', 'marin', 'cedar'] as const;

const JSON_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null']);
/** Deeper schemas are refused (ours: a caller-facing tool needs nothing close). */
const MAX_SCHEMA_DEPTH = 10;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function schemaProblem(s: unknown, path: string, depth: number): string | undefined {
  if (!isObject(s)) return `${path}: must be a JSON schema object`;
  if (depth > MAX_SCHEMA_DEPTH) return `${path}: nested deeper than ${MAX_SCHEMA_DEPTH} levels`;
  const t = s.type;
  if (t !== undefined) {
    const types = Array.isArray(t) ? t : [t];
    for (const x of types) if (typeof x !== 'string' || !JSON_TYPES.has(x)) return `${path}.type: ${JSON.stringify(x)} is not a JSON schema type`;
  }
  if (s.properties !== undefined) {
    if (!isObject(s.properties)) return `${path}.properties: must be an object`;
    for (const [k, v] of Object.entries(s.properties)) {
      const p = schemaProblem(v, `${path}.properties.${k}`, depth + 1);
      if (p) return p;
    }
  }
  if (s.required !== undefined && (!Array.isArray(s.required) || s.required.some((r) => typeof r !== 'string'))) {
    return `${path}.required: must be an array of property names`;
  }
  if (s.items !== undefined) {
    const p = schemaProblem(s.items, `${path}.items`, depth + 1);
    if (p) return p;
  }
  if (s.enum !== undefined && !Array.isArray(s.enum)) return `${path}.enum: must be an array`;
  return undefined;
}

/** Why the realtime API would refuse these tool parameters, or undefined when they are fine. */
export function toolParametersProblem(parameters: unknown): string | undefined {
  if (!isObject(parameters)) return 'parameters: must be a JSON schema object';
  if (parameters.type !== 'object') return "parameters.type: must be 'object'";
  return schemaProblem(parameters, 'parameters', 0);
}
