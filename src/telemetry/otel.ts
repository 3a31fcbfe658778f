/**
 * Starts and stops the OpenTelemetry trace SDK: provider, OTLP/HTTP exporter, W3C propagator, context
 * manager. Span names and where spans begin and end belong to tracing.ts and src/call/ (the call's
 * ledger, model session, conversation and tool dispatch).
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { detectResources, envDetector, hostDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { SwitchboardError } from '../errors.js';

export type { SpanProcessor };

export interface TracingOptions {
  /** `service.name` on every span (OTEL_SERVICE_NAME, default `switchboard`). */
  serviceName: string;
  /** OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL; spans go to `<endpoint>/v1/traces`. */
  otlpEndpoint: string | undefined;
  /** Extra processors (tests pass an in-memory exporter behind a SimpleSpanProcessor). */
  spanProcessors?: readonly SpanProcessor[];
}

export interface Tracing {
  /** Flush spans still queued, stop the exporter and unregister the global provider. */
  shutdown(): Promise<void>;
}

/**
 * The OTLP/HTTP traces URL for a base endpoint, as the OTLP exporter spec builds it from
 * OTEL_EXPORTER_OTLP_ENDPOINT: the signal path is appended to whatever path the base has.
 */
export function otlpTracesUrl(endpoint: string): string {
  return endpoint.replace(/\/+$/, '') + '/v1/traces';
}

/**
 * Start tracing, or return undefined when there is nowhere to send spans (no endpoint, no processor):
 * the OpenTelemetry API then stays a no-op and a call's spans cost a few allocations.
 *
 * A BasicTracerProvider rather than NodeSDK: NodeSDK takes ~1.2 s to import (every exporter, gRPC,
 * metrics and logs SDKs) and registers a logs pipeline by default; we export traces only, and no
 * auto-instrumentation (it would add a span per HTTP request and upgrade). OTEL_TRACES_SAMPLER,
 * OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS are still honoured: the
 * provider, batch processor, env detector and exporter read them, as the OTel spec wants.
 */
export function startTracing(o: TracingOptions): Tracing | undefined {
  const processors: SpanProcessor[] = [...(o.spanProcessors ?? [])];
  if (o.otlpEndpoint !== undefined) {
    // Batched: spans are queued in memory and posted every few seconds, never on the call's path.
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: otlpTracesUrl(o.otlpEndpoint) })));
  }
  if (processors.length === 0) return undefined;

  const resource = detectResources({ detectors: [envDetector, hostDetector] }).merge(
    resourceFromAttributes({ 'service.name': o.serviceName }),
  );
  const provider = new BasicTracerProvider({ resource, spanProcessors: processors });
  const contextManager = new AsyncLocalStorageContextManager().enable();

  // The API keeps one global provider and refuses a second silently; say it loudly instead.
  if (!trace.setGlobalTracerProvider(provider)) {
    contextManager.disable();
    throw new SwitchboardError('internal', 'an OpenTelemetry tracer provider is already registered in this process');
  }
  // The call's parts pass parent spans explicitly; the context manager serves code that uses
  // context.with() (and the exporter, which suppresses tracing of its own requests through it).
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());

  let done: Promise<void> | undefined;
  return {
    shutdown() {
      done ??= provider.shutdown().finally(() => {
        trace.disable();
        context.disable();
        propagation.disable();
      });
      return done;
    },
  };
}
