/**
 * What a call bridge is given: the sockets' other ends it reaches through ports (the model connector,
 * the stream's authorisation, the pod's admission), its stores and metrics, and its limits.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { CloseCode } from '../errors.js';
import type { RealtimeSocket, SessionShape } from '../model/index.js';
import type { CallStore } from '../store/index.js';
import type { RelayMetrics } from '../telemetry/index.js';
import type { Tenant } from '../tenants/index.js';
import type { ToolRunner } from '../tools/index.js';
import type { UsageMeterFactory } from '../usage/index.js';
import type { CallLifecycleListener, CallOutcome } from './lifecycle.js';
import type { ResumeContext } from './resume.js';

export interface StartInfo {
  streamSid: string;
  callSid: string;
  accountSid: string;
  customParameters: Readonly<Record<string, string>>;
  /** This leg's call span (W3C traceparent): stored with the call so a later leg links to it. */
  traceparent?: string;
}

export type Authorisation =
  /** `resume`: a moved call this pod adopted (resume.ts): re-create its conversation, do not greet. */
  | { ok: true; tenant: Tenant; resume?: ResumeContext }
  | { ok: false; code: CloseCode; reason: string; outcome: CallOutcome };

export interface ModelConnector {
  readonly provider: 'openai' | 'azure' | 'sim';
  readonly shape: SessionShape;
  /** The caller-transcript model (on Azure a deployment name); null: none; absent: the protocol default. */
  readonly transcriptionModel?: string | null;
  connect(signal: AbortSignal, log: Logger): Promise<RealtimeSocket>;
}

export interface BridgeLimits {
  twilioMaxBackpressureBytes: number;
  /** Model audio per mark toward Twilio, or one per delta when a delta is longer (0/absent: a mark per delta). */
  twilioMarkIntervalMs?: number;
  modelMaxBufferedBytes: number;
  twilioMaxMessageBytes: number;
  callerAudioRingFrames: number;
  maxCallMs: number;
  modelConnectTimeoutMs: number;
  frameMetrics: boolean;
  /** How long an ending call may wait for its goodbye to play before the line is closed anyway. */
  windDownMs: number;
  /** Re-open the model session at the first pause after this long, before the API's 60-minute cap (0/absent = off). */
  modelSessionRenewMs?: number;
  /** From the socket's open to an authorised `start`; past it the socket closes with 4007. 0/absent = none. */
  startTimeoutMs?: number;
  /** The stall rule (stall-watch.ts): caller talking this long, model silent since: re-open (0/absent = off). */
  modelStallMs?: number;
  /** Caller frames per `input_audio_buffer.append` (append-batcher.ts; 1/absent = one per frame). */
  modelAppendFrames?: number;
  /** Most model audio joined into one media message once Twilio's buffer is ahead (twilio-playout.ts; 0/absent = off). */
  twilioCoalesceMs?: number;
}

/** Why the pod turns an authorised call away (over capacity, draining). */
export interface AdmissionRefusal {
  code: CloseCode;
  reason: string;
  outcome: CallOutcome;
}

export interface BridgeDeps {
  listeners?: readonly CallLifecycleListener[];
  clock: Clock;
  store: CallStore;
  tools: ToolRunner;
  metrics: RelayMetrics;
  log: Logger;
  model: ModelConnector;
  authorise(start: StartInfo, upgradeSignature: string | undefined): Promise<Authorisation>;
  /**
   * Called once a start is authorised, before the call counts: only authorised calls take pod
   * capacity. A refusal closes the socket with its code; absent = always admitted.
   */
  admit?(): AdmissionRefusal | undefined;
  limits: BridgeLimits;
  pod: string;
  /** Usage metering (tokens, seconds, cost) per authorised call. */
  usage?: UsageMeterFactory;
}
