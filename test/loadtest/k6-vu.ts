/**
 * One k6 VU in a worker thread: installs the k6 module fakes (k6-hooks.mjs over k6-api.ts), imports
 * the script in its own init context, then runs `default()` for the host's iterations.
 */
import { register } from 'node:module';
import { workerData, type MessagePort } from 'node:worker_threads';
import { attach, nextIteration, post, samples, setIteration, setVu } from './k6-api.js';

interface VuData {
  port: MessagePort;
  signal: Int32Array;
  scriptUrl: string;
  env: Record<string, string>;
  vu: number;
}

const data = workerData as VuData;
attach(data.port, data.signal);
setVu(data.vu);
const g = globalThis as unknown as { __ENV: Record<string, string>; __VU: number; __ITER: number };
g.__ENV = { ...data.env };
g.__VU = data.vu;
g.__ITER = 0;
register(new URL('./k6-hooks.mjs', import.meta.url), { data: { apiUrl: new URL('./k6-api.ts', import.meta.url).href } });

const script = (await import(data.scriptUrl)) as { options?: unknown; default: () => void };
post({ t: 'options', options: script.options ?? null });
// Bounded by the host's iteration count.
for (let n = nextIteration(); n >= 0; n = nextIteration()) {
  setIteration(n);
  try {
    script.default();
  } catch (err) {
    post({ t: 'iteration-error', error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  }
  g.__ITER++;
}
post({ t: 'samples', samples: samples() });
data.port.close();
