/**
 * A full garbage collection, when the runtime offers one (V8's `gc`, given
 * by `--v8-flags=--expose-gc`); nothing otherwise. A long-lived process
 * calls it at quiet points: V8 on its own lets the garbage a message leaves
 * in the old generation pile up to twice the live heap before collecting,
 * which reads as memory that grows message after message.
 *
 * @module
 */

/** Collects now (true) or does nothing when gc is not exposed (false). */
export function collectGarbage(): boolean {
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc !== "function") return false;
  (gc as () => void)();
  return true;
}
