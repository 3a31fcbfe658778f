// @ts-check
/**
 * The k6 call storm: `k6 run -e SCENARIO=storm -e BASE_URL=… loadtest/call-storm.js`. Each iteration
 * is one call placed exactly as Twilio would; scenarios, metrics and thresholds come from lib/.
 */
import { configFromEnv, k6Options, runCall } from './lib/k6-adapter.js';

const config = configFromEnv(__ENV);

/** k6 options: the scenario's executor and the thresholds that fail the run. */
export const options = k6Options(config);

/** One VU iteration: one phone call. */
export default function () {
  runCall(config);
}
