/**
 * The `usage` block of a realtime `response.done`, parsed into non-overlapping token kinds. Owns the
 * wire shape only; what a call or tenant used in total, and what it cost, is src/usage/'s job.
 *
 * Wire shape (OpenAI GA and Azure, openai-node `RealtimeResponseUsage`):
 *   { total_tokens, input_tokens, output_tokens,
 *     input_token_details: { text_tokens, audio_tokens, image_tokens, cached_tokens,
 *                            cached_tokens_details: { text_tokens, audio_tokens, image_tokens } },
 *     output_token_details: { text_tokens, audio_tokens } }
 * Cached tokens are a subset of the input tokens; they are billed at their own, lower price.
 */
import { z } from 'zod';

/**
 * Tokens of one response by billing kind. Input kinds do not overlap: `inputText` is the uncached
 * text, `inputTextCached` the cached text, so the six fields add up to `total_tokens` (images, never
 * sent by a phone call, are counted as text).
 */
export interface ResponseUsage {
  inputText: number;
  inputAudio: number;
  inputTextCached: number;
  inputAudioCached: number;
  outputText: number;
  outputAudio: number;
}

export const TOKEN_KINDS = ['inputText', 'inputAudio', 'inputTextCached', 'inputAudioCached', 'outputText', 'outputAudio'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

const count = z.number().int().nonnegative().catch(0).optional().nullable();
const Details = z
  .object({ text_tokens: count, audio_tokens: count, image_tokens: count, cached_tokens: count })
  .loose()
  .optional()
  .nullable()
  .catch(undefined);
/** Every field optional and forgiving: a usage block never fails a response.done. */
export const UsageWire = z
  .object({
    input_tokens: count,
    output_tokens: count,
    total_tokens: count,
    input_token_details: z
      .object({ text_tokens: count, audio_tokens: count, image_tokens: count, cached_tokens: count, cached_tokens_details: Details })
      .loose()
      .optional()
      .nullable()
      .catch(undefined),
    output_token_details: Details,
  })
  .loose();
export type UsageWire = z.infer<typeof UsageWire>;

const n = (v: number | null | undefined): number => v ?? 0;

/**
 * Split a wire usage block into billing kinds. Without details (an old or partial gateway) input and
 * output tokens count as text, the cheaper kind: an estimate never invents audio it was not told about.
 */
export function usageFromWire(u: UsageWire): ResponseUsage {
  const inD = u.input_token_details;
  const outD = u.output_token_details;
  const cached = inD?.cached_tokens_details;
  const inAudio = n(inD?.audio_tokens);
  // Partial details: whatever input_tokens has beyond the listed kinds is text.
  const inText = Math.max(n(inD?.text_tokens) + n(inD?.image_tokens), n(u.input_tokens) - inAudio);
  // Details of cached tokens may be missing while cached_tokens is given: attribute them to text.
  const cachedAudio = Math.min(inAudio, n(cached?.audio_tokens));
  const cachedText = Math.min(inText, cached ? n(cached.text_tokens) + n(cached.image_tokens) : n(inD?.cached_tokens));
  const outAudio = n(outD?.audio_tokens);
  const outText = Math.max(n(outD?.text_tokens), n(u.output_tokens) - outAudio);
  return {
    inputText: inText - cachedText,
    inputAudio: inAudio - cachedAudio,
    inputTextCached: cachedText,
    inputAudioCached: cachedAudio,
    outputText: outText,
    outputAudio: outAudio,
  };
}

/** Sum of every kind: equals the wire's `total_tokens` for a well-formed block. */
export function totalTokens(u: Readonly<ResponseUsage>): number {
  let t = 0;
  for (const k of TOKEN_KINDS) t += u[k];
  return t;
}
