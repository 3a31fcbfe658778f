/**
 * What a token costs: a built-in table of OpenAI realtime prices (with the date they were taken),
 * overridable by PRICE_TABLE_FILE, turned into whole nano-dollars per token so costs add up exactly.
 * Counting tokens is response-usage.ts's job; summing them per call is call-usage.ts's.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SwitchboardError } from '../errors.js';
import { TOKEN_KINDS, type ResponseUsage, type TokenKind } from '../model/index.js';

/** USD per 1M tokens, by billing kind. */
export type ModelPrices = Record<TokenKind, number>;

export interface PriceTable {
  /** When the prices were read off the vendor's pages (YYYY-MM-DD). */
  takenOn: string;
  source: string;
  currency: 'USD';
  models: Readonly<Record<string, ModelPrices>>;
}

const p = (text: [number, number, number], audio: [number, number, number]): ModelPrices => ({
  inputText: text[0],
  inputTextCached: text[1],
  outputText: text[2],
  inputAudio: audio[0],
  inputAudioCached: audio[1],
  outputAudio: audio[2],
});

/**
 * OpenAI realtime prices, USD per 1M tokens: [input, cached input, output] for text, then audio.
 * Taken 2026-12-05 from the model pages at developers.openai.com/api/docs/models/<model>. Azure
 * bills its deployments of these models at its own rates: give them in PRICE_TABLE_FILE.
 */
export const DEFAULT_PRICE_TABLE: PriceTable = Object.freeze({
  takenOn: '2026-12-05',
  source: 'https://developers.openai.com/api/docs/models',
  currency: 'USD',
  models: Object.freeze({
    'gpt-realtime': p([4, 0.4, 16], [32, 0.4, 64]),
    'gpt-realtime-1.5': p([4, 0.4, 16], [32, 0.4, 64]),
    'gpt-realtime-2': p([4, 0.4, 24], [32, 0.4, 64]),
    'gpt-realtime-mini': p([0.6, 0.06, 2.4], [10, 0.3, 20]),
    'gpt-realtime-2.1-mini': p([0.6, 0.06, 2.4], [10, 0.3, 20]),
    'gpt-4o-realtime-preview': p([5, 2.5, 20], [40, 2.5, 80]),
  }),
});

const Price = z.number().nonnegative().max(1_000_000);
const PriceFile = z.object({
  takenOn: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, { message: 'must be a date YYYY-MM-DD' }),
  source: z.string().default('operator'),
  /** Replace the built-in models instead of adding to them. */
  replace: z.boolean().default(false),
  models: z.record(
    z.string().min(1),
    z.object({
      inputText: Price,
      inputTextCached: Price,
      outputText: Price,
      inputAudio: Price,
      inputAudioCached: Price,
      outputAudio: Price,
    }),
  ),
});

/** The built-in table, or it overlaid (or replaced) by the operator's file. Bad files stop the start. */
export function loadPriceTable(path: string | undefined): PriceTable {
  if (path === undefined) return DEFAULT_PRICE_TABLE;
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new SwitchboardError('config_invalid', `PRICE_TABLE_FILE: cannot read ${path} as YAML or JSON`, false, { cause: err });
  }
  const r = PriceFile.safeParse(doc);
  if (!r.success) {
    throw new SwitchboardError('config_invalid', r.error.issues.map((i) => `PRICE_TABLE_FILE: ${i.path.join('.')}: ${i.message}`).join('\n'));
  }
  return Object.freeze({
    takenOn: r.data.takenOn,
    source: r.data.source,
    currency: 'USD',
    models: Object.freeze({ ...(r.data.replace ? {} : DEFAULT_PRICE_TABLE.models), ...r.data.models }),
  });
}

/** The entry for `model`: its exact name, else without a dated snapshot suffix (gpt-realtime-2025-08-28). */
export function pricesFor(table: PriceTable, model: string): ModelPrices | undefined {
  return table.models[model] ?? table.models[model.replace(/-\d{4}-\d{2}-\d{2}$/, '')];
}

/** Whole nano-dollars per token (USD per 1M tokens × 1000), rounded: sums of them stay exact. */
export type TokenRates = Readonly<Record<TokenKind, number>>;

export function tokenRates(prices: ModelPrices): TokenRates {
  const r = {} as Record<TokenKind, number>;
  for (const k of TOKEN_KINDS) r[k] = Math.round(prices[k] * 1000);
  return r;
}

/** Estimated cost of `u` in nano-dollars. */
export function costNanoUsd(u: Readonly<ResponseUsage>, rates: TokenRates): number {
  let c = 0;
  for (const k of TOKEN_KINDS) c += u[k] * rates[k];
  return c;
}

export const NANO_PER_USD = 1e9;
