import { deepStrictEqual } from "node:assert/strict";
import { type DropPollState, FIRST_DROP_POLL, nextDropPoll } from "../../lib/client/drop_poll.ts";

const GRAIN = 20;
const unsettled = (seen: number): DropPollState => ({ seen, settled: false });
const settled = (seen: number): DropPollState => ({ seen, settled: true });

Deno.test("nextDropPoll: reads on a new mtime, once more a grain after it, then rests", async (t) => {
  const cases: [string, DropPollState, number, number, boolean, DropPollState][] = [
    ["the first poll reads", FIRST_DROP_POLL, 1000, 1001, true, unsettled(1000)],
    ["a changed mtime reads", settled(1000), 1004, 1005, true, unsettled(1004)],
    [
      "a changed mtime reads, even an earlier one (clock set back)",
      settled(1000),
      990,
      991,
      true,
      unsettled(990),
    ],
    [
      "the same mtime within its grain: no read (a thousand polls a second read nothing)",
      unsettled(1000),
      1000,
      1019,
      false,
      unsettled(1000),
    ],
    [
      "the same mtime a grain on: one more read (a drop in the same tick as the last seen)",
      unsettled(1000),
      1000,
      1020,
      true,
      settled(1000),
    ],
    ["then the same mtime reads no more", settled(1000), 1000, 5000, false, settled(1000)],
    [
      "an mtime in the future (clock skew) waits for the sweep, not a read per poll",
      unsettled(9000),
      9000,
      1000,
      false,
      unsettled(9000),
    ],
  ];
  for (const [name, state, mtime, now, read, after] of cases) {
    await t.step(name, () => {
      deepStrictEqual(nextDropPoll(state, mtime, now, GRAIN), { read, state: after });
    });
  }
});
