/**
 * `npm run call`: one simulated phone call through a running relay, printed for a human (or as JSON),
 * with the relay's own per-frame and turn latency for the call read from /metrics before and after.
 * The call itself is placeCall (sim-caller.ts); the relay is whatever listens at --url. Over 400
 * lines because it is mostly wording: every line a person reads, and each exit code, in one place.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER } from '../tenants/tenant.js';
import { toolsHeard } from './sim-model-script.js';
import { placeCall, randomSid, type CallerHooks, type CallReport, type CallScript } from './sim-caller.js';
import { promSamples } from './prom-text.js';

/** The scripted conversations of `--script`. Phrases are chosen to trigger the simulated model's tools. */
export const SCRIPTS = {
  default: {
    turns: [{ say: 'Hi, do you serve postcode 10001?' }, { say: 'Great, what does drain cleaning cost?' }, { say: "That's all, goodbye" }],
    hangupAfterMs: 8_000,
    maxCallMs: 120_000,
  },
  'barge-in': {
    turns: [
      { say: 'Hi, what does drain cleaning cost?' },
      // Interrupts the price answer shortly after it starts playing: the relay must send `clear`.
      { say: 'Sorry to interrupt, do you serve postcode 10002?', bargeInAfterMs: 400 },
      { say: "That's all, goodbye" },
    ],
    hangupAfterMs: 8_000,
    maxCallMs: 120_000,
  },
  tools: {
    turns: [
      { say: 'call tool check_service_area {"postcode":"10001"}' },
      { say: 'call tool quote_price {"service":"drain_cleaning"}' },
      { say: 'call tool book_appointment {"slot":"2030-01-07T09:00","service":"drain_cleaning","customerName":"Sam Caller"}' },
      { say: 'call tool end_call {"reason":"caller has what they need"}' },
    ],
    hangupAfterMs: 8_000,
    maxCallMs: 120_000,
  },
} satisfies Record<string, CallScript>;
export type ScriptName = keyof typeof SCRIPTS;

export interface CliOptions {
  url: string;
  to: string;
  accountSid: string;
  authToken: string;
  script: ScriptName;
  json: boolean;
  /** The relay's PUBLIC_URL when it differs from --url (signatures are computed over it). */
  publicUrl?: string;
  /** Dial this ws(s) URL instead of the TwiML's `<Stream url>` (e.g. a local port behind a TLS PUBLIC_URL). */
  streamUrl?: string;
}

/** Parse `npm run call -- …` arguments; returns a one-line complaint instead of throwing. */
export function parseCliArgs(argv: readonly string[]): { ok: true; options: CliOptions } | { ok: false; error: string } {
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: {
        url: { type: 'string', default: 'http://localhost:8080' },
        to: { type: 'string', default: DEMO_NUMBER },
        'account-sid': { type: 'string', default: DEMO_ACCOUNT_SID },
        'auth-token': { type: 'string', default: DEMO_AUTH_TOKEN },
        script: { type: 'string', default: 'default' },
        json: { type: 'boolean', default: false },
        'public-url': { type: 'string' },
        'stream-url': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    });
    const script = values.script;
    if (!Object.hasOwn(SCRIPTS, script)) {
      return { ok: false, error: `--script must be one of ${Object.keys(SCRIPTS).join(', ')} (got ${script})` };
    }
    if (!/^https?:\/\//.test(values.url)) return { ok: false, error: `--url must start with http:// or https:// (got ${values.url})` };
    const publicUrl = values['public-url'];
    if (publicUrl !== undefined && !/^https?:\/\//.test(publicUrl)) return { ok: false, error: `--public-url must start with http:// or https:// (got ${publicUrl})` };
    const streamUrl = values['stream-url'];
    if (streamUrl !== undefined && !/^wss?:\/\//.test(streamUrl)) return { ok: false, error: `--stream-url must start with ws:// or wss:// (got ${streamUrl})` };
    return {
      ok: true,
      options: {
        url: values.url.replace(/\/+$/, ''),
        to: values.to,
        accountSid: values['account-sid'],
        authToken: values['auth-token'],
        script: script as ScriptName,
        json: values.json,
        ...(publicUrl !== undefined ? { publicUrl: publicUrl.replace(/\/+$/, '') } : {}),
        ...(streamUrl !== undefined ? { streamUrl } : {}),
      },
    };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

// --- Prometheus histograms ----------------------------------------------------------------------------

/** Cumulative bucket counts keyed by upper bound (`Infinity` for +Inf). */
export type Buckets = Map<number, number>;

/**
 * The `_bucket` series of histogram `name` from Prometheus text, summed over series whose labels
 * include every pair of `match`.
 */
export function histogramBuckets(text: string, name: string, match: Readonly<Record<string, string>> = {}): Buckets {
  const out: Buckets = new Map();
  for (const { labels, value } of promSamples(text, `${name}_bucket`, match)) {
    const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
    if (Number.isNaN(le)) continue;
    out.set(le, (out.get(le) ?? 0) + value);
  }
  return out;
}

/**
 * Quantile `q` of the observations made between two scrapes of one histogram, estimated as
 * Prometheus's histogram_quantile does (linear within the bucket; the highest finite bound when it
 * falls in +Inf). Returns the observation count too; value is null when nothing was observed.
 */
export function quantileFromBucketDeltas(q: number, before: Buckets, after: Buckets): { value: number | null; count: number } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const deltas = bounds.map((le) => Math.max(0, (after.get(le) ?? 0) - (before.get(le) ?? 0)));
  const count = bounds.length > 0 && bounds[bounds.length - 1] === Infinity ? (deltas[deltas.length - 1] ?? 0) : Math.max(0, ...deltas);
  if (count <= 0) return { value: null, count: 0 };
  const rank = Math.min(1, Math.max(0, q)) * count;
  for (let i = 0; i < bounds.length; i++) {
    const upper = bounds[i] ?? 0;
    const cum = deltas[i] ?? 0;
    if (cum < rank) continue;
    if (upper === Infinity) {
      const finite = bounds.filter((b) => b !== Infinity);
      return { value: finite.length > 0 ? (finite[finite.length - 1] ?? null) : null, count };
    }
    const lower = i === 0 ? 0 : (bounds[i - 1] ?? 0);
    const prev = i === 0 ? 0 : (deltas[i - 1] ?? 0);
    const inBucket = cum - prev;
    return { value: inBucket > 0 ? lower + (upper - lower) * ((rank - prev) / inBucket) : upper, count };
  }
  return { value: null, count };
}

/**
 * The upper bound of the bucket quantile `q` falls in: all that a histogram knows for sure ("p99 is
 * at most 0.5 s"). Interpolating inside the bucket, as histogram_quantile does, invents a value that
 * for a handful of observations can lie above every one of them. `overflow`: it fell in +Inf, above
 * the highest finite bound (which is then returned).
 */
export function quantileBucketBound(q: number, before: Buckets, after: Buckets): { atMost: number | null; overflow: boolean } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const deltas = bounds.map((le) => Math.max(0, (after.get(le) ?? 0) - (before.get(le) ?? 0)));
  const count = deltas[deltas.length - 1] ?? 0;
  if (count <= 0) return { atMost: null, overflow: false };
  const rank = Math.min(1, Math.max(0, q)) * count;
  const i = deltas.findIndex((cum) => cum >= rank);
  const upper = bounds[i] ?? Infinity;
  if (upper !== Infinity) return { atMost: upper, overflow: false };
  const finite = bounds.filter((b) => b !== Infinity);
  return { atMost: finite[finite.length - 1] ?? null, overflow: true };
}

/** `_sum` of histogram `name` from Prometheus text, summed over matching series (null: no such series). */
export function histogramSum(text: string, name: string, match: Readonly<Record<string, string>> = {}): number | null {
  const samples = promSamples(text, `${name}_sum`, match);
  return samples.length === 0 ? null : samples.reduce((t, x) => t + x.value, 0);
}

/**
 * One histogram between two scrapes. `meanMs` is exact (from `_sum` and `_count`); `p50AtMostMs`
 * and `p99AtMostMs` are bucket bounds (`…Overflow`: above the highest bound); `p50Ms`/`p99Ms` are
 * interpolated inside the bucket like histogram_quantile (estimates, for many observations).
 */
export interface HistogramDelta {
  count: number;
  meanMs: number | null;
  p50AtMostMs: number | null;
  p99AtMostMs: number | null;
  p99Overflow: boolean;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface RelayLatency {
  frames: Record<'caller_to_model' | 'model_to_caller', HistogramDelta>;
  turn: HistogramDelta;
}

const toMs = (s: number | null): number | null => (s === null ? null : Math.round(s * 1e6) / 1e3);

/** The relay's latency for one call from two /metrics scrapes (process-wide: exact when the call ran alone). */
export function relayLatency(before: string, after: string): RelayLatency {
  const q = (name: string, match: Record<string, string> = {}): HistogramDelta => {
    const b = histogramBuckets(before, name, match);
    const a = histogramBuckets(after, name, match);
    const p50 = quantileFromBucketDeltas(0.5, b, a);
    const count = p50.count;
    const sumAfter = histogramSum(after, name, match);
    const sumDelta = sumAfter === null ? null : sumAfter - (histogramSum(before, name, match) ?? 0);
    const p99Bound = quantileBucketBound(0.99, b, a);
    return {
      count,
      meanMs: count > 0 && sumDelta !== null ? toMs(sumDelta / count) : null,
      p50AtMostMs: toMs(quantileBucketBound(0.5, b, a).atMost),
      p99AtMostMs: toMs(p99Bound.atMost),
      p99Overflow: p99Bound.overflow,
      p50Ms: toMs(p50.value),
      p99Ms: toMs(quantileFromBucketDeltas(0.99, b, a).value),
    };
  };
  return {
    frames: {
      caller_to_model: q('switchboard_frame_relay_seconds', { direction: 'caller_to_model' }),
      model_to_caller: q('switchboard_frame_relay_seconds', { direction: 'model_to_caller' }),
    },
    turn: q('switchboard_turn_latency_seconds'),
  };
}

// --- verdict and printing -------------------------------------------------------------------------------

/** Close codes that mean the relay ended the call on purpose (src/errors.ts CloseCode). */
const CLEAN_CLOSES = new Set([1000, 4011, 4012]);

/** Why the relay turned a call away on purpose (its `X-Switchboard-Refused` header). */
export type Refusal = 'budget' | 'busy';

export type CallOutcomeVerdict = { ok: true } | { ok: false; reason: string; refused?: Refusal };

/** Exit codes of `npm run call`: 0 completed, 1 failed (or bad options), 3 and 4 refused on purpose. */
export const EXIT_CODES = { completed: 0, failed: 1, budget: 3, busy: 4 } as const;

export function exitCode(v: CallOutcomeVerdict): number {
  if (v.ok) return EXIT_CODES.completed;
  return v.refused !== undefined ? EXIT_CODES[v.refused] : EXIT_CODES.failed;
}

/** The last line of the human output. */
export function verdictLine(v: CallOutcomeVerdict): string {
  if (v.ok) return 'Call completed.';
  return v.refused !== undefined ? `Call refused (${v.refused}): ${v.reason}` : `Call failed: ${v.reason}`;
}

/** Did the call complete? One line saying why not. */
export function callOutcome(r: CallReport): CallOutcomeVerdict {
  switch (r.stage) {
    case 'unreachable':
      return { ok: false, reason: r.errors[0] ?? 'relay not reachable' };
    case 'rejected':
      return { ok: false, reason: r.errors[0] ?? `webhook rejected (HTTP ${r.webhookStatus ?? '?'})` };
    case 'not-connected':
      if (r.refused === 'budget') return { ok: false, refused: 'budget', reason: `the tenant is over its budget; the caller heard its budget message instead of the model: "${r.spoken}"` };
      if (r.refused === 'busy') return { ok: false, refused: 'busy', reason: `the tenant is at its concurrency limit (maxConcurrentCalls): "${r.spoken}"` };
      return { ok: false, reason: `relay answered without a media stream: "${r.spoken}"` };
    case 'stream-failed':
      return { ok: false, reason: r.errors[0] ?? 'media stream failed to open' };
    case 'connected':
      break;
  }
  if (r.endedBy === 'relay' && r.closeCode !== null && !CLEAN_CLOSES.has(r.closeCode)) {
    const fb = r.fallback ? `; fallback: "${r.fallback}"` : '';
    return { ok: false, reason: `relay closed the stream with ${r.closeCode} ${r.closeReason}${fb}`.trim() };
  }
  if (r.errors.length > 0) return { ok: false, reason: r.errors[0] ?? 'error' };
  if (r.turns.length < r.turnsPlanned) return { ok: false, reason: `call ended after ${r.turns.length} of ${r.turnsPlanned} turns` };
  if (r.endedBy === 'timeout') return { ok: false, reason: 'call hit its time limit' };
  return { ok: true };
}

/** When a call failed in a way a URL option fixes, one line saying which option and why. */
export function urlHint(r: CallReport, o: CliOptions): string | undefined {
  if (r.stage === 'rejected' && r.webhookStatus === 403 && o.publicUrl === undefined) {
    return `hint: the relay checks signatures over its PUBLIC_URL; if that is not ${o.url}, pass --public-url PUBLIC_URL`;
  }
  if (r.stage === 'stream-failed' && o.streamUrl === undefined && r.twiml?.kind === 'stream') {
    const direct = o.url.replace(/^http/, 'ws') + '/twilio/media';
    if (r.twiml.streamUrl !== direct) {
      return `hint: the TwiML's <Stream url> is ${r.twiml.streamUrl} (from PUBLIC_URL); if it is not reachable from here, pass --stream-url ${direct}`;
    }
  }
  return undefined;
}

const fmtMs = (v: number | null): string => (v === null ? '-' : `${v < 1 ? v.toFixed(3) : v.toFixed(1)} ms`);

/** A quoted line of what the caller heard; `…` where a barge-in cut it off (one, if the words already end in it). */
const quoted = (text: string, cut: boolean): string => (text ? `"${text}${cut && !text.endsWith('…') ? '…' : ''}"` : cut ? '(cut off before a word)' : '(nothing)');

export function formatHeader(callSid: string, o: CliOptions): string {
  return `Call ${callSid} to ${o.to} via ${o.url} (script ${o.script})`;
}

export function formatGreeting(text: string, interrupted: boolean): string {
  return `  Greeting: ${text || interrupted ? quoted(text, interrupted) : '(none heard)'}`;
}

/** Turn `i` (0-based); `interrupted`: the caller's next turn barged in, so `heard` was cut short. */
export function formatTurn(i: number, t: CallReport['turns'][number], interrupted: boolean): string[] {
  const flags = [t.bargeIn ? 'barge-in' : '', t.clearReceived ? 'clear received' : ''].filter(Boolean).join(', ');
  return [
    `  Turn ${i + 1}${flags ? ` [${flags}]` : ''}`,
    `    said:    "${t.said}"`,
    `    heard:   ${quoted(t.heard, interrupted)}`,
    `    latency: ${fmtMs(t.turnLatencyMs)} (caller: end of speech -> first reply audio)`,
  ];
}

const fmtHistogram = (h: HistogramDelta, what: string): string =>
  h.count === 0
    ? `none (0 ${what})`
    : `mean ${fmtMs(h.meanMs)} over ${h.count} ${what}; p50 ≤ ${fmtMs(h.p50AtMostMs)}, p99 ${h.p99Overflow ? '>' : '≤'} ${fmtMs(h.p99AtMostMs)}`;

/**
 * Human-readable lines for a finished call. `shown` says what was already printed while the call
 * ran (the greeting, and the first `turns` turns), so only the rest is printed now.
 */
export function formatReport(r: CallReport, o: CliOptions, latency: RelayLatency | null, shown: { header: boolean; greeting: boolean; turns: number } = { header: false, greeting: false, turns: 0 }): string[] {
  const lines = shown.header ? [] : [formatHeader(r.callSid, o)];
  if (r.stage !== 'connected') {
    if (r.spoken) lines.push(`  Heard from TwiML: "${r.spoken}"`);
    return lines;
  }
  if (r.spoken) lines.push(`  Before the stream: "${r.spoken}"`);
  if (!shown.greeting) lines.push(formatGreeting(r.greeting, r.turns[0]?.bargeIn === true));
  r.turns.forEach((t, i) => {
    if (i >= shown.turns) lines.push(...formatTurn(i, t, r.turns[i + 1]?.bargeIn === true));
  });
  const tools = toolsHeard(r.turns.map((t) => t.heard));
  if (tools.length > 0) lines.push(`  Tools heard: ${tools.join(', ')}`);
  lines.push(`  Barge-ins: ${r.turns.filter((t) => t.bargeIn).length}, clears: ${r.clears}, DTMF sent: ${r.dtmfSent}`);
  lines.push(`  Marks: ${r.marksSent} from relay, ${r.marksEchoed} echoed`);
  lines.push(
    `  Frames: ${r.framesSent} sent, ${r.framesReceived} received (${(r.audioMsReceived / 1000).toFixed(1)} s of audio), ` +
      `max gap within a reply ${r.maxInterArrivalGapMs.toFixed(1)} ms`,
  );
  const closed = r.closeCode === null ? 'not closed' : `${r.closeCode}${r.closeReason ? ` ${r.closeReason}` : ''}`;
  lines.push(`  Ended by ${r.endedBy ?? '?'} after ${(r.durationMs / 1000).toFixed(1)} s, close ${closed}`);
  if (r.fallback) lines.push(`  After </Connect> Twilio runs: "${r.fallback}"`);
  if (r.afterStream !== undefined) lines.push(`  ...which answers: "${r.afterStream}"`);
  if (latency) {
    // What the relay's histograms can say truthfully: exact means, and bucket bounds for quantiles.
    lines.push('  Relay (from /metrics before and after; process-wide, so exact only when this call ran alone):');
    for (const dir of ['caller_to_model', 'model_to_caller'] as const) lines.push(`    frame time ${dir}: ${fmtHistogram(latency.frames[dir], 'frames')}`);
    lines.push(`    turn latency (speech stopped -> first audio sent): ${fmtHistogram(latency.turn, 'turns')}`);
  } else {
    lines.push('  Relay latency: /metrics not available');
  }
  for (const e of r.errors) lines.push(`  error: ${e}`);
  return lines;
}

async function scrape(url: string): Promise<string | null> {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) });
    return res.ok ? await res.text() : null;
  } catch {
    return null;
  }
}

export const USAGE = `npm run call -- [options]
  --url URL           where to reach the relay (default http://localhost:8080)
  --to NUMBER         the number called (default the demo tenant's ${DEMO_NUMBER})
  --account-sid SID   the Twilio account the webhook claims (default the demo account)
  --auth-token TOKEN  that account's auth token, to sign like Twilio (default the demo token)
  --script NAME       ${Object.keys(SCRIPTS).join(' | ')} (default default)
  --public-url URL    only when the relay's PUBLIC_URL differs from --url (a tunnel, an ingress):
                      Twilio signs webhooks over PUBLIC_URL, so this signs over it too
  --stream-url URL    only when the <Stream url> in the TwiML (built from PUBLIC_URL) is not
                      reachable from here: dial this ws(s) URL instead, e.g. ws://localhost:8080/twilio/media
  --json              print one line of JSON on stdout when the call ends (use \`npm run -s call\`
                      so npm prints no banner: \`npm run -s call -- --json | jq .\`)
The greeting and each turn are printed as they happen; the summary when the call ends.
Exit status: 0 the call completed; 1 it failed (or bad options); 3 refused: the tenant is over its
budget; 4 refused: the tenant is at its concurrency limit.`;

/** Run the CLI; resolves to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const parsed = parseCliArgs(argv);
  if (!parsed.ok) {
    console.error(`${parsed.error}\n${USAGE}`);
    return 1;
  }
  const o = parsed.options;
  const unreachable = `cannot reach ${o.url} — is \`npm start\` running?`;
  const before = await scrape(o.url);
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  const callSid = randomSid('CA');
  // Human output streams: the greeting and each turn print as the caller moves on from them.
  const shown = { header: false, greeting: false, turns: 0 };
  const print = (lines: string[]): void => {
    if (!shown.header) {
      console.log(formatHeader(callSid, o));
      shown.header = true;
    }
    if (lines.length > 0) console.log(lines.join('\n'));
  };
  const hooks: CallerHooks = o.json
    ? {}
    : {
        onGreeting: (text, interrupted) => {
          print([formatGreeting(text, interrupted)]);
          shown.greeting = true;
        },
        onTurn: (i, turn, interrupted) => {
          print(formatTurn(i, turn, interrupted));
          shown.turns = i + 1;
        },
      };
  let report: CallReport;
  try {
    report = await placeCall({
      baseUrl: o.url,
      to: o.to,
      accountSid: o.accountSid,
      authToken: o.authToken,
      callSid,
      script: SCRIPTS[o.script],
      signal: abort.signal,
      hooks,
      ...(o.publicUrl !== undefined ? { publicUrl: o.publicUrl } : {}),
      ...(o.streamUrl !== undefined ? { streamUrlOverride: o.streamUrl } : {}),
    });
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (report.stage === 'unreachable') {
    console.error(unreachable);
    return 1;
  }
  const after = before === null ? null : await scrape(o.url);
  const latency = before !== null && after !== null ? relayLatency(before, after) : null;
  const outcome = callOutcome(report);
  if (o.json) {
    // One line: even behind npm's banner (`npm run` without -s), the last line of stdout parses.
    const verdict = outcome.ok ? {} : { reason: outcome.reason, ...(outcome.refused ? { refused: outcome.refused } : {}) };
    console.log(JSON.stringify({ ok: outcome.ok, ...verdict, report, relayLatency: latency }));
  } else {
    console.log(formatReport(report, o, latency, shown).join('\n'));
    console.log(verdictLine(outcome));
  }
  if (!outcome.ok && o.json) console.error(verdictLine(outcome));
  const hint = outcome.ok ? undefined : urlHint(report, o);
  if (hint) console.error(hint);
  return exitCode(outcome);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`npm run call failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    },
  );
}
