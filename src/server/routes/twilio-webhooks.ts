/**
 * Twilio's signed form webhooks: the voice webhook answering TwiML with a one-time stream token (or a
 * busy message past the tenant's concurrency limit), the after-stream redirect, and status callbacks.
 */
import type { CallOutcome } from '../../call/lifecycle.js';
import { errorMessage } from '../../errors.js';
import { maskNumber, numberForLog } from '../../store/call-store.js';
import { tenantAuthTokens, type Admission, type Tenant } from '../../tenants/index.js';
import {
  callStreamTwiml,
  resumeStreamTwiml,
  sayHangupTwiml,
  validateTwilioSignature,
  REFUSED_HEADER,
} from '../../twilio/index.js';
import { afterStreamTwiml, CRASH_OUTCOME_WAIT_MS, crashResumeRefusal, OUTCOME_WAIT_MS, settledOutcome, settledRecord } from '../after-stream.js';
import type { RelayContext } from '../context.js';
import {
  first,
  parseForm,
  pathAndQuery,
  readBody,
  reply,
  replyError,
  replyTooLarge,
  replyTwiml,
  track,
  type ReplyHandle,
} from '../http.js';

/** Webhook bodies are a few hundred bytes; anything near this is not Twilio. */
const MAX_WEBHOOK_BYTES = 64 * 1024;

/** What a caller over the tenant's concurrency limit hears. */
export const BUSY_MESSAGE = 'All our lines are busy right now. Please call again in a few minutes. Goodbye.';

/** Call statuses after which a call holds no line (docs/wire-formats.md §1). */
const FINAL_CALL_STATUSES = new Set(['completed', 'busy', 'failed', 'no-answer', 'canceled']);
/** Stream status events after which the stream is gone. */
const FINAL_STREAM_EVENTS = new Set(['stream-stopped', 'stream-error']);

/** Concurrency leases as the webhooks use them (TenantLeases provides this). */
export interface WebhookLeases {
  admit(tenant: Tenant, callSid: string): Promise<Admission>;
  release(tenantId: string, callSid: string): Promise<boolean>;
}

/** Tenant budgets as the voice webhook uses them (BudgetGate provides this). */
export interface WebhookBudgets {
  admit(tenant: Tenant): Promise<{ admit: true } | { admit: false; twiml: string; use: { ratio: number; callMinutes: number; costUsd: number } }>;
}

export interface TwilioWebhookOptions {
  /** Per-tenant concurrency limits; without them every call is admitted. */
  leases?: WebhookLeases;
  /** Per-tenant spending caps; without them no call is refused for its cost. */
  budgets?: WebhookBudgets;
}

export function registerTwilioWebhooks(ctx: RelayContext, opts: TwilioWebhookOptions = {}): void {
  const { leases, budgets } = opts;
  const { app, config, log, metrics, store, tenants, clock, streamUrl } = ctx;

  /** Validate a signed Twilio form webhook; returns its params, or replies and returns undefined. */
  async function signedForm(
    h: ReplyHandle,
    req: { path: string; signature: string | undefined },
    route: string,
  ): Promise<
    { params: Record<string, string | string[]>; tenantOk: (tenant: Tenant) => boolean } | undefined
  > {
    let body: Buffer;
    try {
      body = await readBody(h, MAX_WEBHOOK_BYTES);
    } catch (err) {
      metrics.webhooks.labels(route, 'too_large').inc();
      log.warn({ code: 'payload_too_large', route }, 'webhook body too large');
      replyTooLarge(h, err);
      return undefined;
    }
    const params = parseForm(body);
    const url = config.publicUrl + req.path;
    return {
      params,
      // Validate before filtering anything: the signature covers every field Twilio sent.
      // The previous auth token still validates while an operator rotates it (docs/operators.md).
      tenantOk: (tenant) =>
        !config.validateSignatures ||
        tenantAuthTokens(tenant).some((token) => validateTwilioSignature(token, req.signature, url, params)),
    };
  }

  type SignedForm = NonNullable<Awaited<ReturnType<typeof signedForm>>>;

  /** A signed Twilio form webhook at `path`: the body read and its signature checker built, failures answered. */
  function signedWebhook(path: string, route: string, handle: (h: ReplyHandle, form: SignedForm) => Promise<void> | void): void {
    app.post(path, (res, req) => {
      const h = track(res);
      const meta = { path: pathAndQuery(req), signature: req.getHeader('x-twilio-signature') || undefined };
      void (async () => {
        const form = await signedForm(h, meta, route);
        if (form) await handle(h, form);
      })().catch((err: unknown) => internalError(h, route, err));
    });
  }

  /** The tenant a webhook's `To` and `AccountSid` name, if any. */
  const tenantOf = (form: SignedForm): Tenant | undefined =>
    tenants.byNumber(first(form.params['To']) ?? '', first(form.params['AccountSid']));

  /** 403 for a webhook no tenant's auth token signed, counted under its route. */
  function badSignature(h: ReplyHandle, route: string): void {
    metrics.webhooks.labels(route, 'bad_signature').inc();
    replyError(h, '403 Forbidden', 'signature_invalid', 'X-Twilio-Signature does not match');
  }

  // Not signedWebhook: an unready pod answers before it reads the body.
  app.post('/twilio/voice', (res, req) => {
    const h = track(res);
    const meta = { path: pathAndQuery(req), signature: req.getHeader('x-twilio-signature') || undefined };
    void (async () => {
      if (!ctx.tenantsReady()) {
        // Unready pods get no traffic from the ingress; if one does, say so rather than "not in service".
        metrics.webhooks.labels('voice', 'unavailable').inc();
        return replyTwiml(h, sayHangupTwiml('Sorry, we cannot take your call right now. Please try again in a few minutes. Goodbye.'));
      }
      const form = await signedForm(h, meta, 'voice');
      if (!form) return;
      const to = first(form.params['To']) ?? '';
      const accountSid = first(form.params['AccountSid']);
      const callSid = first(form.params['CallSid']) ?? '';
      const tenant = tenants.byNumber(to, accountSid);
      if (!tenant) {
        metrics.webhooks.labels('voice', 'unknown_number').inc();
        log.info({ code: 'tenant_unknown', to: numberForLog(to) }, 'call to a number no tenant owns');
        return replyTwiml(h, sayHangupTwiml('Sorry, the number you have called is not in service. Goodbye.'));
      }
      if (!form.tenantOk(tenant)) {
        log.warn({ code: 'signature_invalid', tenant: tenant.id }, 'voice webhook signature invalid');
        return badSignature(h, 'voice');
      }
      if (!/^CA[0-9a-fA-F]{32}$/.test(callSid)) {
        metrics.webhooks.labels('voice', 'bad_request').inc();
        return replyError(h, '400 Bad Request', 'bad_request', 'CallSid missing or malformed');
      }
      if (budgets) {
        const b = await budgets.admit(tenant);
        if (!b.admit) {
          // Before the lease: a refused call holds no line. Live calls are not touched.
          metrics.webhooks.labels('voice', 'over_budget').inc();
          metrics.callsTotal.labels('rejected_budget', tenant.id).inc();
          log.info(
            { code: 'budget_exceeded', tenant: tenant.id, callSid, used: b.use, action: tenant.budget?.whenExceeded.action },
            "tenant over its budget: call answered with the tenant's budget TwiML instead of the model",
          );
          return replyTwiml(h, b.twiml, { [REFUSED_HEADER]: 'budget' });
        }
      }
      if (leases) {
        const a = await leases.admit(tenant, callSid);
        if (!a.admitted) {
          metrics.webhooks.labels('voice', 'busy').inc();
          metrics.tenantBusy.labels(tenant.id).inc();
          metrics.callsTotal.labels('rejected_capacity', tenant.id).inc();
          log.info(
            { code: 'tenant_busy', tenant: tenant.id, callSid, active: a.active, limit: tenant.maxConcurrentCalls },
            'tenant at its concurrency limit: call turned away',
          );
          return replyTwiml(h, sayHangupTwiml(BUSY_MESSAGE), { [REFUSED_HEADER]: 'busy' });
        }
      }
      metrics.webhooks.labels('voice', 'ok').inc();
      // The call record's `from` (masked here: the full number never leaves this handler) and `to`.
      const fromMasked = maskNumber(first(form.params['From']));
      replyTwiml(
        h,
        callStreamTwiml({
          streamUrl,
          publicUrl: config.publicUrl,
          secret: config.streamTokenSecret,
          now: clock.now(),
          callSid,
          tenantId: tenant.id,
          to,
          ...(fromMasked ? { fromMasked } : {}),
        }),
      );
    })().catch((err: unknown) => internalError(h, 'voice', err));
  });

  // TwiML after </Connect> redirects here once the media socket closes: what the caller hears next
  // depends on how the call ended (goodbye, transfer, or the model was unavailable).
  signedWebhook('/twilio/after-stream', 'after_stream', async (h, form) => {
    const tenant = tenantOf(form);
    if (!tenant) return replyTwiml(h, sayHangupTwiml('Sorry, something went wrong. Goodbye.'));
    if (!form.tenantOk(tenant)) return badSignature(h, 'after_stream');
    const callSid = first(form.params['CallSid']) ?? '';
    const read = (): ReturnType<typeof store.getCall> => store.getCall(callSid);
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => clock.after(ms, resolve));
    let outcome: CallOutcome | undefined;
    try {
      let waitMs = OUTCOME_WAIT_MS;
      if (config.drainMode === 'migrate') {
        const resume = await crashResume(tenant, callSid, read, sleep);
        if (resume !== undefined) {
          metrics.webhooks.labels('after_stream', 'ok').inc();
          return replyTwiml(h, resume);
        }
        waitMs -= CRASH_OUTCOME_WAIT_MS;
      }
      outcome = await settledOutcome(read, sleep, waitMs, (stored) =>
        log.warn({ code: 'internal', callSid, outcome: stored }, 'unknown stored call outcome; answering with the fallback'),
      );
    } catch (err) {
      log.warn({ code: 'store_unavailable', err: errorMessage(err) }, 'after-stream lookup failed');
    }
    metrics.webhooks.labels('after_stream', 'ok').inc();
    replyTwiml(h, afterStreamTwiml(outcome, tenant.humanFallbackNumber, tenant.phoneNumbers[0]));
  });

  // A voicemail recorded after a budget refusal (<Record action>): log where Twilio keeps it, hang up.
  signedWebhook('/twilio/voicemail', 'voicemail', (h, form) => {
    const tenant = tenantOf(form);
    if (!tenant || !form.tenantOk(tenant)) return badSignature(h, 'voicemail');
    metrics.webhooks.labels('voicemail', 'ok').inc();
    log.info(
      {
        tenant: tenant.id,
        callSid: first(form.params['CallSid']),
        recordingSid: first(form.params['RecordingSid']),
        recordingUrl: first(form.params['RecordingUrl']),
        recordingSeconds: Number(first(form.params['RecordingDuration']) ?? 0),
      },
      'voicemail recorded',
    );
    replyTwiml(h, sayHangupTwiml('Thank you, we will get back to you. Goodbye.'));
  });

  signedWebhook('/twilio/status', 'status', async (h, form) => {
    const accountSid = first(form.params['AccountSid']);
    // Stream callbacks carry no To: every tenant of the account whose token verifies may own the call.
    const owners = tenants.list().filter((t) => t.twilio.accountSid === accountSid && form.tenantOk(t));
    if (owners.length === 0) return badSignature(h, 'status');
    const callSid = first(form.params['CallSid']) ?? '';
    const callStatus = first(form.params['CallStatus']);
    const streamEvent = first(form.params['StreamEvent']);
    metrics.webhooks.labels('status', 'ok').inc();
    log.info(
      {
        callSid,
        tenant: owners.length === 1 ? owners[0]?.id : owners.map((t) => t.id),
        streamEvent,
        callStatus,
        streamError: first(form.params['StreamError']),
        callDuration: first(form.params['CallDuration']),
      },
      'twilio status callback',
    );
    const final =
      (callStatus !== undefined && FINAL_CALL_STATUSES.has(callStatus)) ||
      (streamEvent !== undefined && FINAL_STREAM_EVENTS.has(streamEvent));
    if (leases && final && /^CA[0-9a-fA-F]{32}$/.test(callSid)) {
      // A call releases on its own end too (its ledger tells the leases); this covers a pod that died, or a webhook
      // whose stream never opened. Releasing twice is harmless.
      const results = await Promise.allSettled(owners.map((t) => leases.release(t.id, callSid)));
      for (const r of results) {
        if (r.status === 'rejected') log.warn({ code: 'store_unavailable', callSid, err: errorMessage(r.reason) }, 'lease release failed');
      }
    }
    reply(h, '204 No Content', '');
  });

  /**
   * Crash resume (DRAIN_MODE=migrate): a call whose stream closed with no outcome after a short wait
   * lost its pod. Mark it moving (reason `crash`, the gap starting now) and answer with a resume
   * `<Connect><Stream>` so a ready pod adopts it and the caller goes on. Undefined: answer as usual.
   */
  async function crashResume(
    tenant: Tenant,
    callSid: string,
    read: () => ReturnType<typeof store.getCall>,
    sleep: (ms: number) => Promise<void>,
  ): Promise<string | undefined> {
    const at = clock.now();
    const rec = await settledRecord(read, sleep, CRASH_OUTCOME_WAIT_MS);
    if (!rec || rec.tenantId !== tenant.id) return undefined;
    const refusal = crashResumeRefusal(rec, clock.now(), config.maxCallSeconds * 1000);
    if (refusal === 'ended') return undefined;
    if (refusal !== undefined) {
      metrics.callMigrations.labels('crash', 'resume_skipped').inc();
      log.warn({ code: 'conflict', callSid, tenant: tenant.id, why: refusal, pod: rec.pod }, 'stream cut without an end: not resumed');
      return undefined;
    }
    try {
      await store.beginMigration(callSid, { reason: 'crash', at });
    } catch (err) {
      log.info({ callSid, err: errorMessage(err) }, 'stream cut without an end, but the call could not be moved: answered as it ended');
      return undefined;
    }
    log.warn(
      { callSid, tenant: tenant.id, pod: rec.pod, resumes: rec.migrations.length },
      'stream cut without an end (its pod died?): resuming the call on a ready pod',
    );
    return resumeStreamTwiml({
      streamUrl,
      publicUrl: config.publicUrl,
      secret: config.streamTokenSecret,
      now: clock.now(),
      callSid,
      tenantId: tenant.id,
      reason: 'crash',
      ...(rec.to !== undefined ? { to: rec.to } : {}),
      ...(rec.fromMasked !== undefined ? { fromMasked: rec.fromMasked } : {}),
    });
  }

  function internalError(h: ReplyHandle, route: string, err: unknown): void {
    metrics.webhooks.labels(route, 'error').inc();
    log.error({ code: 'internal', route, err: errorMessage(err) }, 'request failed');
    replyError(h, '500 Internal Server Error', 'internal', 'internal error');
  }
}
