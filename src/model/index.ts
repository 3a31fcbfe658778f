/**
 * The model folder's public surface: the realtime wire protocol (pure) and the model socket.
 * What to say when (session set-up, barge-in, tools) is left to src/call/ (model-session.ts,
 * conversation.ts, tool-dispatch.ts).
 */
export * from './client-events.js';
export * from './server-events.js';
export * from './parse-model-event.js';
export * from './realtime-connection.js';
export * from './model-errors.js';
export * from './session-rules.js';
export * from './response-usage.js';
