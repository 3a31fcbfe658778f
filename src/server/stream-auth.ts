/**
 * Who may open a media stream: the `start` event must carry a valid, unused stream token for its
 * CallSid and tenant, the CallSid must not have had a stream yet, and, when Twilio signed the
 * upgrade, that signature must verify. A moved call's new stream carries a resume token instead of
 * the first-stream claim: valid, unused, and the call released by its old pod, which this pod adopts.
 */
import type { Logger } from 'pino';
import type { Authorisation, StartInfo } from '../call/index.js';
import { CloseCode } from '../errors.js';
import type { CallStore } from '../store/index.js';
import type { RelayMetrics } from '../telemetry/index.js';
import { tenantAuthTokens, type Tenant, type TenantDirectory } from '../tenants/index.js';
import { validateUpgradeSignature, verifyResumeToken, verifyStreamToken, type ResumeTokenCheck } from '../twilio/index.js';

export interface StreamAuthDeps {
  tenants: TenantDirectory;
  store: CallStore;
  secret: string;
  /**
   * Secrets being rotated out (STREAM_TOKEN_SECRET's predecessor): tokens they signed still verify,
   * so a rolling restart with a new secret refuses no call. Issue only with `secret`.
   */
  previousSecrets?: readonly string[];
  validateSignatures: boolean;
  /** The <Stream url> as written in TwiML (what Twilio signs on the upgrade). */
  streamUrl: string;
  now(): number;
  /** This pod: the adopter of a resumed call. */
  pod: string;
  /** Counts refused resumes (switchboard_call_migrations_total). */
  metrics?: Pick<RelayMetrics, 'callMigrations'>;
  log?: Logger;
}

/** Seconds a consumed token id is remembered; longer than any token lives. */
const CONSUMED_TTL_SECONDS = 600;
/**
 * Seconds a CallSid that got its stream is remembered: longer than the longest call (MAX_CALL_SECONDS
 * is at most 4 h). Twilio never opens a second stream for one call; a replayed webhook would.
 */
const CALL_CLAIM_TTL_SECONDS = 24 * 3600;

export function createStreamAuthoriser(d: StreamAuthDeps) {
  return async function authorise(
    start: StartInfo,
    upgradeSignature: string | undefined,
  ): Promise<Authorisation> {
    const tenantId = start.customParameters['tenant'] ?? '';
    const tenant = d.tenants.byId(tenantId);
    const refuse = (reason: string): Authorisation => ({
      ok: false,
      code: CloseCode.streamTokenInvalid,
      reason,
      outcome: 'rejected_token',
    });
    if (!tenant) return refuse('unknown tenant');
    if (tenant.twilio.accountSid !== start.accountSid) return refuse('account does not own tenant');
    if (d.validateSignatures && upgradeSignature !== undefined) {
      if (!tenantAuthTokens(tenant).some((token) => validateUpgradeSignature(token, upgradeSignature, d.streamUrl))) {
        return {
          ok: false,
          code: CloseCode.signatureInvalid,
          reason: 'upgrade signature invalid',
          outcome: 'rejected_token',
        };
      }
    }
    const expect = { callSid: start.callSid, tenantId, now: d.now() };
    const token = start.customParameters['token'];
    let check = verifyStreamToken(d.secret, token, expect);
    // Only a signature mismatch can mean "signed with the previous secret"; other reasons are final.
    for (const old of d.previousSecrets ?? []) {
      if (check.ok || check.reason !== 'bad_signature') break;
      check = verifyStreamToken(old, token, expect);
    }
    if (!check.ok) return refuse(`stream token ${check.reason}`);
    // Atomic across pods (Redis SET NX): a replayed token fails everywhere.
    if (!(await d.store.consumeOnce(`stream-token:${check.claims.jti}`, CONSUMED_TTL_SECONDS))) {
      return refuse('stream token already used');
    }
    const resume = start.customParameters['resume'];
    if (resume !== undefined) return resumeStream(start, tenant, resume, refuse);
    // Twilio signatures carry no timestamp: a replayed voice webhook mints a fresh token for the same
    // CallSid. One stream per CallSid, claimed once across pods (Redis SET NX), whatever the token.
    if (!(await d.store.consumeOnce(`stream-call:${start.callSid}`, CALL_CLAIM_TTL_SECONDS))) {
      return refuse('call already had a stream (replayed webhook)');
    }
    return { ok: true, tenant };
  };

  /** A moved call's new stream: the resume token, once, then adopt the call its old pod released. */
  async function resumeStream(
    start: StartInfo,
    tenant: Tenant,
    token: string,
    refuse: (reason: string) => Authorisation,
  ): Promise<Authorisation> {
    const expect = { callSid: start.callSid, tenantId: tenant.id, now: d.now() };
    let check: ResumeTokenCheck = verifyResumeToken(d.secret, token, expect);
    for (const old of d.previousSecrets ?? []) {
      if (check.ok || check.reason !== 'bad_signature') break;
      check = verifyResumeToken(old, token, expect);
    }
    if (!check.ok) return refuse(`resume token ${check.reason}`);
    const reason = check.claims.reason;
    const refused = (a: Authorisation, detail: Record<string, unknown>): Authorisation => {
      d.metrics?.callMigrations.labels(reason, 'resume_refused').inc();
      d.log?.warn({ code: 'conflict', callSid: start.callSid, reason, ...detail }, 'resume stream refused');
      return a;
    };
    if (!(await d.store.consumeOnce(`resume-token:${check.claims.jti}`, CONSUMED_TTL_SECONDS))) {
      return refused(refuse('resume token already used'), { why: 'replayed' });
    }
    const adopted = await d.store.adoptCall(start.callSid, {
      pod: d.pod,
      streamSid: start.streamSid,
      now: d.now(),
      ...(start.traceparent !== undefined ? { traceparent: start.traceparent } : {}),
    });
    if (!adopted.ok) {
      const why = adopted.reason === 'live' ? 'call is live on another pod' : adopted.reason === 'ended' ? 'call already ended' : 'call unknown';
      return refused({ ok: false, code: CloseCode.callHeldElsewhere, reason: why, outcome: 'rejected_token' }, { why: adopted.reason });
    }
    return { ok: true, tenant, resume: { record: adopted.record, migration: adopted.migration } };
  }
}
