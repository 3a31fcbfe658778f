export * from './sim-model.js';
export * from './sim-caller.js';
