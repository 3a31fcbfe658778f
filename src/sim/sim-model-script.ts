/**
 * What the simulated realtime model says: pure rules from (instructions, last conversation turn,
 * offered tools) to a spoken reply or a function call, and how long that reply's audio lasts.
 * Sockets, pacing, VAD and the wire protocol are sim-model.ts's and sim-connection.ts's business.
 */

/** How the sim paces and sizes its replies. */
export type SimMode = 'realistic' | 'loadtest';

/** What the model does in one response. */
export type SimReply =
  | { kind: 'speak'; text: string }
  | { kind: 'tool'; name: string; arguments: string };

/** The newest conversation input the next response answers. */
export type SimTurn =
  | { kind: 'utterance'; text: string }
  | { kind: 'tool_output'; name: string; output: string }
  | { kind: 'none' };

/** What real callers are transcribed as: they carry no spoken-text marker. */
export const UNINTELLIGIBLE = '(unintelligible)';

/** Replies longer than this are clipped: the spoken-text marker carries at most 255 × 96 bytes. */
const MAX_SPOKEN_CHARS = 4000;

const EXACTLY = /\bexactly:\s*([\s\S]+)$/i;
const CALL_TOOL = /\bcall tool\s+([A-Za-z_][A-Za-z0-9_-]*)\s*(\{[\s\S]*\})?/i;

/**
 * The text after `exactly:` in response instructions, without wrapping quotes.
 * The relay greets with `Greet the caller with exactly: Thanks for calling…`.
 */
export function exactText(instructions: string | undefined): string | undefined {
  if (instructions === undefined) return undefined;
  const m = EXACTLY.exec(instructions);
  if (!m?.[1]) return undefined;
  let text = m[1].trim();
  const q = text[0];
  if (text.length >= 2 && (q === '"' || q === "'" || q === '“') && /["'”]$/.test(text)) text = text.slice(1, -1).trim();
  return text === '' ? undefined : text;
}

/** Keyword rules in priority order: safety first, then the caller's explicit asks, then goodbye. */
const KEYWORD_RULES: ReadonlyArray<{ tool: string; re: RegExp; args: (text: string) => Record<string, unknown> }> = [
  {
    tool: 'flag_emergency',
    re: /\b(emergency|flood(?:ing|ed)?|gas)\b/i,
    args: (text) => ({ description: text, severity: /\bgas\b/i.test(text) ? 'critical' : 'high' }),
  },
  {
    tool: 'transfer_to_human',
    re: /\b(human|person)\b/i,
    args: () => ({ reason: 'caller asked for a person' }),
  },
  {
    tool: 'book_appointment',
    re: /\bbook(?:ing|ed)?\b/i,
    args: (text) => ({
      slot: slotIn(text) ?? '2030-01-07T09:00',
      service: serviceIn(text),
      postcode: postcodeIn(text) ?? '10001',
      customerName: 'Sim Caller',
    }),
  },
  {
    tool: 'quote_price',
    re: /\b(prices?|pricing|costs?|quotes?)\b/i,
    args: (text) => ({ service: serviceIn(text), afterHours: /\b(night|weekend|after.hours)\b/i.test(text) }),
  },
  {
    tool: 'check_service_area',
    re: /\b(areas?|postcodes?|zip(?:\s?code)?s?)\b/i,
    args: (text) => ({ postcode: postcodeIn(text) ?? '10001' }),
  },
  {
    tool: 'end_call',
    re: /\b(good)?bye\b/i,
    args: () => ({ reason: 'caller said goodbye' }),
  },
];

function postcodeIn(text: string): string | undefined {
  return /\b(\d{5})\b/.exec(text)?.[1];
}

function slotIn(text: string): string | undefined {
  return /\b(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})\b/.exec(text)?.[1];
}

function serviceIn(text: string): string {
  if (/\bdrain/i.test(text)) return 'drain_cleaning';
  if (/\b(water heater|boiler|hot water)/i.test(text)) return 'water_heater_repair';
  return 'leak_repair';
}

/**
 * The reply to a caller utterance: an explicit `call tool NAME {json}` (arguments passed through
 * verbatim, even when malformed, so relays can be tested against bad model output), a keyword rule
 * whose tool is offered, or an echo.
 */
export function replyToUtterance(text: string, tools: ReadonlySet<string>): SimReply {
  const explicit = CALL_TOOL.exec(text);
  if (explicit?.[1] && tools.has(explicit[1])) {
    return { kind: 'tool', name: explicit[1], arguments: explicit[2] ?? '{}' };
  }
  for (const rule of KEYWORD_RULES) {
    if (tools.has(rule.tool) && rule.re.test(text)) {
      return { kind: 'tool', name: rule.tool, arguments: JSON.stringify(rule.args(text)) };
    }
  }
  return { kind: 'speak', text: `You said: ${text.trim().replace(/[.!?]+$/, '')}. Anything else?` };
}

/** What the model says after a tool answered. */
export function replyToToolOutput(name: string, output: string): string {
  if (name === 'end_call') return 'Goodbye, have a good day.';
  return `Tool ${name} answered: ${output.slice(0, 120)}`;
}

/** The whole decision for one response. */
export function planReply(input: { instructions?: string | undefined; turn: SimTurn; tools: ReadonlySet<string> }): SimReply {
  const exact = exactText(input.instructions);
  let reply: SimReply;
  if (exact !== undefined) reply = { kind: 'speak', text: exact };
  else {
    const turn = input.turn;
    switch (turn.kind) {
      case 'tool_output':
        reply = { kind: 'speak', text: replyToToolOutput(turn.name, turn.output) };
        break;
      case 'utterance':
        reply = replyToUtterance(turn.text, input.tools);
        break;
      case 'none':
        reply = { kind: 'speak', text: 'Hello, how can I help you today?' };
        break;
    }
  }
  if (reply.kind === 'speak' && reply.text.length > MAX_SPOKEN_CHARS) {
    reply = { kind: 'speak', text: reply.text.slice(0, MAX_SPOKEN_CHARS) };
  }
  return reply;
}

/**
 * Audio length of a spoken reply, a whole number of 20 ms frames. Realistic: ~60 ms per character
 * (a brisk speaking rate), 600 ms to 6 s. Loadtest: a fixed second, so load is predictable.
 */
export function speechDurationMs(text: string, mode: SimMode): number {
  if (mode === 'loadtest') return 1000;
  const ms = Math.min(6000, Math.max(600, text.length * 60));
  return Math.ceil(ms / 20) * 20;
}
