// @ts-check
/**
 * The simulated Twilio's HTTP side, sans-IO: the signed voice webhook, TwiML as Twilio reads it, REST
 * call updates, and what a call does once a stream ends (the TwiML fetches of `<Redirect>` and an
 * update's `Url`). Plain JS with no Node or k6 imports: the Node adapters (src/sim) and k6
 * (loadtest/lib/k6-adapter.js) both load it; caller-core.js and caller-stream.js are the Media Stream side.
 */

/**
 * @typedef {(key: string, data: string) => string} HmacSha1Base64
 *   HMAC-SHA1 over UTF-8 `data` with UTF-8 `key`, base64-encoded (node:crypto or k6/crypto).
 */

// --- webhook and signature ---------------------------------------------------------------------

/**
 * Twilio's X-Twilio-Signature (docs/wire-formats.md §3): the URL, then each field as name+value
 * sorted by name, HMAC-SHA1 with the auth token, base64. Repeated names (array values) sign each
 * value, sorted.
 * @param {string} url @param {Record<string, string | string[]>} params @param {string} authToken
 * @param {HmacSha1Base64} hmacSha1Base64
 * @returns {string}
 */
export function twilioSignature(url, params, authToken, hmacSha1Base64) {
  let data = url;
  // Byte-wise order, as twilio-node's Object.keys(...).sort() does for ASCII names.
  for (const name of Object.keys(params).sort()) {
    const v = params[name];
    const values = Array.isArray(v) ? [...v].sort() : [v ?? ''];
    for (const value of values) data += name + value;
  }
  return hmacSha1Base64(authToken, data);
}

/**
 * application/x-www-form-urlencoded as browsers and Twilio write it (space as +). Hand-written:
 * k6 has no URLSearchParams.
 * @param {Record<string, string>} fields
 */
export function formEncode(fields) {
  /** @param {string} s */
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return Object.keys(fields)
    .map((k) => `${enc(k)}=${enc(fields[k] ?? '')}`)
    .join('&');
}

/**
 * Twilio signs voice webhooks over HTTPS without the port (docs/wire-formats.md §3); HTTP keeps it.
 * @param {string} url
 */
function signedUrlForm(url) {
  const m = /^https:\/\/([^/:?#]+):\d+(.*)$/i.exec(url);
  return m ? `https://${m[1]}${m[2]}` : url;
}

/**
 * Build the signed voice webhook Twilio would POST for an inbound call.
 * @param {{ baseUrl: string, callSid: string, accountSid: string, from: string, to: string,
 *   authToken: string, hmacSha1Base64: HmacSha1Base64, publicUrl?: string }} o
 *   `publicUrl`: the base URL Twilio was configured with, when it differs from the address dialled
 *   (a relay behind an ingress validates against its PUBLIC_URL); defaults to `baseUrl`.
 * @returns {{ url: string, body: string, params: Record<string, string>,
 *   headers: { 'content-type': string, 'x-twilio-signature': string } }}
 */
export function buildVoiceWebhook(o) {
  const path = '/twilio/voice';
  const url = o.baseUrl.replace(/\/+$/, '') + path;
  const signUrl = (o.publicUrl ?? o.baseUrl).replace(/\/+$/, '') + path;
  /** @type {Record<string, string>} */
  const params = {
    AccountSid: o.accountSid,
    ApiVersion: '2010-04-01',
    CallSid: o.callSid,
    CallStatus: 'ringing',
    Called: o.to,
    Caller: o.from,
    Direction: 'inbound',
    From: o.from,
    To: o.to,
  };
  const signature = twilioSignature(signedUrlForm(signUrl), params, o.authToken, o.hmacSha1Base64);
  return {
    url,
    body: formEncode(params),
    params,
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature },
  };
}

// --- TwiML ---------------------------------------------------------------------------------------

/**
 * One TwiML verb as the caller runs it. `text` is the decoded element text (Say's words, Dial's
 * number); `attrs` its decoded attributes.
 * @typedef {{ verb: string, text: string, attrs: Record<string, string> }} TwimlVerb
 */

/**
 * @typedef {{ kind: 'stream', streamUrl: string, statusCallback?: string,
 *   parameters: Record<string, string>, before: TwimlVerb[], after: TwimlVerb[] }
 * | { kind: 'other', verbs: TwimlVerb[] }} ParsedTwiml
 */

/** @param {string} s */
export function decodeXmlEntities(s) {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_m, e) => {
    const name = /** @type {string} */ (e);
    switch (name) {
      case 'amp':
        return '&';
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
      default:
        return String.fromCodePoint(name[1] === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10));
    }
  });
}

/** @param {string} raw @returns {Record<string, string>} */
function parseAttrs(raw) {
  /** @type {Record<string, string>} */
  const out = {};
  const re = /([A-Za-z_][\w:.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
  for (let m = re.exec(raw); m; m = re.exec(raw)) out[/** @type {string} */ (m[1])] = decodeXmlEntities(m[2] ?? m[3] ?? '');
  return out;
}

/**
 * Sibling elements of one XML fragment. TwiML never nests an element inside one of the same name,
 * so a lazy match up to the first matching close tag is exact for it.
 * @param {string} xml @returns {Array<{ name: string, attrs: Record<string, string>, inner: string }>}
 */
function elements(xml) {
  const out = [];
  // Attribute values may hold a raw '>' (XML allows it; the twilio SDK writes it): skip quoted runs.
  const re = /<([A-Za-z][\w:.-]*)((?:[^>"'/]|"[^"]*"|'[^']*'|\/(?!>))*)(?:\/>|>([\s\S]*?)<\/\1\s*>)/g;
  for (let m = re.exec(xml); m; m = re.exec(xml)) {
    out.push({ name: /** @type {string} */ (m[1]), attrs: parseAttrs(m[2] ?? ''), inner: m[3] ?? '' });
  }
  return out;
}

/** @param {{ name: string, attrs: Record<string, string>, inner: string }} e @returns {TwimlVerb} */
function toVerb(e) {
  // Dial may wrap its target in <Number>/<Client>/<Sip>: take the text either way.
  const text = decodeXmlEntities(e.inner.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim());
  return { verb: e.name, text, attrs: e.attrs };
}

/**
 * Parse the TwiML subset the relay answers with: `<Connect><Stream url><Parameter/></Stream></Connect>`
 * with verbs before/after it, or anything else (`<Say>…</Say><Hangup/>`, `<Reject/>`). Regex-based
 * because k6 has no XML parser; entities are decoded. Throws on a document without `<Response>`.
 * @param {string} xml @returns {ParsedTwiml}
 */
export function parseTwiml(xml) {
  const cleaned = xml.replace(/<\?[\s\S]*?\?>/g, '').replace(/<!--[\s\S]*?-->/g, '');
  const resp = /<Response(?:\s[^>]*)?>([\s\S]*)<\/Response\s*>|<Response(?:\s[^>]*)?\/>/.exec(cleaned);
  if (!resp) throw new Error(`not TwiML (no <Response>): ${xml.slice(0, 120)}`);
  const top = elements(resp[1] ?? '');
  const connectAt = top.findIndex((e) => e.name === 'Connect' && elements(e.inner).some((c) => c.name === 'Stream'));
  if (connectAt < 0) return { kind: 'other', verbs: top.map(toVerb) };
  const connect = /** @type {(typeof top)[number]} */ (top[connectAt]);
  const stream = /** @type {(typeof top)[number]} */ (elements(connect.inner).find((c) => c.name === 'Stream'));
  /** @type {Record<string, string>} */
  const parameters = {};
  for (const p of elements(stream.inner)) {
    if (p.name === 'Parameter' && p.attrs.name !== undefined) parameters[p.attrs.name] = p.attrs.value ?? '';
  }
  /** @type {ParsedTwiml} */
  const parsed = {
    kind: 'stream',
    streamUrl: stream.attrs.url ?? '',
    parameters,
    before: top.slice(0, connectAt).map(toVerb),
    after: top.slice(connectAt + 1).map(toVerb),
  };
  if (stream.attrs.statusCallback !== undefined) parsed.statusCallback = stream.attrs.statusCallback;
  return parsed;
}

/**
 * What a caller would hear/experience from TwiML verbs, as one line: Say text, other verbs in tags.
 * @param {readonly TwimlVerb[]} verbs
 */
export function describeVerbs(verbs) {
  return verbs
    .map((v) => (v.verb === 'Say' ? v.text : v.text ? `<${v.verb}>${v.text}</${v.verb}>` : `<${v.verb}/>`))
    .filter((s) => s !== '')
    .join(' ');
}

// --- call updates and TwiML fetches ---------------------------------------------------------------

/**
 * A REST call update (`POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`) as the call
 * acts on it: new TwiML, a URL to fetch TwiML from, or a status (`completed` hangs up).
 * @typedef {{ kind: 'twiml', twiml: string } | { kind: 'url', url: string, method: string }
 *   | { kind: 'status', status: 'completed' | 'canceled' }} CallUpdate
 */

/**
 * Read an update's form fields as Twilio does: `Twiml`, `Url` (+ `Method`) and `Status` are
 * mutually exclusive; the TwiML must parse. Returns the update or why Twilio would answer 400.
 * @param {Record<string, string>} form
 * @returns {{ ok: true, update: CallUpdate } | { ok: false, code: number, message: string }}
 */
export function callUpdateFromForm(form) {
  const given = ['Twiml', 'Url', 'Status'].filter((k) => form[k] !== undefined);
  if (given.length !== 1) {
    return { ok: false, code: 20001, message: `exactly one of Twiml, Url or Status is required (got ${given.join(', ') || 'none'})` };
  }
  const twiml = form.Twiml;
  if (twiml !== undefined) {
    try {
      parseTwiml(twiml);
    } catch (err) {
      return { ok: false, code: 12100, message: `Document parse failure: ${String(err)}` };
    }
    return { ok: true, update: { kind: 'twiml', twiml } };
  }
  const url = form.Url;
  if (url !== undefined) {
    if (!/^https?:\/\//i.test(url)) return { ok: false, code: 21205, message: `Url is not a valid URL: ${url.slice(0, 80)}` };
    const method = (form.Method ?? 'POST').toUpperCase();
    if (method !== 'POST' && method !== 'GET') return { ok: false, code: 20001, message: `Method must be GET or POST (got ${method})` };
    return { ok: true, update: { kind: 'url', url, method } };
  }
  const status = form.Status;
  if (status !== 'completed' && status !== 'canceled') return { ok: false, code: 20001, message: `Status must be completed or canceled (got ${status})` };
  return { ok: true, update: { kind: 'status', status } };
}

/**
 * The request Twilio makes to fetch a call's next TwiML (a `<Redirect>` after `</Connect>`, or an
 * update's `Url`): the call's fields, signed over the URL as given; a GET carries them in the query.
 * @param {{ url: string, method?: string, accountSid: string, callSid: string, from: string, to: string,
 *   authToken: string, hmacSha1Base64: HmacSha1Base64 }} o
 * @returns {{ url: string, method: 'GET' | 'POST', body: string | null,
 *   headers: Record<string, string> }}
 */
export function twimlFetchRequest(o) {
  /** @type {Record<string, string>} */
  const params = {
    AccountSid: o.accountSid,
    ApiVersion: '2010-04-01',
    CallSid: o.callSid,
    CallStatus: 'in-progress',
    Direction: 'inbound',
    From: o.from,
    To: o.to,
  };
  if ((o.method ?? 'POST').toUpperCase() === 'GET') {
    const url = o.url + (o.url.includes('?') ? '&' : '?') + formEncode(params);
    return { url, method: 'GET', body: null, headers: { 'x-twilio-signature': twilioSignature(url, {}, o.authToken, o.hmacSha1Base64) } };
  }
  return {
    url: o.url,
    method: 'POST',
    body: formEncode(params),
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': twilioSignature(o.url, params, o.authToken, o.hmacSha1Base64),
    },
  };
}

/**
 * What a call does next from the TwiML Twilio runs (an update's, or the after-stream redirect's):
 * `stream` opens a new Media Stream; `fetch` follows a `<Redirect>` (after whatever is said before
 * it); `end` means the call's stream life is over (`<Dial>`, `<Say>`, `<Hangup/>`: `heard`
 * describes what ran).
 * @param {ParsedTwiml} t
 * @returns {{ kind: 'stream', twiml: Extract<ParsedTwiml, { kind: 'stream' }> }
 *   | { kind: 'fetch', url: string, method: string, heard: string } | { kind: 'end', heard: string }}
 */
export function nextStep(t) {
  if (t.kind === 'stream') return { kind: 'stream', twiml: t };
  const at = t.verbs.findIndex((v) => v.verb === 'Redirect' || v.verb === 'Hangup' || v.verb === 'Reject' || v.verb === 'Dial');
  const v = at >= 0 ? t.verbs[at] : undefined;
  if (v && v.verb === 'Redirect' && v.text) return { kind: 'fetch', url: v.text, method: v.attrs.method ?? 'POST', heard: describeVerbs(t.verbs.slice(0, at)) };
  return { kind: 'end', heard: describeVerbs(t.verbs) };
}

/** Retries of a TwiML fetch whose connection failed: Twilio's default retry count (`rc`). */
export const WEBHOOK_RETRIES = 1;

/** A call follows at most this many streams (a bound on update/redirect loops). */
export const MAX_LEGS = 5;

/**
 * The answer to a TwiML fetch, as an adapter got it: `error` when there was no HTTP answer.
 * @typedef {{ status: number, body: string, error?: string }} FetchAnswer
 * @typedef {{ url: string, method: 'GET' | 'POST', body: string | null, headers: Record<string, string> }} FetchRequest
 * @typedef {{ kind: 'stream', via: 'update' | 'redirect', twiml: Extract<ParsedTwiml, { kind: 'stream' }> }
 *   | { kind: 'end', via: 'update' | 'redirect' | null, heard: string, fetched: boolean }} AfterLeg
 */

/**
 * What Twilio does once a stream has ended, sans-IO: a generator that yields each TwiML fetch to
 * make (`<Redirect>`, an update's `Url`) and takes back its answer, and returns the next stream to
 * open or the end of the call's stream life (`heard`: what ran instead; `fetched`: it came from a
 * fetch). `update`: the REST update that ended the stream; else, when the relay closed it
 * (`resumable`), the TwiML after `</Connect>` runs. Node drives it with await, k6 synchronously.
 * @param {{ update?: CallUpdate, resumable: boolean, after: readonly TwimlVerb[],
 *   call: { accountSid: string, callSid: string, from: string, to: string, authToken: string,
 *   hmacSha1Base64: HmacSha1Base64 } }} o
 * @returns {Generator<FetchRequest, AfterLeg, FetchAnswer>}
 */
export function* afterLeg(o) {
  const via = o.update ? 'update' : 'redirect';
  /** @param {string} heard @param {boolean} fetched @returns {AfterLeg} */
  const end = (heard, fetched) => ({ kind: 'end', via, heard, fetched });
  /** @type {ParsedTwiml} */
  let doc;
  const u = o.update;
  if (u?.kind === 'status') return end('<Hangup/>', false);
  if (u?.kind === 'url') doc = { kind: 'other', verbs: [{ verb: 'Redirect', text: u.url, attrs: { method: u.method } }] };
  else if (u?.kind === 'twiml') {
    try {
      doc = parseTwiml(u.twiml);
    } catch (err) {
      return end(`(not TwiML: ${String(err)})`, false);
    }
  } else if (o.resumable) doc = { kind: 'other', verbs: [...o.after] };
  else return { kind: 'end', via: null, heard: '', fetched: false };
  let fetched = false;
  for (let i = 0; i < MAX_LEGS; i++) {
    const step = nextStep(doc);
    if (step.kind === 'stream') return { kind: 'stream', via, twiml: step.twiml };
    if (step.kind === 'end') return end(step.heard, fetched);
    const request = twimlFetchRequest({ ...o.call, url: step.url, method: step.method });
    let res = yield request;
    // Twilio retries a webhook whose connection fails, once by default (its "connection overrides":
    // rc=1); an HTTP answer, whatever its status, is not retried. A connection reset before any
    // answer (a pod killed while still in the Service's rotation) counts as a failed connection.
    for (let retry = 0; res.error !== undefined && retry < WEBHOOK_RETRIES; retry++) res = yield request;
    fetched = true;
    if (res.error !== undefined) return end(`(redirect failed: ${res.error})`, true);
    if (res.status < 200 || res.status >= 300) return end(`(redirect answered HTTP ${res.status})`, true);
    try {
      doc = parseTwiml(res.body);
    } catch (err) {
      return end(`(redirect answered no TwiML: ${String(err)})`, true);
    }
  }
  return end('(too many redirects)', fetched);
}
