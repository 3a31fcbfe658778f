/**
 * Every Prometheus metric the relay exports, on one registry per relay instance (tests run several
 * relays in one process). Names are part of the product contract (README, Metrics); label values are bounded sets, never CallSid.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CALL_OUTCOMES } from '../call/lifecycle.js';
import { FrameHistogram } from './frame-histogram.js';
import { createUsageMetrics, type UsageMetrics } from './usage-metrics.js';

/** The `outcome` label's values, defined with the call (call/lifecycle.ts). */

export type Direction = 'caller_to_model' | 'model_to_caller';

/** Why a frame was not relayed; a closed set so the label stays bounded. */
export const DROP_REASONS = [
  'model_not_ready', // caller audio overflowed the ring while the model connected/reconnected
  'model_backpressure', // upstream socket's bufferedAmount past its cap
  'caller_backpressure', // uWS send buffer toward Twilio past its cap
  'invalid_frame', // a media message that failed validation
  'stale_response', // model audio for a response already cancelled by barge-in
  'call_ending', // audio after the call started to end
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** Why a call moved between pods (switchboard_call_migrations_total's `reason`). */
export const MIGRATION_REASONS = ['drain', 'crash'] as const;
/**
 * The receiving side's outcomes of switchboard_call_migrations_total (the sending side's are the
 * migrator's, server/migrator.ts): `resumed` (this pod adopted the moved call and relays it),
 * `resume_failed` (adopted, but its new leg never relayed: model unreachable, caller gone),
 * `resume_refused` (the resume stream was turned away: replayed token, call held elsewhere or over).
 */
export const RESUME_OUTCOMES = ['resumed', 'resume_failed', 'resume_refused'] as const;
/** The audible gap of a move: most of it the new model session's connect. */
export const MIGRATION_GAP_BUCKETS = [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];

/** Tenants whose zero series are pre-created; past this, series appear on first use only. */
const MAX_TENANT_SERIES = 1000;

/** Sub-millisecond buckets: the relay's own work per frame is microseconds (docs/capacity.md). */
export const FRAME_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];
export const TURN_BUCKETS = [0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];
export const TOOL_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const CONNECT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10];

export interface RelayMetrics {
  readonly registry: Registry;
  readonly activeCalls: Gauge;
  /** MAX_ACTIVE_CALLS (0 = no cap): the capacity alert and dashboard read it, so no copy of the number drifts. */
  readonly maxActiveCalls: Gauge;
  readonly callsTotal: Counter<'outcome' | 'tenant'>;
  readonly frameRelay: FrameHistogram<'direction'>;
  readonly framesDropped: Counter<'direction' | 'reason'>;
  readonly turnLatency: Histogram;
  readonly toolCall: Histogram<'tool' | 'outcome'>;
  readonly upstreamConnect: Histogram<'provider' | 'outcome'>;
  readonly eventLoopLag: Gauge;
  readonly twilioMessagesInvalid: Counter<'reason'>;
  readonly bargeIns: Counter;
  /** Caller turns the model could not transcribe (`input_audio_transcription.failed`). */
  readonly transcriptionFailures: Counter;
  /** Media-socket events of a kind Twilio may add later: ignored, never fatal. */
  readonly twilioEventsUnknown: Counter;
  readonly webhooks: Counter<'route' | 'outcome'>;
  readonly tenantBusy: Counter<'tenant'>;
  /** Tokens, call seconds, estimated cost and budgets (usage-metrics.ts). */
  readonly usage: UsageMetrics;
  /** Model errors, failed responses and dead sockets, by code (a closed set: model-errors.ts). */
  readonly modelErrors: Counter<'code'>;
  /** Calls moved between pods: reason `drain` (this pod moved it) or `crash` (resumed after its pod died), by outcome. */
  readonly callMigrations: Counter<'reason' | 'outcome'>;
  /** Old leg's stop to the new leg relaying, per move (the receiving pod observes it). */
  readonly migrationGap: Histogram<'reason'>;
  /**
   * Create the tenant's outcome series at 0 the first time it is seen: rate() over a counter that
   * appears at 1 misses that first call, so rare failures would never alert.
   */
  noteTenant(tenantId: string): void;
  /** Stop background samplers (event-loop monitor). */
  close(): void;
}

export function createMetrics(opts: { defaultMetrics?: boolean; prefix?: string } = {}): RelayMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });

  // The histogram's samples include the sampling interval itself: an idle loop reads ~10 ms at a
  // 10 ms resolution, so the gauge reports the delay beyond it.
  const LOOP_RESOLUTION_MS = 10;
  const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  loop.enable();

  const seenTenants = new Set<string>();
  const m: RelayMetrics = {
    registry,
    activeCalls: new Gauge({
      name: 'switchboard_active_calls',
      help: 'Calls with a live media stream on this pod (the autoscaling signal).',
      registers: [registry],
    }),
    maxActiveCalls: new Gauge({
      name: 'switchboard_max_active_calls',
      help: 'Live calls this pod takes before refusing new streams (MAX_ACTIVE_CALLS; 0 = no cap).',
      registers: [registry],
    }),
    callsTotal: new Counter({
      name: 'switchboard_calls_total',
      help: 'Calls ended, by outcome and tenant (tenants are a bounded, operator-defined set).',
      labelNames: ['outcome', 'tenant'],
      registers: [registry],
    }),
    frameRelay: new FrameHistogram(
      'switchboard_frame_relay_seconds',
      "Time from a frame's arrival on one socket to its hand-off to the other; caller_to_model until the append carrying it is sent (the MODEL_APPEND_FRAMES hold included).",
      'direction',
      FRAME_BUCKETS,
      registry,
    ),
    framesDropped: new Counter({
      name: 'switchboard_frames_dropped_total',
      help: 'Audio frames not relayed, by direction and reason.',
      labelNames: ['direction', 'reason'],
      registers: [registry],
    }),
    turnLatency: new Histogram({
      name: 'switchboard_turn_latency_seconds',
      help: 'Caller stops speaking -> first model audio frame sent to Twilio.',
      buckets: TURN_BUCKETS,
      registers: [registry],
    }),
    toolCall: new Histogram({
      name: 'switchboard_tool_call_seconds',
      help: 'Tool call duration, by tool and outcome.',
      labelNames: ['tool', 'outcome'],
      buckets: TOOL_BUCKETS,
      registers: [registry],
    }),
    upstreamConnect: new Histogram({
      name: 'switchboard_upstream_connect_seconds',
      help: 'Time to open the model socket and have the session configured.',
      labelNames: ['provider', 'outcome'],
      buckets: CONNECT_BUCKETS,
      registers: [registry],
    }),
    eventLoopLag: new Gauge({
      name: 'switchboard_event_loop_lag_seconds',
      help: 'Event-loop delay p99 beyond the 10 ms sampling interval, since the previous scrape.',
      registers: [registry],
      collect() {
        this.set(Math.max(0, loop.percentile(99) / 1e9 - LOOP_RESOLUTION_MS / 1000));
        loop.reset();
      },
    }),
    twilioMessagesInvalid: new Counter({
      name: 'switchboard_twilio_messages_invalid_total',
      help: 'Media-socket messages rejected, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    bargeIns: new Counter({
      name: 'switchboard_barge_ins_total',
      help: 'Times the caller interrupted the assistant.',
      registers: [registry],
    }),
    transcriptionFailures: new Counter({
      name: 'switchboard_transcription_failures_total',
      help: 'Caller turns the model could not transcribe (no caller transcript for them).',
      registers: [registry],
    }),
    twilioEventsUnknown: new Counter({
      name: 'switchboard_twilio_events_unknown_total',
      help: 'Well-formed media-socket messages with an event name the relay does not know (ignored).',
      registers: [registry],
    }),
    tenantBusy: new Counter({
      name: 'switchboard_tenant_busy_total',
      help: 'Calls turned away because the tenant was at its concurrency limit.',
      labelNames: ['tenant'],
      registers: [registry],
    }),
    modelErrors: new Counter({
      name: 'switchboard_model_errors_total',
      help: 'Model error events, failed responses and dead model sockets, by kind and code.',
      labelNames: ['kind', 'code'],
      registers: [registry],
    }),
    callMigrations: new Counter({
      name: 'switchboard_call_migrations_total',
      help: 'Live calls moved to another pod (reason drain) or resumed after their pod died (reason crash), by outcome.',
      labelNames: ['reason', 'outcome'],
      registers: [registry],
    }),
    webhooks: new Counter({
      name: 'switchboard_webhooks_total',
      help: 'Twilio webhooks handled, by route and outcome.',
      labelNames: ['route', 'outcome'],
      registers: [registry],
    }),
    migrationGap: new Histogram({
      name: 'switchboard_migration_gap_seconds',
      help: "A moved call's audible gap: the old stream's stop to the new stream relaying.",
      labelNames: ['reason'],
      buckets: MIGRATION_GAP_BUCKETS,
      registers: [registry],
    }),
    usage: createUsageMetrics(registry),
    noteTenant(tenantId) {
      if (seenTenants.has(tenantId) || seenTenants.size >= MAX_TENANT_SERIES) return;
      seenTenants.add(tenantId);
      for (const o of CALL_OUTCOMES) m.callsTotal.labels(o, tenantId).inc(0);
    },
    close() {
      loop.disable();
    },
  };
  for (const reason of DROP_REASONS) {
    m.framesDropped.labels('caller_to_model', reason).inc(0);
    m.framesDropped.labels('model_to_caller', reason).inc(0);
  }
  for (const reason of MIGRATION_REASONS) {
    for (const outcome of RESUME_OUTCOMES) m.callMigrations.labels(reason, outcome).inc(0);
    m.migrationGap.labels(reason);
  }
  // Pre-create the label sets dashboards expect, so series exist from the first scrape.
  m.frameRelay.zero({ direction: 'caller_to_model' });
  m.frameRelay.zero({ direction: 'model_to_caller' });
  return m;
}
