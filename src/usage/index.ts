/**
 * The usage folder's public surface: per-call metering, prices, metrics and tenant budgets.
 * Storage lives in src/store/ (usage-store.ts); the wire shape of `usage` in src/model/.
 */
export * from './price-table.js';
export * from './usage-tracker.js';
export * from './budget.js';
