export * from './app.js';
export * from './uws.js';
