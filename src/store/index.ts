export * from './call-store.js';
export * from './memory-store.js';
