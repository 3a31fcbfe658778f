/**
 * One simulated response in progress: its state, its items as the API shows them, and its audio (a
 * continuous 440 Hz tone whose first frames carry the reply text as speechFrames markers, which the
 * simulated caller reads back), sent as 100 ms deltas.
 */
import { FRAME_BYTES, tone } from './portable/audio.js';
import type { SimReply } from './sim-model-script.js';
import type { SimModelOptions, SimSession } from './sim-options.js';

/** Outgoing deltas are 100 ms of μ-law in both modes: 5 frames. */
export const DELTA_BYTES = 800;
export const REPLY_HZ = 440;
const MAX_REPLY_BYTES = 6000 * 8;

export interface ActiveResponse {
  id: string;
  itemId: string;
  reply: SimReply;
  /** Speak replies: total audio bytes, bytes sent, the marker frames overlaid on the shared tone. */
  totalBytes: number;
  offset: number;
  markers: Uint8Array[];
  deltaHead: string;
  callId: string;
  /** Bytes sent since the last pause (burst mode). */
  burstBytes: number;
}

export type ItemStatus = 'in_progress' | 'completed' | 'incomplete';

// The reply tone is the same for every response (a continuous 440 Hz sine from sample 0, exactly what
// speechFrames produces), so it is built once and chunks without a text marker are encoded once.
let replyTone: Uint8Array | undefined;
function replyToneBytes(): Uint8Array {
  return (replyTone ??= tone(MAX_REPLY_BYTES, REPLY_HZ, 0));
}
const toneChunkB64 = new Map<number, string>();
function cachedToneB64(offset: number, length: number): string {
  const key = offset * 65536 + length;
  let s = toneChunkB64.get(key);
  if (s === undefined) {
    const t = replyToneBytes();
    s = Buffer.from(t.buffer, t.byteOffset + offset, length).toString('base64');
    toneChunkB64.set(key, s);
  }
  return s;
}

/**
 * The next `length` bytes of reply `r` from its offset, base64: the shared tone, with the reply's
 * marker frames overlaid and the bench's hook applied when either touches this chunk.
 */
export function replyAudioB64(r: ActiveResponse, length: number, hooks: SimModelOptions['hooks'], session: SimSession): string {
  const firstFrame = r.offset / FRAME_BYTES;
  if (hooks?.beforeAudioDelta === undefined && firstFrame >= r.markers.length) return cachedToneB64(r.offset, length);
  // A copy: the hook may stamp the bytes (the bench does), and markers overlay the shared tone.
  const chunk = replyToneBytes().slice(r.offset, r.offset + length);
  for (let f = firstFrame; f < r.markers.length && (f - firstFrame) * FRAME_BYTES < length; f++) {
    const m = r.markers[f];
    if (m) chunk.set(m, (f - firstFrame) * FRAME_BYTES);
  }
  hooks?.beforeAudioDelta?.(chunk, session);
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length).toString('base64');
}

/** The assistant message item of a spoken reply, as output_item.added/done and response.done carry it. */
export function audioItem(r: ActiveResponse, status: ItemStatus, audioPart: string): Record<string, unknown> {
  const transcript = r.reply.kind === 'speak' ? r.reply.text : '';
  return {
    id: r.itemId,
    object: 'realtime.item',
    type: 'message',
    role: 'assistant',
    status,
    content: status === 'in_progress' ? [] : [{ type: audioPart, transcript }],
  };
}

/** The function_call item of a tool reply; its arguments appear once the call is complete. */
export function toolItem(r: ActiveResponse, status: ItemStatus): Record<string, unknown> {
  const reply = r.reply;
  const name = reply.kind === 'tool' ? reply.name : '';
  return {
    id: r.itemId,
    object: 'realtime.item',
    type: 'function_call',
    status,
    call_id: r.callId,
    name,
    arguments: status === 'in_progress' || reply.kind !== 'tool' ? '' : reply.arguments,
  };
}
