export * from './tenant.js';
export * from './tenant-registry.js';
export * from './store-registry.js';
export * from './leases.js';
export * from './seed-tenants.js';
export * from './tenants-file.js';
export * from './tenant-store.js';
export * from './lease-store.js';
