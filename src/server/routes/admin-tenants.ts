/**
 * The tenant half of the /v1 admin API: list, read, create, replace, merge-patch and delete tenants.
 * Validation errors name each field; secrets are accepted only by reference and never shown.
 */
import { posix } from 'node:path';
import type { TenantWrite, TenantWriteMode } from '../../tenants/tenant-store.js';
import { TenantSchema, type SecretRef, type TenantConfig } from '../../tenants/index.js';
import { errorMessage, SwitchboardError } from '../../errors.js';
import { webhookUrlProblem } from '../../ssrf.js';
import type { RelayContext } from '../context.js';
import { readBody, reply, replyError, replyJson, replyTooLarge, type ReplyHandle } from '../http.js';
import { adminGuard } from '../admin-auth.js';

/** What the routes need from the registry (StoreTenantRegistry provides it). */
export interface AdminTenantRegistry {
  configs(): Promise<TenantConfig[]>;
  config(id: string): Promise<TenantConfig | undefined>;
  write(cfg: TenantConfig, mode: TenantWriteMode): Promise<TenantWrite>;
  remove(id: string): Promise<boolean>;
  /** Why the config's secret references do not resolve on this pod, if they do not. */
  unresolvable(cfg: TenantConfig): string | undefined;
}

export interface FieldError {
  path: string;
  message: string;
}

/** Deeper than any tenant document; bounds the recursion of validation and merge-patch. */
export const MAX_JSON_DEPTH = 64;

/** Deepest `{`/`[` nesting of a JSON text, counted outside strings, without parsing it. */
export function nestingDepth(raw: Buffer): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (inString) {
      if (c === 0x5c) i++; // skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) max = Math.max(max, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/** The stores report their failures (connection, timeout, a refused command) as `store_unavailable`. */
function isStoreError(err: unknown): boolean {
  return err instanceof SwitchboardError && err.code === 'store_unavailable';
}

/** A tenant with a price book, technicians and slots is a few KiB; this leaves room, not abuse. */
export const MAX_ADMIN_BODY_BYTES = 256 * 1024;

const SECRET_FIELDS = ['authToken', 'previousAuthToken'] as const;

/** A secret reference as the API shows it: names of variables and files, never a value. */
export function secretRefView(ref: SecretRef): Record<string, string | boolean> {
  if ('env' in ref) return { env: ref.env };
  if ('file' in ref) return { file: ref.file };
  return { value: '[redacted]' };
}

/** A tenant as the API returns it: the stored config with every secret replaced by its reference. */
export function tenantView(cfg: TenantConfig): Record<string, unknown> {
  const twilio: Record<string, unknown> = { accountSid: cfg.twilio.accountSid, authToken: secretRefView(cfg.twilio.authToken) };
  if (cfg.twilio.previousAuthToken) twilio['previousAuthToken'] = secretRefView(cfg.twilio.previousAuthToken);
  const webhookTools = cfg.webhookTools.map((t) => ({ ...t, secret: secretRefView(t.secret) }));
  return { ...cfg, twilio, webhookTools };
}

type Validation = { ok: true; tenant: TenantConfig } | { ok: false; fields: FieldError[] };

/** Where a tenant document holds secrets: the Twilio tokens and each webhook tool's signing secret. */
function secretPaths(body: unknown): { path: string; ref: unknown }[] {
  if (!isObject(body)) return [];
  const out: { path: string; ref: unknown }[] = [];
  const twilio = ownField(body, 'twilio');
  if (isObject(twilio)) for (const f of SECRET_FIELDS) out.push({ path: `twilio.${f}`, ref: ownField(twilio, f) });
  const tools = ownField(body, 'webhookTools');
  if (Array.isArray(tools)) tools.forEach((t, i) => out.push({ path: `webhookTools.${i}.secret`, ref: isObject(t) ? ownField(t, 'secret') : undefined }));
  return out;
}

/** A secret field's path (`twilio.authToken`, `webhookTools.0.secret`). */
const SECRET_PATH = /^(twilio\.(authToken|previousAuthToken)|webhookTools\.\d+\.secret)$/;

/** Inline `{value}` secrets in a request body: refused whatever else is wrong with it. */
function inlineSecretErrors(body: unknown): FieldError[] {
  return secretPaths(body)
    .filter(({ ref }) => isObject(ref) && Object.hasOwn(ref, 'value'))
    .map(({ path }) => ({ path, message: 'inline secret values are not accepted here; give {"env": "NAME"} or {"file": "/path"}' }));
}

/** Keys of `input` that the schema dropped (zod strips unknown keys): typos must not vanish silently. */
function unknownFields(input: unknown, output: unknown, path: string[], out: FieldError[]): void {
  if (Array.isArray(input) && Array.isArray(output)) {
    input.forEach((v, i) => unknownFields(v, output[i], [...path, String(i)], out));
    return;
  }
  if (!isObject(input) || !isObject(output)) return;
  for (const k of Object.keys(input)) {
    // Own keys only: `__proto__` or `constructor` are "in" every object through its prototype.
    if (!Object.hasOwn(output, k)) out.push({ path: [...path, k].join('.'), message: 'unknown field' });
    else unknownFields(input[k], output[k], [...path, k], out);
  }
}

/**
 * Validate a full tenant document from the API, naming every bad field. `refuseInline: false` lets a
 * merged PATCH document keep an inline secret the stored tenant already had (a file-seeded tenant).
 */
export function validateTenantBody(body: unknown, opts: { refuseInline?: boolean; allowPrivateWebhooks?: boolean } = {}): Validation {
  const fields = opts.refuseInline === false ? [] : inlineSecretErrors(body);
  const r = TenantSchema.safeParse(body);
  if (!r.success) {
    for (const i of r.error.issues) {
      const path = i.path.map(String).join('.');
      const secret = SECRET_PATH.test(path);
      if (secret && fields.some((e) => e.path === path)) continue;
      fields.push({ path: path || '(body)', message: secret ? 'must be {"env": "NAME"} or {"file": "/path"}' : i.message });
    }
    return { ok: false, fields };
  }
  unknownFields(body, r.data, [], fields);
  r.data.webhookTools.forEach((t, i) => {
    const problem = webhookUrlProblem(t.url, opts.allowPrivateWebhooks === true);
    if (problem !== undefined) fields.push({ path: `webhookTools.${i}.url`, message: problem });
  });
  return fields.length > 0 ? { ok: false, fields } : { ok: true, tenant: r.data };
}

const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Where the admin API lets secret references point (ADMIN_SECRET_ENV_PREFIX, ADMIN_SECRET_DIR). */
export interface ReferenceRules {
  envPrefix: string;
  /** Absolute and normalised, without a trailing slash. */
  dir: string;
}

/**
 * References outside the allowed prefix or directory. Decided on the text alone, before anything is
 * read: the answer does not depend on whether a file exists (no oracle), and the relay's own
 * variables (API keys, ADMIN_TOKEN) cannot be named.
 */
export function referenceErrors(body: unknown, rules: ReferenceRules): FieldError[] {
  const out: FieldError[] = [];
  for (const { path, ref } of secretPaths(body)) {
    if (!isObject(ref)) continue;
    const env = ownField(ref, 'env');
    const file = ownField(ref, 'file');
    if (typeof env === 'string' && !env.startsWith(rules.envPrefix)) {
      out.push({ path, message: `an {env} reference must name a variable starting with ${rules.envPrefix}` });
    }
    if (typeof file === 'string' && !(file.startsWith('/') && posix.resolve(file) === file && file.startsWith(rules.dir + '/'))) {
      out.push({ path, message: `a {file} reference must be inside ${rules.dir} (an absolute, normalised path)` });
    }
  }
  return out;
}

/** RFC 7396 JSON merge patch: objects merge, null deletes, everything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    // Assigning `__proto__` would swap the prototype, and inherited fields would pass validation.
    if (UNSAFE_KEYS.has(k)) continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** A secret reference that does not resolve on this pod, as a field error on the right field. */
function unresolvedField(problem: string): FieldError {
  const path = problem.includes('twilio.previousAuthToken') ? 'twilio.previousAuthToken' : 'twilio.authToken';
  return { path, message: `does not resolve on this relay: ${problem}` };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `o[k]` only when `o` itself has the key (never an inherited `__proto__`/`constructor` member). */
function ownField(o: Record<string, unknown>, k: string): unknown {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

/**
 * Register /v1/tenants and /v1/tenants/{id}. Nothing is registered when ADMIN_TOKEN is unset, so the
 * routes answer 404 like any unknown path. `auth` is `bearerAuth(config.adminToken)`.
 */
export function registerAdminTenantRoutes(
  ctx: RelayContext,
  auth: (authorizationHeader: string) => boolean,
  registry: AdminTenantRegistry,
): void {
  if (ctx.config.adminToken === undefined) return;
  const { app, log } = ctx;
  const rules: ReferenceRules = { envPrefix: ctx.config.adminSecretEnvPrefix, dir: ctx.config.adminSecretDir };
  const allowPrivateWebhooks = ctx.config.webhookToolsAllowPrivate;

  const guard = adminGuard(auth);

  /** Read and parse a JSON body; replies (413 or 400) and returns undefined on failure. */
  async function jsonBody(h: ReplyHandle): Promise<{ value: unknown } | undefined> {
    let raw: Buffer;
    try {
      raw = await readBody(h, MAX_ADMIN_BODY_BYTES);
    } catch (err) {
      replyTooLarge(h, err);
      return undefined;
    }
    if (nestingDepth(raw) > MAX_JSON_DEPTH) {
      // Recursive validation and merge-patch would overflow the stack long before JSON.parse does.
      replyError(h, '400 Bad Request', 'bad_request', `body nests deeper than ${MAX_JSON_DEPTH} levels`);
      return undefined;
    }
    try {
      return { value: JSON.parse(raw.toString('utf8')) as unknown };
    } catch {
      // The parser's message quotes the body; say where it failed only in general terms.
      replyError(h, '400 Bad Request', 'bad_request', 'body is not valid JSON');
      return undefined;
    }
  }

  function answerWrite(h: ReplyHandle, r: TenantWrite, tenant: TenantConfig, op: string): void {
    if (r.ok) {
      log.info({ tenant: tenant.id, op, created: r.created }, 'tenant written through the admin API');
      reply(h, r.created ? '201 Created' : '200 OK', JSON.stringify(tenantView(tenant)), {
        'content-type': 'application/json',
        location: `/v1/tenants/${tenant.id}`,
      });
      return;
    }
    switch (r.reason) {
      case 'exists':
        return replyError(h, '409 Conflict', 'conflict', `tenant ${tenant.id} already exists; use PUT or PATCH /v1/tenants/${tenant.id}`);
      case 'not_found':
        return replyError(h, '404 Not Found', 'not_found', `no tenant ${tenant.id}`);
      case 'number_taken':
        return replyError(h, '409 Conflict', 'conflict', `number ${r.number} belongs to tenant ${r.owner}`, [
          { path: `phoneNumbers.${tenant.phoneNumbers.indexOf(r.number)}`, message: `belongs to tenant ${r.owner}` },
        ]);
    }
  }

  /** Validate, check secrets resolve here, write. */
  async function validateAndWrite(h: ReplyHandle, body: unknown, mode: TenantWriteMode, op: string, extra: FieldError[] = []): Promise<void> {
    const v = validateTenantBody(body, { allowPrivateWebhooks });
    const fields = [...extra, ...(v.ok ? [] : v.fields)];
    for (const f of referenceErrors(body, rules)) if (!fields.some((e) => e.path === f.path)) fields.push(f);
    await writeChecked(h, v, fields, mode, op);
  }

  /** 400 naming every field problem, or a secret that does not resolve here; else write and answer. */
  async function writeChecked(h: ReplyHandle, v: Validation, fields: FieldError[], mode: TenantWriteMode, op: string): Promise<void> {
    if (!v.ok || fields.length > 0) return replyError(h, '400 Bad Request', 'bad_request', 'tenant is invalid', fields);
    const problem = registry.unresolvable(v.tenant);
    if (problem !== undefined) return replyError(h, '400 Bad Request', 'bad_request', 'tenant is invalid', [unresolvedField(problem)]);
    answerWrite(h, await registry.write(v.tenant, mode), v.tenant, op);
  }

  const failed = (h: ReplyHandle, op: string) => (err: unknown) => {
    // Only a store failure is the store's fault; anything else is ours and says so.
    if (isStoreError(err)) {
      log.error({ code: 'store_unavailable', op, err: errorMessage(err) }, 'admin tenant request failed');
      replyError(h, '503 Service Unavailable', 'store_unavailable', 'tenant store unavailable; try again');
    } else {
      log.error({ code: 'internal', op, err: errorMessage(err) }, 'admin tenant request failed');
      replyError(h, '500 Internal Server Error', 'internal', 'internal error');
    }
  };

  app.get('/v1/tenants', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    registry
      .configs()
      .then((list) => replyJson(h, '200 OK', { tenants: list.map(tenantView) }))
      .catch(failed(h, 'list'));
  });

  app.post('/v1/tenants', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    void (async () => {
      const body = await jsonBody(h);
      if (body) await validateAndWrite(h, body.value, 'create', 'create');
    })().catch(failed(h, 'create'));
  });

  app.get('/v1/tenants/:id', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    const id = req.getParameter(0) ?? '';
    registry
      .config(id)
      .then((cfg) => (cfg ? replyJson(h, '200 OK', tenantView(cfg)) : replyError(h, '404 Not Found', 'not_found', `no tenant ${id}`)))
      .catch(failed(h, 'get'));
  });

  app.put('/v1/tenants/:id', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    const id = req.getParameter(0) ?? '';
    void (async () => {
      const body = await jsonBody(h);
      if (!body) return;
      const extra: FieldError[] = [];
      let doc = body.value;
      if (isObject(doc)) {
        if (doc['id'] === undefined) doc = { ...doc, id };
        else if (doc['id'] !== id) extra.push({ path: 'id', message: 'must match the tenant id in the URL' });
      }
      await validateAndWrite(h, doc, 'upsert', 'replace', extra);
    })().catch(failed(h, 'replace'));
  });

  app.patch('/v1/tenants/:id', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    const id = req.getParameter(0) ?? '';
    void (async () => {
      const body = await jsonBody(h);
      if (!body) return;
      const patch = body.value;
      if (!isObject(patch)) return replyError(h, '400 Bad Request', 'bad_request', 'a merge patch must be a JSON object');
      const current = await registry.config(id);
      if (!current) return replyError(h, '404 Not Found', 'not_found', `no tenant ${id}`);
      const fields = inlineSecretErrors(patch);
      for (const f of referenceErrors(patch, rules)) if (!fields.some((e) => e.path === f.path)) fields.push(f);
      if (patch['id'] !== undefined && patch['id'] !== id) fields.push({ path: 'id', message: 'a tenant id cannot change' });
      const v = validateTenantBody(mergePatch(current, patch), { refuseInline: false, allowPrivateWebhooks });
      if (!v.ok) fields.push(...v.fields.filter((f) => !fields.some((e) => e.path === f.path)));
      await writeChecked(h, v, fields, 'replace', 'patch');
    })().catch(failed(h, 'patch'));
  });

  app.del('/v1/tenants/:id', (res, req) => {
    const h = guard(res, req.getHeader('authorization'));
    if (!h) return;
    const id = req.getParameter(0) ?? '';
    registry
      .remove(id)
      .then((had) => {
        if (!had) return replyError(h, '404 Not Found', 'not_found', `no tenant ${id}`);
        log.info({ tenant: id, op: 'delete' }, 'tenant deleted through the admin API');
        reply(h, '204 No Content', '');
      })
      .catch(failed(h, 'delete'));
  });
}
