/**
 * A live call as a draining pod's migrator sees it, and when it may move: at a pause, not in the
 * middle of a tool, a spoken answer or a hand-off. The migrator (server/migrator.ts) owns the moving.
 */
import type { Tenant } from '../tenants/index.js';
import type { CallState } from './call-state.js';

/**
 * `ready`; `busy` (a tool is running, its answer or other speech is still being generated or
 * played: move it once that completes); `ending` (a goodbye or a hand-off is under way: it ends by
 * itself, leave it); `gone` (ended meanwhile).
 */
export type MigrationReadiness = 'ready' | 'busy' | 'ending' | 'gone';

/** One live call, offered to the migrator by its bridge. */
export interface MigratableCall {
  readonly callSid: string;
  readonly tenant: Tenant;
  /** The stream parameters the call started with (for the resume TwiML): `to`, the masked `from`. */
  readonly parties: { readonly to?: string; readonly fromMasked?: string };
  migrationReadiness(): MigrationReadiness;
  /** The next `stop` on this stream is Twilio moving the call: end this side without ending the call. */
  beginMigration(): void;
  /** The move did not happen: the call stays here (or, if its stream stopped meanwhile, it ended). */
  cancelMigration(): void;
}

/** What the call knows that decides readiness (call-move.ts gathers it; pure, so the rule is tested on its own). */
export interface MigrationFacts {
  state: CallState['kind'];
  /** Tool calls running (also of a session since lost), or answered but their spoken follow-up not yet asked for. */
  toolsOpen: boolean;
  /** A tool returned end_call / transfer: the wind-down starts when its response is done. */
  effectPending: boolean;
  /** A tool handed the call to a human through Twilio's REST API: Twilio ends this stream. */
  restHandOff: boolean;
  /** A model response is active, requested or queued; or the caller is speaking, or is owed an answer. */
  responding: boolean;
  /** Assistant audio sent to Twilio and not yet played (a move would drop it). */
  unplayed: boolean;
}

export function migrationReadiness(f: MigrationFacts): MigrationReadiness {
  if (f.state === 'ended') return 'gone';
  if (f.state === 'ending' || f.restHandOff) return 'ending';
  if (f.state !== 'live') return 'busy';
  if (f.toolsOpen || f.effectPending || f.responding || f.unplayed) return 'busy';
  return 'ready';
}
