import { deepStrictEqual } from "node:assert/strict";
import { type DropPollState, FIRST_DROP_POLL, nextDropPoll } from "../../lib/client/drop_poll.ts";

const GRAIN = 20;
const unsettled = (seen: number): DropPollState => ({ seen, settled: false });
const settled = (seen: number): DropPollState => ({ seen, settled: true });

interface Row {
  name: string;
  state: DropPollState;
  mtime: number;
  now: number;
  /** The last read saw a drop being written. */
  writing?: boolean;
  read: boolean;
  after: DropPollState;
}

const ROWS: Row[] = [
  {
    name: "the first poll reads",
    state: FIRST_DROP_POLL,
    mtime: 1000,
    now: 1001,
    read: true,
    after: unsettled(1000),
  },
  {
    name: "a changed mtime reads",
    state: settled(1000),
    mtime: 1004,
    now: 1005,
    read: true,
    after: unsettled(1004),
  },
  {
    name: "a changed mtime reads, even an earlier one (clock set back)",
    state: settled(1000),
    mtime: 990,
    now: 991,
    read: true,
    after: unsettled(990),
  },
  {
    name: "the same mtime within its grain: no read (a thousand polls a second read nothing)",
    state: unsettled(1000),
    mtime: 1000,
    now: 1019,
    read: false,
    after: unsettled(1000),
  },
  {
    name: "the same mtime a grain on: one more read (a drop in the same tick as the last seen)",
    state: unsettled(1000),
    mtime: 1000,
    now: 1020,
    read: true,
    after: settled(1000),
  },
  {
    name: "then the same mtime reads no more",
    state: settled(1000),
    mtime: 1000,
    now: 5000,
    read: false,
    after: settled(1000),
  },
  {
    name: "a drop being written: read at every poll (its rename may keep the same millisecond)",
    state: unsettled(1000),
    mtime: 1000,
    now: 1002,
    writing: true,
    read: true,
    after: unsettled(1000),
  },
  {
    name: "a drop being written, the mtime settled long ago: still read",
    state: settled(1000),
    mtime: 1000,
    now: 5000,
    writing: true,
    read: true,
    after: settled(1000),
  },
  {
    name: "an mtime in the future (clock skew) waits for the sweep, not a read per poll",
    state: unsettled(9000),
    mtime: 9000,
    now: 1000,
    read: false,
    after: unsettled(9000),
  },
];

Deno.test("nextDropPoll: reads on a new mtime, once more a grain after it, while a drop is written, then rests", async (t) => {
  for (const r of ROWS) {
    await t.step(r.name, () => {
      deepStrictEqual(nextDropPoll(r.state, r.mtime, r.now, GRAIN, r.writing ?? false), {
        read: r.read,
        state: r.after,
      });
    });
  }
});
