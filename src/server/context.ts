/**
 * What every route module receives: the relay's dependencies and a few shared helpers, built once
 * in app.ts. Route modules register handlers on the uWS app and hold no state of their own.
 */
import type { Logger } from 'pino';
import type { TemplatedApp } from 'uWebSockets.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { CallStore } from '../store/index.js';
import type { RelayMetrics } from '../telemetry/index.js';
import type { TenantDirectory } from '../tenants/index.js';
import type { ToolRunner } from '../tools/index.js';

export interface RelayContext {
  readonly app: TemplatedApp;
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly metrics: RelayMetrics;
  readonly store: CallStore;
  readonly tenants: TenantDirectory;
  readonly tools: ToolRunner;
  readonly clock: Clock;
  readonly pod: string;
  /** The <Stream url> written in TwiML (what Twilio dials and signs). */
  readonly streamUrl: string;
  isDraining(): boolean;
  /** False while the tenant registry waits for its store (Redis down at start). */
  tenantsReady(): boolean;
}
