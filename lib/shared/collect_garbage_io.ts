/**
 * A full garbage collection, when the runtime offers one (V8's `gc`, given
 * by `--v8-flags=--expose-gc`, or found at run time by {@link exposeGc});
 * nothing otherwise. A long-lived process calls it at quiet points: V8 on
 * its own lets the garbage a message leaves in the old generation pile up
 * to twice the live heap before collecting, which reads as memory that
 * grows message after message.
 *
 * @module
 */

/** The gc that {@link exposeGc} found, when the command line gave none. */
let found: (() => void) | undefined;

/** Collects now (true) or does nothing when gc is not exposed (false). */
export function collectGarbage(): boolean {
  const gc = (globalThis as { gc?: unknown }).gc ?? found;
  if (typeof gc !== "function") return false;
  (gc as () => void)();
  return true;
}

/**
 * Finds V8's gc at run time, for a process whose first line has no room
 * for `--expose-gc`: the flag set through `node:v8`, then a fresh
 * `node:vm` context, which V8 gives a `gc` once the flag is on. Loading
 * Deno's Node layer costs tens of milliseconds once, so only a long
 * session asks. True when gc can be called.
 */
export async function exposeGc(): Promise<boolean> {
  if (typeof (globalThis as { gc?: unknown }).gc === "function" || found) return true;
  try {
    const [v8, vm] = await Promise.all([import("node:v8"), import("node:vm")]);
    v8.setFlagsFromString("--expose-gc");
    const gc: unknown = vm.runInNewContext("gc");
    if (typeof gc === "function") found = gc as () => void;
  } catch {
    // No Node layer, or no gc: V8 collects on its own.
  }
  return found !== undefined;
}
