// Worker bootstrap for the k6 shim: TypeScript via tsx, then the VU entry (k6-vu.ts).
// Plain JS because a worker's first module is loaded before any loader hook exists.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
