/**
 * The few TwiML documents the relay writes, printed byte for byte as the twilio SDK's VoiceResponse
 * (xmlbuilder 13) prints them: the XML declaration, attributes in the order given (undefined ones
 * left out), `<X/>` for an element with no content, and its escaping. A character XML cannot carry
 * is refused in text (as the SDK does) and in attribute values (which the SDK prints unchecked, an
 * invalid document). Loading the SDK at start cost more memory than anything else the relay
 * imports (docs/performance.md); test/twilio/twiml-xml.test.ts holds this to the SDK's output.
 */
import { SwitchboardError } from '../errors.js';

export interface TwimlNode {
  name: string;
  attrs?: Record<string, string | number | boolean | undefined>;
  /** Text content (escaped); ignored when `children` are given. */
  text?: string;
  children?: readonly TwimlNode[];
}

/** Characters XML 1.0 does not allow (C0 controls but tab/LF/CR, U+FFFE/F, lone surrogates), as xmlbuilder checks. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what this finds
const ILLEGAL = /[\0-\x08\x0B\f\x0E-\x1F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:[^\uD800-\uDBFF]|^)[\uDC00-\uDFFF]/;

function legal(s: string): string {
  const m = ILLEGAL.exec(s);
  if (m) throw new SwitchboardError('twilio_protocol', `TwiML cannot carry the character at index ${m.index} (not allowed in XML)`);
  return s;
}

const text = (s: string): string => legal(s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#xD;'));

const attr = (s: string): string =>
  legal(s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;').replace(/\t/g, '&#x9;').replace(/\n/g, '&#xA;').replace(/\r/g, '&#xD;'));

function element(n: TwimlNode): string {
  let out = '<' + n.name;
  for (const [k, v] of Object.entries(n.attrs ?? {})) if (v !== undefined) out += ` ${k}="${attr(String(v))}"`;
  const inner = n.children !== undefined ? n.children.map(element).join('') : n.text !== undefined ? text(n.text) : '';
  return inner === '' ? out + '/>' : `${out}>${inner}</${n.name}>`;
}

/** `<?xml …?><Response>…</Response>` around `body`. @throws SwitchboardError `twilio_protocol` for a character XML cannot carry. */
export function twimlDocument(body: readonly TwimlNode[]): string {
  return '<?xml version="1.0" encoding="UTF-8"?>' + element({ name: 'Response', children: body });
}
