/**
 * One timeout, two kinds of timer. A fresh process starts an
 * `AbortSignal.timeout` for free, where its first `setTimeout` costs
 * milliseconds; but an `AbortSignal.timeout` cannot be cleared, so a
 * long-running process that armed one per message would hold each for its
 * whole length. The relay's first frame, a one-message relay and a `-bs`
 * session's first frame use the first kind (`cold`); everything else the
 * second.
 *
 * @module
 */

/** A signal aborted after its time, and the way to stop its timer. */
export interface Timeout {
  readonly signal: AbortSignal;
  /** Stops the timer: the signal is then never aborted (a cold timer runs on, unheard). */
  clear(): void;
}

/** A signal aborted after `ms`: an `AbortSignal.timeout` when `cold`, else a cleared `setTimeout`. */
export function startTimeout(ms: number, cold: boolean): Timeout {
  const controller = new AbortController();
  if (cold) {
    const timer = AbortSignal.timeout(ms);
    const abort = () => controller.abort();
    timer.addEventListener("abort", abort, { once: true });
    return { signal: controller.signal, clear: () => timer.removeEventListener("abort", abort) };
  }
  const timer = setTimeout(() => controller.abort(), ms);
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/**
 * Resolves once `timeout` fires, never rejects (a cold timer may fire long
 * after the race it was in is over).
 */
export function fired(timeout: Timeout): Promise<void> {
  const { signal } = timeout;
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}
