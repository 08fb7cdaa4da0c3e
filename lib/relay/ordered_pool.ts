/**
 * A bounded pool that runs tasks a few at a time and hands their results
 * to one sink in the order the tasks were submitted: the relay's batch runs
 * several sendmail processes at once and still answers its frames in order.
 * Pure (promises only: no clock, no timers, no I/O of its own).
 *
 * @module
 */

/**
 * Runs at most `limit` tasks at once; results reach the sink one at a time,
 * in submission order. At most `2·limit − 1` results wait (running or for
 * the sink) at a time, so a sink that stalls (a peer that reads no replies)
 * stops {@link OrderedPool.submit} instead of growing memory.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { OrderedPool } from "./ordered_pool.ts";
 * const seen: number[] = [];
 * const pool = new OrderedPool<number>(2, (n) => { seen.push(n); return Promise.resolve(); });
 * const later = (n: number, turns: number) => async () => {
 *   for (let i = 0; i < turns; i++) await Promise.resolve();
 *   return n;
 * };
 * await pool.submit(later(1, 20));
 * await pool.submit(later(2, 0));
 * await pool.submit(later(3, 5));
 * await pool.drain();
 * deepStrictEqual(seen, [1, 2, 3]);
 * ```
 */
export class OrderedPool<T> {
  #limit: number;
  #window: number;
  #sink: (value: T) => Promise<void>;
  #running = 0;
  #waiting = 0;
  #tail: Promise<void> = Promise.resolve();
  #wakers: (() => void)[] = [];
  #failed: { error: unknown } | undefined;

  /**
   * @param limit How many tasks may run at once (at least 1).
   * @param sink Receives each result, in submission order; once it throws,
   * later results are dropped and {@link OrderedPool.drain} throws that error.
   */
  constructor(limit: number, sink: (value: T) => Promise<void>) {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`Cannot create a pool of ${limit} tasks`);
    }
    this.#limit = limit;
    this.#window = 2 * limit - 1;
    this.#sink = sink;
  }

  /** Tasks started and not finished. */
  get running(): number {
    return this.#running;
  }

  /**
   * Waits for a free slot, then starts `task` and returns (without waiting
   * for it). The task should not reject: a rejection is treated as a sink
   * failure.
   */
  async submit(task: () => Promise<T>): Promise<void> {
    while (this.#running >= this.#limit || this.#waiting >= this.#window) {
      await new Promise<void>((resolve) => this.#wakers.push(resolve));
    }
    this.#running++;
    this.#waiting++;
    const result = task().finally(() => {
      this.#running--;
      this.#wake();
    });
    result.catch(() => {}); // observed below, in order; never unhandled meanwhile
    this.#tail = this.#tail.then(async () => {
      try {
        const value = await result;
        if (this.#failed === undefined) await this.#sink(value);
      } catch (error) {
        this.#failed ??= { error };
      } finally {
        this.#waiting--;
        this.#wake();
      }
    });
  }

  /**
   * Waits until every submitted result reached the sink.
   *
   * @throws What the sink (or a task) threw first.
   */
  async drain(): Promise<void> {
    let tail: Promise<void>;
    do {
      tail = this.#tail;
      await tail;
    } while (tail !== this.#tail);
    if (this.#failed !== undefined) throw this.#failed.error;
  }

  #wake(): void {
    for (const wake of this.#wakers.splice(0)) wake();
  }
}
