export * from './call-store.js';
export * from './memory-store.js';
export * from './redis-store.js';
export * from './redis-connection.js';
export * from './heartbeat.js';
export * from './usage-store.js';
export * from './memory-usage-store.js';
export * from './redis-usage-store.js';
