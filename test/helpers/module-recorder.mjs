/**
 * Preload for a child relay (`node --import tsx --import ./test/helpers/module-recorder.mjs ...`):
 * records the URL of every module the process resolves and, on SIGUSR2, prints them as one stdout
 * line, `loaded-modules: [...]`, so a test can see what a start really loaded. The handler is in
 * place before the process's own code runs, so the signal cannot arrive too early.
 */
import { writeSync } from 'node:fs';
import process from 'node:process';
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';

const urls = new Set();
const { port1, port2 } = new MessageChannel();
port1.on('message', (url) => urls.add(url));
port1.unref();
register('./module-recorder-hooks.mjs', import.meta.url, { data: { port: port2 }, transferList: [port2] });
process.on('SIGUSR2', () => {
  writeSync(1, `loaded-modules: ${JSON.stringify([...urls])}\n`);
});
