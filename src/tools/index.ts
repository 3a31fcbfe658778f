export * from './tool-runner.js';
export * from './builtin-runner.js';
export { summariseCall, callSummaryListener, type CallSummary } from './create-call-summary.js';
export { signWebhook, webhookKey, vetTarget } from './webhook-tools.js';
export { isBlockedAddress, webhookUrlProblem } from '../ssrf.js';
export { confirmationId } from './book-appointment.js';
