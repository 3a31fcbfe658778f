// @ts-check
/**
 * `k6 run loadtest/barge-in.js`: the barge-in scenario (lib/scenarios.js) without -e SCENARIO.
 * The call itself is lib/k6-adapter.js; see call-storm.js for the SCENARIO-selected entry.
 */
import { configFromEnv, k6Options, runCall } from './lib/k6-adapter.js';

const config = configFromEnv({ ...__ENV, SCENARIO: 'barge-in' });

/** k6 options: the barge-in executor and its thresholds. */
export const options = k6Options(config);

/** One VU iteration: one phone call. */
export default function () {
  runCall(config);
}
