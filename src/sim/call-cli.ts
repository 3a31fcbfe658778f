/**
 * `npm run call`: one simulated phone call through a running relay, printed for a human (or as JSON),
 * with the relay's own per-frame and turn latency for the call read from /metrics before and after.
 * The call itself is placeCall (sim-caller.ts); the relay is whatever listens at --url.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, DEMO_NUMBER } from '../tenants/tenant.js';
import { placeCall, type CallReport, type CallScript } from './sim-caller.js';

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

function parseLabels(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of raw.matchAll(/([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"/g)) out[m[1] ?? ''] = (m[2] ?? '').replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
  return out;
}

/**
 * The `_bucket` series of histogram `name` from Prometheus text, summed over series whose labels
 * include every pair of `match`.
 */
export function histogramBuckets(text: string, name: string, match: Readonly<Record<string, string>> = {}): Buckets {
  const out: Buckets = new Map();
  const prefix = `${name}_bucket`;
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const m = /^(\w+)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== prefix) continue;
    const labels = parseLabels(m[2] ?? '');
    if (!Object.entries(match).every(([k, v]) => labels[k] === v)) continue;
    const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
    const v = Number(m[3]);
    if (Number.isNaN(le) || Number.isNaN(v)) continue;
    out.set(le, (out.get(le) ?? 0) + v);
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

export interface RelayLatency {
  frames: Record<'caller_to_model' | 'model_to_caller', { p50Ms: number | null; p99Ms: number | null; count: number }>;
  turn: { p50Ms: number | null; p99Ms: number | null; count: number };
}

const toMs = (s: number | null): number | null => (s === null ? null : Math.round(s * 1e6) / 1e3);

/** The relay's latency for one call from two /metrics scrapes (process-wide: exact when the call ran alone). */
export function relayLatency(before: string, after: string): RelayLatency {
  const q = (name: string, match: Record<string, string> = {}): { p50Ms: number | null; p99Ms: number | null; count: number } => {
    const b = histogramBuckets(before, name, match);
    const a = histogramBuckets(after, name, match);
    const p50 = quantileFromBucketDeltas(0.5, b, a);
    return { p50Ms: toMs(p50.value), p99Ms: toMs(quantileFromBucketDeltas(0.99, b, a).value), count: p50.count };
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

/** Did the call complete? One line saying why not. */
export function callOutcome(r: CallReport): { ok: true } | { ok: false; reason: string } {
  switch (r.stage) {
    case 'unreachable':
      return { ok: false, reason: r.errors[0] ?? 'relay not reachable' };
    case 'rejected':
      return { ok: false, reason: r.errors[0] ?? `webhook rejected (HTTP ${r.webhookStatus ?? '?'})` };
    case 'not-connected':
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

const fmtMs = (v: number | null): string => (v === null ? '-' : `${v < 1 ? v.toFixed(3) : v.toFixed(1)} ms`);

/** Human-readable lines for a finished call. */
export function formatReport(r: CallReport, o: CliOptions, latency: RelayLatency | null): string[] {
  const lines = [`Call ${r.callSid} to ${o.to} via ${o.url} (script ${o.script})`];
  if (r.stage !== 'connected') {
    if (r.spoken) lines.push(`  Heard from TwiML: "${r.spoken}"`);
    return lines;
  }
  if (r.spoken) lines.push(`  Before the stream: "${r.spoken}"`);
  lines.push(`  Greeting: ${r.greeting ? `"${r.greeting}"` : '(none heard)'}`);
  r.turns.forEach((t, i) => {
    const flags = [t.bargeIn ? 'barge-in' : '', t.clearReceived ? 'clear received' : ''].filter(Boolean).join(', ');
    lines.push(`  Turn ${i + 1}${flags ? ` [${flags}]` : ''}`);
    lines.push(`    said:    "${t.said}"`);
    lines.push(`    heard:   ${t.heard ? `"${t.heard}"` : '(nothing)'}`);
    lines.push(`    latency: ${fmtMs(t.turnLatencyMs)} (caller: end of speech -> first reply audio)`);
  });
  const tools = [...r.turns.map((t) => t.heard).join(' ').matchAll(/Tool (\w+) answered/g)].map((m) => m[1]);
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
    for (const dir of ['caller_to_model', 'model_to_caller'] as const) {
      const f = latency.frames[dir];
      lines.push(`  Relay frame latency ${dir}: p50 ${fmtMs(f.p50Ms)}, p99 ${fmtMs(f.p99Ms)} (${f.count} frames)`);
    }
    const t = latency.turn;
    lines.push(`  Relay turn latency: p50 ${fmtMs(t.p50Ms)}, p99 ${fmtMs(t.p99Ms)} (${t.count} turns)`);
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

/** Run the CLI; resolves to the process exit code. */
export const USAGE = `npm run call -- [options]
  --url URL           the relay's base URL (default http://localhost:8080)
  --to NUMBER         the number called (default the demo tenant's ${DEMO_NUMBER})
  --account-sid SID   the Twilio account the webhook claims (default the demo account)
  --auth-token TOKEN  that account's auth token, to sign like Twilio (default the demo token)
  --script NAME       ${Object.keys(SCRIPTS).join(' | ')} (default default)
  --public-url URL    the relay's PUBLIC_URL when it differs from --url (signatures use it)
  --stream-url URL    dial this ws(s) URL instead of the TwiML's <Stream url>
  --json              print the report as JSON`;

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
  let report: CallReport;
  try {
    report = await placeCall({
      baseUrl: o.url,
      to: o.to,
      accountSid: o.accountSid,
      authToken: o.authToken,
      script: SCRIPTS[o.script],
      signal: abort.signal,
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
    console.log(JSON.stringify({ ok: outcome.ok, ...(outcome.ok ? {} : { reason: outcome.reason }), report, relayLatency: latency }, null, 2));
  } else {
    console.log(formatReport(report, o, latency).join('\n'));
    console.log(outcome.ok ? 'Call completed.' : `Call failed: ${outcome.reason}`);
  }
  if (!outcome.ok && o.json) console.error(`Call failed: ${outcome.reason}`);
  return outcome.ok ? 0 : 1;
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
