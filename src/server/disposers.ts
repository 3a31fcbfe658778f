/**
 * What the relay opened, in order, so that one list closes it in reverse: on a normal stop and when
 * the start fails half-way (nothing may outlive a relay that never started).
 */
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';

export class Disposers {
  private readonly list: { name: string; fn: () => unknown }[] = [];

  /** `fn` runs on stop, before everything added earlier. */
  add(name: string, fn: () => unknown): void {
    this.list.push({ name, fn });
  }

  /**
   * Runs every disposer once, last added first. One that fails is logged and the rest still run;
   * the first failure is thrown after all ran.
   */
  async run(log: Logger): Promise<void> {
    const list = this.list.splice(0).reverse();
    let failure: { err: unknown } | undefined;
    for (const d of list) {
      try {
        await d.fn();
      } catch (err) {
        log.error({ code: 'internal', component: d.name, err: errorMessage(err) }, 'closing failed');
        failure ??= { err };
      }
    }
    if (failure) throw failure.err;
  }
}
