/**
 * The model connector a relay's calls use, built from config. The simulated model is loaded (a
 * dynamic import) and started only for MODEL_PROVIDER=sim: an openai or azure relay never loads src/sim.
 */
import type { Logger } from 'pino';
import type { ModelConnector } from '../call/index.js';
import type { Config } from '../config.js';
import { connectRealtime, modelEndpoint } from '../model/index.js';
import type { SimModel } from '../sim/sim-model.js';

export interface ConfiguredModel {
  model: ModelConnector;
  /** The simulated model this process started (MODEL_PROVIDER=sim); the caller closes it. */
  sim: SimModel | undefined;
}

export async function modelFromConfig(config: Readonly<Config>, log: Logger): Promise<ConfiguredModel> {
  let sim: SimModel | undefined;
  if (config.model.provider === 'sim') {
    const { startSimModel } = await import('../sim/sim-model.js');
    sim = await startSimModel({ mode: config.model.mode, log: log.child({ component: 'sim-model' }) });
    log.debug({ mode: config.model.mode, url: sim.url }, 'simulated model started (MODEL_PROVIDER=sim)');
  }
  const ep = modelEndpoint(config.model, sim?.url);
  if (ep.provider === 'azure' && config.transcriptionModel === undefined) {
    log.warn('REALTIME_TRANSCRIPTION_MODEL is not set: on Azure it must name a transcription deployment, else no caller transcripts');
  }
  const model: ModelConnector = {
    provider: ep.provider,
    shape: ep.shape,
    ...(config.transcriptionModel !== undefined ? { transcriptionModel: config.transcriptionModel } : {}),
    connect: (signal, callLog) =>
      connectRealtime(ep, {
        timeoutMs: config.modelConnectTimeoutMs,
        attempts: config.modelConnectAttempts,
        signal,
        log: callLog,
        ...(config.modelKeepaliveIntervalMs > 0
          ? { keepalive: { intervalMs: config.modelKeepaliveIntervalMs, timeoutMs: config.modelKeepaliveTimeoutMs } }
          : {}),
      }),
  };
  return { model, sim };
}
