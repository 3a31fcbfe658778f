export * from './call-bridge.js';
export * from './call-state.js';
export * from './playback.js';
export * from './audio-ring.js';
export * from './lifecycle.js';
