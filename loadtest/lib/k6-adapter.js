// @ts-check
/**
 * The k6 adapter of the simulated Twilio caller: -e variables, k6 options, and one call per VU
 * iteration over k6/http + k6/ws with k6 metrics. Protocol: caller-core.js and twilio-http.js in
 * src/sim/portable (the simulator's, plain JS k6 runs too); scenarios: scenarios.js.
 * A call moves to a new stream as Twilio moves it: after the relay closes a stream, the after-stream
 * `<Redirect>` is followed; with TWILIO_API_BASE_URL (the simulated Twilio REST API), REST call
 * updates reach the call by polling it (k6 cannot receive HTTP, and k6/ws runs one socket at a time).
 */
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import http from 'k6/http';
import { Counter, Rate, Trend } from 'k6/metrics';
import ws from 'k6/ws';
import { FRAME_MS } from '../../src/sim/portable/audio.js';
import { CallerSession } from '../../src/sim/portable/caller-core.js';
import { MAX_LEGS, afterLeg, buildVoiceWebhook, parseTwiml, twilioSignature } from '../../src/sim/portable/twilio-http.js';
import { METRICS, callOutcomeMetrics, callScript, frameGapTap, getScenario, k6ScenarioOptions, scaleScenario, streamDialUrl } from './scenarios.js';

/**
 * What a run targets, from k6's `-e` variables (the in-cluster Job passes exactly these):
 * BASE_URL (where to send the webhook and open the stream), PUBLIC_URL (the relay's PUBLIC_URL,
 * which signatures cover; default BASE_URL), SCENARIO, TENANT_NUMBER, ACCOUNT_SID,
 * TWILIO_AUTH_TOKEN, and optionally SCALE and DURATION (seconds) to resize the scenario, and
 * TWILIO_API_BASE_URL (the simulated Twilio REST API the relays use: calls poll it for updates).
 * Defaults are the embedded demo tenant of src/tenants/tenant.ts.
 * @typedef {{ baseUrl: string, publicUrl: string, scenario: import('./scenarios.js').Scenario,
 *   to: string, from: string, accountSid: string, authToken: string, twilioApiUrl: string }} K6Config
 */

/** @param {Record<string, string | undefined>} env @returns {K6Config} */
export function configFromEnv(env) {
  const baseUrl = (env.BASE_URL || 'http://localhost:8080').replace(/\/+$/, '');
  const scale = env.SCALE ? Number(env.SCALE) : undefined;
  const durationS = env.DURATION ? Number(env.DURATION) : undefined;
  let scenario = getScenario(env.SCENARIO || 'smoke');
  if (scale !== undefined || durationS !== undefined) {
    scenario = scaleScenario(scenario, { ...(scale !== undefined ? { scale } : {}), ...(durationS !== undefined ? { durationS } : {}) });
  }
  return {
    baseUrl,
    publicUrl: (env.PUBLIC_URL || baseUrl).replace(/\/+$/, ''),
    scenario,
    to: env.TENANT_NUMBER || '+15005550006',
    from: env.CALLER_NUMBER || '+15005550100',
    accountSid: env.ACCOUNT_SID || 'AC00000000000000000000000000000000',
    authToken: env.TWILIO_AUTH_TOKEN || 'demo-auth-token-not-secret',
    twilioApiUrl: (env.TWILIO_API_BASE_URL || '').replace(/\/+$/, ''),
  };
}

/**
 * k6 `options` for the configured scenario: one executor named after it, its thresholds, and the
 * trend stats the thresholds and the report read.
 * @param {K6Config} cfg
 */
export function k6Options(cfg) {
  return {
    scenarios: { [cfg.scenario.name]: k6ScenarioOptions(cfg.scenario) },
    thresholds: cfg.scenario.thresholds,
    summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  };
}

// Metrics are created in the init context, once per VU, as k6 requires.
const turnLatency = new Trend(METRICS.turnLatency, true);
const frameGap = new Trend(METRICS.frameGap, true);
const webhookLatency = new Trend(METRICS.webhookLatency, true);
const callDuration = new Trend(METRICS.callDuration, true);
const moveGap = new Trend(METRICS.moveGap, true);
const moveAudioGap = new Trend(METRICS.moveAudioGap, true);
const failureRate = new Rate(METRICS.failureRate);
const refusalRate = new Rate(METRICS.refusalRate);
/** @type {Record<string, Counter>} */
const counters = {};
for (const name of [METRICS.callsCompleted, METRICS.callsFailed, METRICS.callsRefused, METRICS.turns, METRICS.marksEchoed, METRICS.clears, METRICS.bargeIns, METRICS.dtmfSent, METRICS.moves]) {
  counters[name] = new Counter(name);
}

/** @param {string} key @param {string} data */
const hmacSha1Base64 = (key, data) => crypto.hmac('sha1', key, data, 'base64');

/** @param {Uint8Array} bytes */
function b64encode(bytes) {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  return encoding.b64encode(whole ? /** @type {ArrayBuffer} */ (bytes.buffer) : /** @type {ArrayBuffer} */ (bytes.slice().buffer), 'std');
}

/** @param {string} s */
const b64decode = (s) => new Uint8Array(encoding.b64decode(s, 'std'));

/** @param {'CA' | 'MZ'} prefix */
function randomSid(prefix) {
  const bytes = new Uint8Array(crypto.randomBytes(16));
  let hex = '';
  for (let i = 0; i < bytes.length; i++) hex += (/** @type {number} */ (bytes[i]) + 0x100).toString(16).slice(1);
  return prefix + hex;
}

/**
 * Place one call exactly as Twilio would and record it in the k6 metrics. Returns what happened
 * (the outcome and the caller-core report) for the script's own checks or logs.
 * @param {K6Config} cfg @param {number} [callIndex] spreads the scenario's call mix over calls
 */
export function runCall(cfg, callIndex = exec.scenario.iterationInTest) {
  const script = callScript(cfg.scenario.mix, callIndex);
  const callSid = randomSid('CA');
  const hook = buildVoiceWebhook({
    baseUrl: cfg.baseUrl,
    publicUrl: cfg.publicUrl,
    callSid,
    accountSid: cfg.accountSid,
    from: cfg.from,
    to: cfg.to,
    authToken: cfg.authToken,
    hmacSha1Base64,
  });
  /** @type {import('./scenarios.js').CallFacts} */
  const facts = { stage: 'unreachable', webhookStatus: null, closeCode: null, endedBy: null, errors: [], turns: [], turnsPlanned: script.turns.length };
  const res = http.post(hook.url, hook.body, { headers: hook.headers, tags: { name: 'twilio-voice' }, responseType: 'text', timeout: '10s' });
  if (res.status === 0) {
    return record({ ...facts, errors: [`cannot reach ${hook.url}: ${res.error}`] }, null);
  }
  webhookLatency.add(res.timings.duration);
  const body = typeof res.body === 'string' ? res.body : '';
  if (res.status < 200 || res.status >= 300) {
    return record({ ...facts, stage: 'rejected', webhookStatus: res.status, errors: [`webhook answered HTTP ${res.status}: ${body.slice(0, 200)}`] }, null);
  }
  /** @type {import('../../src/sim/portable/twilio-http.js').ParsedTwiml} */
  let twiml;
  try {
    twiml = parseTwiml(body);
  } catch (err) {
    return record({ ...facts, stage: 'rejected', webhookStatus: res.status, errors: [String(err)] }, null);
  }
  if (twiml.kind === 'other') return record({ ...facts, stage: 'not-connected', webhookStatus: res.status }, null);

  const call = { accountSid: cfg.accountSid, callSid, from: cfg.from, to: cfg.to, authToken: cfg.authToken, hmacSha1Base64 };
  const poll = cfg.twilioApiUrl ? { url: `${cfg.twilioApiUrl}/sim/calls/${callSid}`, after: 0 } : null;
  // Known to the simulated Twilio API from the start, so an update can find the call.
  if (poll) pollUpdate(poll, cfg.accountSid);
  let leg = twiml;
  const session = new CallerSession({
    callSid,
    accountSid: cfg.accountSid,
    streamSid: randomSid('MZ'),
    parameters: leg.parameters,
    script,
    b64encode,
    b64decode,
    clockMs: () => Date.now(),
    after: leg.after,
    url: leg.streamUrl,
    hooks: { onAudio: frameGapTap((gapMs) => frameGap.add(gapMs)) },
  });
  /** @type {string[]} */
  const streamErrors = [];
  for (let n = 1; ; n++) {
    const r = runLeg(cfg, session, leg, poll);
    if (n === 1 && !r.opened) {
      if (poll) http.del(poll.url, null, { tags: { name: 'sim-twilio' } });
      return record({ ...facts, stage: 'stream-failed', webhookStatus: res.status, errors: r.errors }, null);
    }
    streamErrors.push(...r.errors);
    if (!r.opened) {
      session.legFailed(r.errors[0] ?? 'the socket did not open');
      break;
    }
    const update = session.resumable ? r.update : undefined;
    // What Twilio runs next (twilio-http.js afterLeg), its TwiML fetches made here.
    const gen = afterLeg({ resumable: session.resumable, after: leg.after, call, ...(update ? { update } : {}) });
    let step = gen.next();
    while (!step.done) {
      const req = step.value;
      const at = req.url.startsWith(cfg.publicUrl) ? cfg.baseUrl + req.url.slice(cfg.publicUrl.length) : req.url;
      const got = http.request(req.method, at, req.body, { headers: req.headers, tags: { name: 'twilio-redirect' }, responseType: 'text', timeout: '10s' });
      step = gen.next(got.status === 0 ? { status: 0, body: '', error: String(got.error) } : { status: got.status, body: typeof got.body === 'string' ? got.body : '' });
    }
    const next = step.value;
    if (next.kind === 'end') break;
    if (n >= MAX_LEGS) {
      streamErrors.push(`call moved more than ${MAX_LEGS - 1} times: not following it further`);
      break;
    }
    leg = next.twiml;
    if (!session.beginLeg({ streamSid: randomSid('MZ'), parameters: leg.parameters, after: leg.after, url: leg.streamUrl, via: next.via })) break;
  }
  if (poll) http.del(poll.url, null, { tags: { name: 'sim-twilio' } });
  const report = session.report();
  return record({ ...facts, ...report, stage: 'connected', webhookStatus: res.status, errors: [...report.errors, ...streamErrors] }, report);
}

/** How often a call asks the simulated Twilio API for updates while its stream runs. */
const POLL_MS = 200;

/**
 * The next REST update for the call, if any (the simulated Twilio API's polling channel).
 * @param {{ url: string, after: number }} poll @param {string} accountSid
 * @returns {import('../../src/sim/portable/twilio-http.js').CallUpdate | undefined}
 */
function pollUpdate(poll, accountSid) {
  const res = http.get(`${poll.url}/updates?after=${poll.after}&account=${accountSid}`, { tags: { name: 'sim-twilio' }, responseType: 'text', timeout: '2s' });
  if (res.status !== 200 || typeof res.body !== 'string') return undefined;
  /** @type {{ updates?: Array<{ seq: number, update: import('../../src/sim/portable/twilio-http.js').CallUpdate }> }} */
  let got;
  try {
    got = JSON.parse(res.body);
  } catch {
    return undefined;
  }
  const first = got.updates?.[0];
  if (!first) return undefined;
  poll.after = first.seq;
  return first.update;
}

/**
 * One Media Stream of the call, open until it closes or a REST update ends it (Twilio's `stop`).
 * @param {K6Config} cfg @param {CallerSession} session
 * @param {Extract<import('../../src/sim/portable/twilio-http.js').ParsedTwiml, { kind: 'stream' }>} leg
 * @param {{ url: string, after: number } | null} poll
 * @returns {{ opened: boolean, update?: import('../../src/sim/portable/twilio-http.js').CallUpdate, errors: string[] }}
 */
function runLeg(cfg, session, leg, poll) {
  let opened = false;
  let closed = false;
  /** @type {import('../../src/sim/portable/twilio-http.js').CallUpdate | undefined} */
  let update;
  /** @type {string[]} */
  const errors = [];
  const signature = twilioSignature(leg.streamUrl, {}, cfg.authToken, hmacSha1Base64);
  const params = { headers: { 'X-Twilio-Signature': signature }, tags: { name: 'twilio-media' } };
  const wsRes = ws.connect(streamDialUrl(cfg.baseUrl, leg.streamUrl, cfg.publicUrl), params, (socket) => {
    /** @param {string[]} msgs */
    const send = (msgs) => {
      if (closed) return;
      for (const m of msgs) socket.send(m);
      // Twilio closes the socket right after its `stop`.
      if (session.done) {
        closed = true;
        socket.close(1000);
      }
    };
    socket.on('open', () => {
      opened = true;
      send(session.open());
      socket.setInterval(() => send(session.tick()), FRAME_MS);
      if (poll) {
        socket.setInterval(() => {
          if (closed) return;
          const u = pollUpdate(poll, cfg.accountSid);
          if (!u) return;
          update = u;
          send(session.stopForUpdate());
        }, POLL_MS);
      }
      // maxCallMs is enforced by the session's ticks; this only guards a relay that never closes.
      socket.setTimeout(() => {
        closed = true;
        socket.close(1000);
      }, session.script.maxCallMs + 5_000);
    });
    socket.on('message', (text) => send(session.onMessage(text)));
    socket.on('binaryMessage', () => errors.push('31950 binary frame from the relay'));
    socket.on('close', (code) => {
      closed = true;
      if (opened) session.onClose(code, '');
    });
    socket.on('error', (e) => {
      // k6 reports our own close handshake as an error once the call is over.
      if (!session.done) errors.push(`stream socket error: ${e.error()}`);
    });
  });
  if (!opened) {
    const why = wsRes && wsRes.status ? `stream upgrade refused: HTTP ${wsRes.status}` : `stream did not open: ${wsRes ? wsRes.error : 'no response'}`;
    return { opened, errors: [why, ...errors] };
  }
  return { opened, errors, ...(update ? { update } : {}) };
}

/**
 * @param {import('./scenarios.js').CallFacts} facts
 * @param {import('../../src/sim/portable/caller-core.js').CallerReport | null} report
 */
function record(facts, report) {
  const m = callOutcomeMetrics(facts, report);
  for (const name of Object.keys(m.counters)) counters[name]?.add(m.counters[name] ?? 0);
  failureRate.add(m.outcome === 'failed');
  refusalRate.add(m.outcome === 'refused');
  for (const v of m.turnLatencies) turnLatency.add(v);
  for (const v of m.moveGaps) moveGap.add(v);
  for (const v of m.moveAudioGaps) moveAudioGap.add(v);
  if (report) callDuration.add(report.durationMs);
  return { outcome: m.outcome, reason: m.reason, report };
}
