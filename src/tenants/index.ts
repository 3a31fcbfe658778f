export * from './tenant.js';
export * from './tenant-registry.js';
