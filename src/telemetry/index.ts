export * from './metrics.js';
export * from './usage-metrics.js';
export * from './logger.js';
export * from './tracing.js';
