export * from './tool-runner.js';
export * from './builtin-runner.js';
