/**
 * Entry point: config -> the relay (server/app.ts, the composition root), then signal handling. Nothing else.
 * A bad configuration prints one line per problem and exits 1.
 */
import { loadConfig } from './config.js';
import { SwitchboardError } from './errors.js';
import { startRelay } from './server/index.js';
import { createLogger, prettyLogs } from './telemetry/index.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof SwitchboardError) {
      for (const line of err.message.split('\n')) console.error(`switchboard: invalid configuration: ${line}`);
      process.exit(1);
    }
    throw err;
  }
  const log = createLogger({ level: config.logLevel, pretty: prettyLogs(config.logFormat, process.stdout.isTTY === true) });
  // The OpenTelemetry SDK (otel.ts, not re-exported by telemetry/index) is loaded only when there is
  // a collector to export to; without one the API stays a no-op and the SDK costs no memory.
  const tracing =
    config.otlpEndpoint === undefined
      ? undefined
      : (await import('./telemetry/otel.js')).startTracing({ serviceName: config.serviceName, otlpEndpoint: config.otlpEndpoint });
  let relay;
  try {
    relay = await startRelay(config, { log });
  } catch (err) {
    if (err instanceof SwitchboardError) {
      const what = err.code === 'config_invalid' ? 'invalid tenants' : `cannot start: ${err.code}`;
      for (const line of err.message.split('\n')) console.error(`switchboard: ${what}: ${line}`);
      process.exit(1);
    }
    throw err;
  }

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: closing now');
      void relay
        .close()
        .then(() => tracing?.shutdown())
        .then(() => process.exit(0));
      return;
    }
    stopping = true;
    log.info({ signal, drainTimeoutSeconds: config.drainTimeoutSeconds }, 'shutting down: draining live calls');
    void relay
      .drain()
      .then(async ({ remaining }) => {
        log.info({ remaining }, 'drain finished');
        await relay.close();
        await tracing?.shutdown();
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error({ err }, 'drain failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
