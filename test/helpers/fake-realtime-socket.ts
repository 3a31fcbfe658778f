/**
 * A scripted model socket for unit tests of the call's parts: records what is sent (parsed), lets
 * the test play the model's events and close, and remembers how it was closed.
 */
import type { RealtimeSocket } from '../../src/model/index.js';

export class FakeRealtimeSocket implements RealtimeSocket {
  sent: Record<string, unknown>[] = [];
  bufferedAmount = 0;
  isOpen = true;
  droppedSends = 0;
  /** How the relay closed it (code and reason), once it did. */
  closed: { code: number; reason: string | undefined } | undefined;
  private msg: ((d: Buffer) => void) | undefined;
  private closeCb: ((code: number, reason: string) => void) | undefined;
  send(text: string): void {
    this.sent.push(JSON.parse(text) as Record<string, unknown>);
  }
  onMessage(cb: (d: Buffer) => void): void {
    this.msg = cb;
  }
  onClose(cb: (code: number, reason: string) => void): void {
    this.closeCb = cb;
  }
  close(code = 1000, reason?: string): void {
    this.closed = { code, reason };
    this.isOpen = false;
  }
  /** The model sends `ev`. */
  emit(ev: Record<string, unknown>): void {
    this.msg!(Buffer.from(JSON.stringify(ev)));
  }
  /** The socket goes away under the relay (the model closed it, or the network). */
  drop(code: number, reason = 'gone'): void {
    this.closeCb!(code, reason);
  }
  types(): string[] {
    return this.sent.map((e) => e['type'] as string);
  }
}
