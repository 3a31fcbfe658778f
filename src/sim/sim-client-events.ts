/**
 * The client events a simulated model session serves, validated as the real API does: each one
 * either changes the session's state and answers, or answers `error` naming the client's event_id
 * and changes nothing. The socket, the input audio and the responses in flight are the
 * connection's (sim-connection.ts), which owns the state these handlers read and write.
 */
import type { SimTurn } from './sim-model-script.js';
import type { SimModelOptions, SimSession } from './sim-options.js';
import type { ActiveResponse } from './sim-response.js';
import { echoedSession, isObject, mergeSession, sessionProblem, turnDetectionOf, type ClientEvent, type NAMES, type TurnDetection } from './sim-session-config.js';
import type { SimUsageMeter } from './sim-usage.js';

/** One session's state, shared by the connection and its event handlers. */
export interface SimSessionState {
  readonly info: SimSession;
  readonly names: (typeof NAMES)['ga' | 'beta'];
  /** The session's longest silence before speech ends (the mode's cap). */
  readonly maxSilenceMs: number;
  readonly meter: SimUsageMeter;
  td: TurnDetection;
  /** The last item of the conversation: `previous_item_id` of the next. */
  lastItemId: string | null;
  /** What the next response answers. */
  turn: SimTurn;
  /** Function names by call_id: what a function_call_output answers. */
  readonly callNames: Map<string, string>;
  /** Audio ms sent per assistant item: what conversation.item.truncate checks against. */
  readonly itemSentMs: Map<string, number>;
  response: ActiveResponse | undefined;
  /** The caller's speech item VAD opened, until it is committed or cleared. */
  userItemId: string | undefined;
}

/** What handling an event may do beyond the state: the connection's own actions. */
export interface SimSessionActions {
  send(ev: Record<string, unknown>): void;
  error(code: string, message: string, clientEventId: unknown, param?: string | null): void;
  newId(prefix: string): string;
  /** Input audio buffered since the last commit or clear. */
  bufferedBytes(): number;
  commit(itemId: string): void;
  resetInput(): void;
  startResponse(instructions: string | undefined, toolsOverride: unknown): void;
  cancelResponse(reason: 'turn_detected' | 'client_cancelled'): void;
  /** A session.update was applied (faults that wait for one act now). */
  sessionUpdated(): void;
}

export class SimClientEvents {
  constructor(
    private readonly s: SimSessionState,
    private readonly opts: SimModelOptions,
    private readonly a: SimSessionActions,
  ) {}

  /** One parsed client event with a string `type`. */
  handle(ev: ClientEvent): void {
    const { s, a } = this;
    switch (ev.type) {
      case 'session.update':
        return this.sessionUpdate(ev);
      case 'input_audio_buffer.commit':
        if (a.bufferedBytes() === 0) {
          return a.error('input_audio_buffer_commit_empty', 'Error committing input audio buffer: buffer too small.', ev.event_id);
        }
        return a.commit(s.userItemId ?? a.newId('item'));
      case 'input_audio_buffer.clear':
        a.resetInput();
        return a.send({ type: 'input_audio_buffer.cleared' });
      case 'conversation.item.create':
        return this.itemCreate(ev);
      case 'conversation.item.truncate':
        return this.truncate(ev);
      case 'response.create':
        return this.responseCreate(ev);
      case 'response.cancel':
        if (!s.response) {
          return a.error('response_cancel_not_active', 'Cancellation failed: no active response found.', ev.event_id);
        }
        return a.cancelResponse('client_cancelled');
      default:
        return a.error('unknown_event', `Invalid event type '${ev.type}'.`, ev.event_id, 'type');
    }
  }

  private sessionUpdate(ev: ClientEvent): void {
    const { s, a } = this;
    const patch = ev.session;
    const shape = s.info.shape;
    if (!isObject(patch)) return a.error('invalid_value', "Missing 'session'.", ev.event_id, 'session');
    if (shape === 'ga') {
      if (patch.type === undefined) {
        return a.error('missing_required_parameter', "Missing required parameter: 'session.type'.", ev.event_id, 'session.type');
      }
      if (patch.type !== 'realtime') {
        return a.error('invalid_value', "Only session.type 'realtime' is supported here.", ev.event_id, 'session.type');
      }
    } else if ('type' in patch) {
      return a.error('unknown_parameter', "Unknown parameter: 'session.type'.", ev.event_id, 'session.type');
    }
    const rejected = this.opts.faults?.rejectSessionUpdate;
    if (rejected) return a.error(rejected.code, rejected.message, ev.event_id, rejected.param ?? null);
    const problem = sessionProblem(patch, shape);
    if (problem) return a.error(problem.code, problem.message, ev.event_id, problem.param);
    const session = (s.info.session = mergeSession(s.info.session, patch));
    s.meter.session(typeof session.instructions === 'string' ? session.instructions : '', session.tools);
    s.td = turnDetectionOf(session, shape, s.maxSilenceMs);
    a.send({ type: 'session.updated', session: echoedSession(session, shape, this.opts.mulawEcho ?? 'object') });
    a.sessionUpdated();
  }

  private itemCreate(ev: ClientEvent): void {
    const { s, a } = this;
    const item = ev.item;
    if (!isObject(item) || typeof item.type !== 'string') {
      return a.error('invalid_value', "Missing or invalid 'item'.", ev.event_id, 'item');
    }
    if (item.type === 'function_call') {
      // A client-created call (a moved call's earlier tool use): its output may follow, as on the real API.
      if (typeof item.call_id !== 'string' || typeof item.name !== 'string' || typeof item.arguments !== 'string') {
        return a.error('invalid_value', 'function_call needs string call_id, name and arguments.', ev.event_id, 'item');
      }
      s.callNames.set(item.call_id, item.name);
    } else if (item.type === 'function_call_output') {
      if (typeof item.call_id !== 'string' || typeof item.output !== 'string') {
        return a.error('invalid_value', 'function_call_output needs string call_id and output.', ev.event_id, 'item');
      }
      const name = s.callNames.get(item.call_id);
      if (name === undefined) {
        return a.error('invalid_value', `No function call found with call_id '${item.call_id}'.`, ev.event_id, 'item.call_id');
      }
      s.turn = { kind: 'tool_output', name, output: item.output };
      s.meter.textItem(item.output);
    } else if (item.type === 'message' && item.role === 'user' && Array.isArray(item.content)) {
      const text = item.content
        .map((c: unknown) => (isObject(c) && typeof c.text === 'string' ? c.text : isObject(c) && typeof c.transcript === 'string' ? c.transcript : ''))
        .filter((t: string) => t !== '')
        .join(' ');
      if (text !== '') s.turn = { kind: 'utterance', text };
      s.meter.textItem(text);
    }
    const id = typeof item.id === 'string' ? item.id : a.newId('item');
    const full = { ...item, id, object: 'realtime.item', status: 'completed' };
    a.send({ type: s.names.itemAdded, previous_item_id: s.lastItemId, item: full });
    if (s.info.shape === 'ga') a.send({ type: 'conversation.item.done', previous_item_id: s.lastItemId, item: full });
    s.lastItemId = id;
  }

  private truncate(ev: ClientEvent): void {
    const { s, a } = this;
    const { item_id: itemId, content_index: contentIndex, audio_end_ms: endMs } = ev;
    if (typeof itemId !== 'string') return a.error('invalid_value', "Missing 'item_id'.", ev.event_id, 'item_id');
    if (typeof endMs !== 'number' || !Number.isInteger(endMs) || endMs < 0) {
      return a.error('invalid_value', "'audio_end_ms' must be a non-negative integer.", ev.event_id, 'audio_end_ms');
    }
    if (contentIndex !== undefined && contentIndex !== 0) {
      return a.error('invalid_value', 'Only content_index 0 holds audio.', ev.event_id, 'content_index');
    }
    const sentMs = s.itemSentMs.get(itemId);
    if (sentMs === undefined) {
      return a.error('invalid_value', `Item with item_id '${itemId}' not found or has no audio.`, ev.event_id, 'item_id');
    }
    if (endMs > sentMs) {
      return a.error('invalid_value', `Audio content of ${sentMs}ms is already shorter than ${endMs}ms`, ev.event_id, 'audio_end_ms');
    }
    s.itemSentMs.set(itemId, endMs);
    s.meter.truncated(itemId, endMs);
    a.send({ type: 'conversation.item.truncated', item_id: itemId, content_index: 0, audio_end_ms: endMs });
  }

  private responseCreate(ev: ClientEvent): void {
    const { s, a } = this;
    if (s.response) {
      return a.error(
        'conversation_already_has_active_response',
        `Conversation already has an active response in progress: ${s.response.id}. Wait until the response is finished before creating a new one.`,
        ev.event_id,
      );
    }
    const r = isObject(ev.response) ? ev.response : {};
    a.startResponse(typeof r.instructions === 'string' ? r.instructions : undefined, r.tools);
  }
}
