/**
 * The relay's id record forgets deliveries past `--dedup-days`: the BUILT
 * dist/rsendmail in batch mode, as the relay account, with its own
 * `--state-dir`. The scan (one lstat per record) runs at most hourly, told
 * by a marker's mtime, and after the replies: a batch holding no frame
 * still prunes before it exits. The delivery lock files (`.lock-XX`) are
 * not records: an unlinked lock file would let two relays hold "the" lock.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ensureUser, run, runRelayAs } from "./_bed.ts";

const RELAY_USER = "rsmrelay";
const DAY_MS = 86_400_000;

/** A state directory as the relay leaves it: `<state>/rsendmail-<uid>/_`, private to the account. */
async function stateWith(
  records: { name: string; ageMs: number }[],
): Promise<{ top: string; dir: string; state: string }> {
  ensureUser(RELAY_USER);
  const uid = (await run("/usr/bin/id", ["-u", RELAY_USER])).stdout.trim();
  const top = await Deno.makeTempDir({ prefix: "rsm-prune-" });
  await Deno.chmod(top, 0o755);
  const state = `${top}/state`;
  const dir = `${state}/rsendmail-${uid}/_`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  for (const r of records) {
    const path = `${dir}/${r.name}`;
    await Deno.writeTextFile(path, `${"0".repeat(64)}\n`, { mode: 0o600 });
    const when = new Date(Date.now() - r.ageMs);
    await Deno.utime(path, when, when);
  }
  await run("/usr/bin/chown", ["-R", `${RELAY_USER}:`, state]);
  await Deno.chmod(`${state}/rsendmail-${uid}`, 0o700);
  return { top, dir, state };
}

/** A batch of no frame (`END` only), as the relay account. */
function emptyBatch(state: string) {
  const admin = ["--state-dir", state, "--syslog-socket", `${state}/no-syslog`];
  return runRelayAs(RELAY_USER, "sendmail --batch", admin, "END\n");
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

Deno.test("relay: the id record forgets a delivery past --dedup-days (7) and keeps a fresh one; at most hourly", async (t) => {
  const { top, dir, state } = await stateWith([
    { name: "old-id", ageMs: 8 * DAY_MS },
    { name: "fresh-id", ageMs: 6 * DAY_MS },
    // A delivery lock, made long ago and never touched since: it is no record.
    { name: ".lock-2a", ageMs: 30 * DAY_MS },
  ]);
  try {
    await t.step("a batch with no frame prunes before it exits, silently", async () => {
      const res = await emptyBatch(state);
      assert.deepEqual(res, { code: 0, stdout: "", stderr: "" });
      assert.equal(await exists(`${dir}/old-id`), false, "the 8-day-old record is gone");
      assert.equal(await exists(`${dir}/fresh-id`), true, "the 6-day-old record stays");
      assert.equal(await exists(`${dir}/.pruned`), true, "the marker is written");
      assert.equal(await exists(`${dir}/.lock-2a`), true, "a lock file stays, however old");
    });
    await t.step("within the hour of the last scan, an old record waits for the next", async () => {
      const path = `${dir}/old-again`;
      await Deno.writeTextFile(path, "x\n", { mode: 0o600 });
      const when = new Date(Date.now() - 8 * DAY_MS);
      await Deno.utime(path, when, when);
      await run("/usr/bin/chown", [`${RELAY_USER}:`, path]);
      const res = await emptyBatch(state);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(await exists(path), true);
    });
  } finally {
    await Deno.remove(top, { recursive: true });
  }
});
