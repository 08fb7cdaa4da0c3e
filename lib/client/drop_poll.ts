/**
 * When the service reads its drop directory: the decision of one poll, from
 * the directory's mtime. Pure.
 *
 * The kernel stamps a directory's mtime from a clock that moves once a
 * jiffy (1-10 ms): a drop renamed in during the same tick as the last one
 * seen leaves the mtime as it was. So the directory is read when its mtime
 * changes, once more when a read can no longer share the mtime's tick
 * (`grainMs` after it), and at every poll while the last read saw a drop
 * being written (its rename into place often comes within the same
 * millisecond as its creation, and Deno's mtime has milliseconds); not at
 * every poll while the mtime is recent, which read an unchanged directory
 * a thousand times a second.
 *
 * @module
 */

/** What the poller remembers between polls. */
export interface DropPollState {
  /** The mtime the last read followed (undefined: none yet). */
  seen: number | undefined;
  /** A read began at least `grainMs` after `seen`: nothing of its tick is left unread. */
  settled: boolean;
}

/** The state before the first poll. */
export const FIRST_DROP_POLL: DropPollState = { seen: undefined, settled: true };

/**
 * One poll: whether to read the directory now, and the state after.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { FIRST_DROP_POLL, nextDropPoll } from "./drop_poll.ts";
 * const first = nextDropPoll(FIRST_DROP_POLL, 1000, 1001, 20, false);
 * deepStrictEqual(first, { read: true, state: { seen: 1000, settled: false } });
 * deepStrictEqual(nextDropPoll(first.state, 1000, 1005, 20, false).read, false);
 * deepStrictEqual(nextDropPoll(first.state, 1000, 1005, 20, true).read, true);
 * deepStrictEqual(nextDropPoll(first.state, 1000, 1020, 20, false).read, true);
 * ```
 */
export function nextDropPoll(
  state: DropPollState,
  mtime: number,
  now: number,
  grainMs: number,
  writing: boolean,
): { read: boolean; state: DropPollState } {
  if (mtime !== state.seen) return { read: true, state: { seen: mtime, settled: false } };
  if (!state.settled && now - mtime >= grainMs) {
    return { read: true, state: { seen: mtime, settled: true } };
  }
  return { read: writing, state };
}
