/**
 * What the simulated model reports in each `response.done` `usage`: tokens counted the way OpenAI
 * bills them, from what the session holds. Pure bookkeeping: sim-connection.ts owns the socket,
 * sim-client-events.ts the client events.
 *
 * The rules follow OpenAI's realtime cost guide: the whole conversation is the input of every
 * response; user audio is 1 token per 100 ms, assistant audio 1 token per 50 ms; text is ~4 chars a
 * token plus a few special tokens per item; the prefix already sent with the previous response is
 * reported as cached (a subset of the input), until a truncation or session.update changes it.
 */
import type { ResponseUsage } from '../model/index.js';

/** The GA wire block, as OpenAI sends it. */
export interface SimUsageWire {
  total_tokens: number;
  input_tokens: number;
  output_tokens: number;
  input_token_details: {
    text_tokens: number;
    audio_tokens: number;
    image_tokens: number;
    cached_tokens: number;
    cached_tokens_details: { text_tokens: number; audio_tokens: number; image_tokens: number };
  };
  output_token_details: { text_tokens: number; audio_tokens: number };
}

/** Everything a session reported, summed over its responses: what tests compare the relay against. */
export interface SimUsageTotals extends ResponseUsage {
  responses: number;
}

export function emptySimUsage(): SimUsageTotals {
  return { responses: 0, inputText: 0, inputAudio: 0, inputTextCached: 0, inputAudioCached: 0, outputText: 0, outputAudio: 0 };
}

/** Special tokens wrapping each conversation item. */
const ITEM_OVERHEAD = 4;

export const textTokens = (s: string): number => Math.ceil(s.length / 4);
/** Caller audio: 1 token per 100 ms. */
export const inputAudioTokens = (ms: number): number => Math.ceil(ms / 100);
/** Assistant audio: 1 token per 50 ms. */
export const outputAudioTokens = (ms: number): number => Math.ceil(ms / 50);

/** One finished response as the meter needs it. */
export interface SimResponseFacts {
  /** Audio ms generated (sent) for this response; cancelled responses stop early. */
  generatedMs: number;
  /** Transcript of a spoken reply, or a function call's name + arguments. */
  text: string;
  isTool: boolean;
}

/** One session's conversation in tokens, and the running totals of what it reported. */
export class SimUsageMeter {
  private systemText = 0;
  /** Conversation items before the current response, by modality. */
  private itemsText = 0;
  private callerAudioMs = 0;
  /** Assistant audio kept in the conversation, per item (truncation shortens it). */
  private readonly assistantMs = new Map<string, number>();
  private prevInput: { text: number; audio: number } | undefined;
  private cacheBroken = false;

  constructor(private readonly totals: SimUsageTotals) {}

  /** session.update: instructions and tools are the head of every input. */
  session(instructions: string, tools: unknown): void {
    const next = textTokens(instructions) + (Array.isArray(tools) && tools.length > 0 ? textTokens(JSON.stringify(tools)) : 0) + ITEM_OVERHEAD;
    if (next !== this.systemText) this.cacheBroken = true;
    this.systemText = next;
  }

  /** A committed stretch of caller audio. */
  callerAudio(ms: number): void {
    this.callerAudioMs += ms;
    this.itemsText += ITEM_OVERHEAD;
  }

  /** A text item the client added (message, function_call_output). */
  textItem(text: string): void {
    this.itemsText += textTokens(text) + ITEM_OVERHEAD;
  }

  /** conversation.item.truncate: the item's audio in the conversation is now `ms` long. */
  truncated(itemId: string, ms: number): void {
    if (!this.assistantMs.has(itemId)) return;
    this.assistantMs.set(itemId, ms);
    this.cacheBroken = true;
  }

  /** The usage block of a finished (or cancelled) response; the response joins the conversation. */
  responseDone(itemId: string, r: SimResponseFacts): SimUsageWire {
    let audioMsInContext = 0;
    for (const ms of this.assistantMs.values()) audioMsInContext += ms;
    const inText = this.systemText + this.itemsText;
    const inAudio = inputAudioTokens(this.callerAudioMs) + outputAudioTokens(audioMsInContext);
    const cached = this.prevInput && !this.cacheBroken ? this.prevInput : { text: 0, audio: 0 };
    const cachedText = Math.min(cached.text, inText);
    const cachedAudio = Math.min(cached.audio, inAudio);
    const outText = textTokens(r.text) + (r.isTool ? ITEM_OVERHEAD : 0);
    const outAudio = r.isTool ? 0 : outputAudioTokens(r.generatedMs);
    this.prevInput = { text: inText, audio: inAudio };
    this.cacheBroken = false;
    // The response's own output is input to the next one.
    this.itemsText += outText + ITEM_OVERHEAD;
    if (!r.isTool) this.assistantMs.set(itemId, r.generatedMs);

    const t = this.totals;
    t.responses++;
    t.inputText += inText - cachedText;
    t.inputAudio += inAudio - cachedAudio;
    t.inputTextCached += cachedText;
    t.inputAudioCached += cachedAudio;
    t.outputText += outText;
    t.outputAudio += outAudio;
    return {
      total_tokens: inText + inAudio + outText + outAudio,
      input_tokens: inText + inAudio,
      output_tokens: outText + outAudio,
      input_token_details: {
        text_tokens: inText,
        audio_tokens: inAudio,
        image_tokens: 0,
        cached_tokens: cachedText + cachedAudio,
        cached_tokens_details: { text_tokens: cachedText, audio_tokens: cachedAudio, image_tokens: 0 },
      },
      output_token_details: { text_tokens: outText, audio_tokens: outAudio },
    };
  }
}
