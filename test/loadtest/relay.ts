/**
 * A real relay in-process for the load-test tests: native uWS on a free loopback port, PUBLIC_URL
 * equal to its real URL (signatures and TwiML as Twilio would see them), the load-test model mode.
 */
import { loadConfig } from '../../src/config.js';
import { startRelay, type Relay } from '../../src/server/app.js';
import { freePort } from '../helpers/redis-server.js';

export async function startLoadTestRelay(): Promise<Relay> {
  const port = await freePort();
  const config = loadConfig({
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    SIM_MODEL_MODE: 'loadtest',
    LOG_LEVEL: 'silent',
  });
  return startRelay(config);
}
