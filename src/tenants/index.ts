export * from './tenant.js';
export * from './tenant-registry.js';
export * from './store-registry.js';
export * from './leases.js';
export * from './open-tenants.js';
export * from './tenants-file.js';
