/**
 * The relay's state directory is shared: `/var/tmp` by default, where any
 * local account of the relay may create `rsendmail-<uid>` first. The BUILT
 * dist/rsendmail, as the relay account, against a sticky world-writable
 * state directory (as /var/tmp is) that another account squatted: the
 * relay uses neither the squatter's directory nor a symlink's target,
 * creates nothing in them, and still delivers (without its duplicate
 * record); a key with `--max-sessions` defers instead (no limit silently
 * dropped). Control: a fresh state directory keeps the record.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ensureUser,
  expectNoToken,
  run,
  runRelayAs,
  sleep,
  spawnRelayAs,
  startPostfix,
  takeByToken,
  token,
  waitFor,
} from "./_bed.ts";
import { Sha256 } from "../../lib/shared/sha256.ts";
import { lockFileOf } from "../../lib/relay/dedup_io.ts";

const RELAY_USER = "rsmrelay";
const SQUATTER = "rsmbench";
const RCPT = "rsmrcpt";

/** A sticky, world-writable state directory, as /var/tmp is. */
async function sharedState(): Promise<{ top: string; state: string }> {
  const top = await Deno.makeTempDir({ prefix: "rsm-state-" });
  await Deno.chmod(top, 0o755);
  const state = `${top}/state`;
  await Deno.mkdir(state);
  await Deno.chmod(state, 0o1777);
  return { top, state };
}

/** A fresh message id. */
const newId = () => `m${crypto.randomUUID().replaceAll("-", "")}`;

/** One message with --size, --sha256 and --id, as the relay account. */
async function send(state: string, tok: string, admin: string[] = [], id = newId()) {
  const body = new TextEncoder().encode(`Subject: state\n\n${tok}\n`);
  const sha = new Sha256().update(body).hex();
  const request = `sendmail --size=${body.length} --sha256=${sha} --id=${id} -- ${RCPT}@relay.test`;
  const r = await runRelayAs(RELAY_USER, request, [
    "--state-dir",
    state,
    "--syslog-socket",
    `${state}/no-syslog`,
    ...admin,
  ], body);
  return { ...r, id };
}

const entries = async (dir: string) => {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names;
};

Deno.test({
  name:
    "relay: another account's rsendmail-<uid> in the shared state directory is not used, and nothing is created in it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    ensureUser(RELAY_USER);
    ensureUser(SQUATTER);
    const postfix = await startPostfix();
    const box = postfix.mailbox(RCPT);
    const uid = (await run("/usr/bin/id", ["-u", RELAY_USER])).stdout.trim();
    const { top, state } = await sharedState();
    const mine = `${state}/rsendmail-${uid}`;
    try {
      await t.step("control: a fresh state directory: delivered, and the id recorded", async () => {
        const tok = token("state");
        const r = await send(state, tok);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stderr, "");
        await takeByToken(box, tok);
        assert.ok((await entries(`${mine}/_`)).includes(r.id));
        await Deno.remove(mine, { recursive: true });
      });

      await t.step(
        "control: a --state-dir that does not exist is made whole, each level 0700; the next session finds it made and records there too",
        async () => {
          const fresh = `${state}/new/deeper`;
          const made = `${fresh}/rsendmail-${uid}`;
          for (const tok of [token("fresh"), token("again")]) {
            const r = await send(fresh, tok);
            assert.equal(r.code, 0, r.stderr);
            assert.equal(r.stderr, "");
            await takeByToken(box, tok);
            assert.ok((await entries(`${made}/_`)).includes(r.id));
          }
          for (const d of [made, `${made}/_`]) {
            assert.equal((await Deno.lstat(d)).mode! & 0o777, 0o700, d);
          }
        },
      );

      await t.step(
        "attack: a squatter's directory as rsendmail-<uid> (0777): not used, left empty; mail still goes",
        async () => {
          await Deno.mkdir(mine);
          await run("/usr/bin/chown", [`${SQUATTER}:`, mine]);
          await Deno.chmod(mine, 0o777);
          const tok = token("squat");
          const r = await send(state, tok);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stderr, "");
          await takeByToken(box, tok);
          assert.deepEqual(await entries(mine), []);
        },
      );

      await t.step(
        "attack: the same squat under a key with --max-sessions: deferred (75, 4.3.0), nothing sent, nothing created",
        async () => {
          const tok = token("squatlim");
          const r = await send(state, tok, ["--max-sessions", "2"]);
          assert.equal(r.code, 75, r.stderr);
          assert.equal(r.stderr, "4.3.0 rsendmail: relay state directory unusable\n");
          await expectNoToken(box, tok);
          assert.deepEqual(await entries(mine), []);
          await Deno.remove(mine);
        },
      );

      await t.step(
        "attack: rsendmail-<uid> as a symlink to the squatter's directory: not followed, its target left empty; mail still goes",
        async () => {
          const target = `${top}/squatter-target`;
          await Deno.mkdir(target);
          await run("/usr/bin/chown", [`${SQUATTER}:`, target]);
          await Deno.chmod(target, 0o777);
          await Deno.symlink(target, mine);
          await run("/usr/bin/chown", ["-h", `${SQUATTER}:`, mine]);
          const tok = token("symlink");
          const r = await send(state, tok);
          assert.equal(r.code, 0, r.stderr);
          await takeByToken(box, tok);
          assert.deepEqual(await entries(target), []);
          await Deno.remove(mine);
        },
      );
    } finally {
      await Deno.remove(top, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "relay: an id's delivery lock: a peer stalled mid-message holds none; a holder killed (-9) leaves nothing that holds the retry; a live holder holds it until it lets go",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    ensureUser(RELAY_USER);
    const postfix = await startPostfix();
    const box = postfix.mailbox(RCPT);
    const uid = (await run("/usr/bin/id", ["-u", RELAY_USER])).stdout.trim();
    const { top, state } = await sharedState();
    const record = `${state}/rsendmail-${uid}/_`;
    const isHeld = async (lock: string) =>
      await Deno.lstat(lock).then(() => true, () => false) &&
      (await run("/usr/bin/flock", ["-n", lock, "/bin/true"], { check: false })).code !== 0;
    /**
     * The id's lock held as another relay delivering it would hold it
     * (flock(1) as the relay account, the lock kept by flock itself), until
     * the process is killed. Resolves once the lock is held.
     */
    const holder = async (id: string) => {
      const lock = `${record}/${lockFileOf(id)}`;
      const child = new Deno.Command("/usr/bin/setpriv", {
        args: [
          `--reuid=${RELAY_USER}`,
          `--regid=${RELAY_USER}`,
          "--init-groups",
          "/usr/bin/flock",
          "--close",
          lock,
          "/bin/sleep",
          "60",
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      await waitFor("the holder's lock", () => isHeld(lock));
      return child;
    };
    try {
      // The record directory, made by a first delivery.
      const first = await send(state, token("lockdir"));
      assert.equal(first.code, 0, first.stderr);

      await t.step(
        "attack: a peer that stalls mid-message (a slow link, or on purpose) holds no lock: the same id from another session is delivered at once, and the stalled one delivers nothing",
        async () => {
          const id = newId();
          const body = new TextEncoder().encode(`Subject: stalled\n\n${"x".repeat(500)}\n`);
          const sha = new Sha256().update(body).hex();
          const stalled = spawnRelayAs(
            RELAY_USER,
            `sendmail --size=${body.length} --sha256=${sha} --id=${id} -- ${RCPT}@relay.test`,
            ["--state-dir", state, "--syslog-socket", `${state}/no-syslog`],
          );
          const peer = stalled.stdin.getWriter();
          await peer.write(body.subarray(0, 100));
          await sleep(500); // it has read what it got, and waits for the rest
          const tok = token("retry");
          // A retry held by the stalled upload would wait for its idle timeout: 10 s is plenty.
          const r = await Promise.race([send(state, tok, [], id), sleep(10_000)]);
          assert.ok(r, "the retry waited for a stalled upload");
          assert.equal(r.code, 0, r.stderr);
          await takeByToken(box, tok);
          await peer.close();
          assert.notEqual((await stalled.status).code, 0);
          await expectNoToken(box, "stalled");
        },
      );

      await t.step(
        "attack: the lock's holder is killed (OOM, an admin's kill -9, as a relay can be): the retry is delivered at once",
        async () => {
          const id = newId();
          const held = await holder(id);
          held.kill("SIGKILL");
          await held.status;
          const tok = token("killed");
          // A relay that waited on a dead holder's lock would wait for ever: 10 s is plenty.
          const r = await Promise.race([send(state, tok, [], id), sleep(10_000)]);
          assert.ok(r, "the retry waited on a dead holder's lock");
          assert.equal(r.code, 0, r.stderr);
          await takeByToken(box, tok);
          assert.ok((await entries(record)).includes(id));
          assert.ok(
            !(await entries(record)).some((n) => n.endsWith(".lock")),
            "no lock file per id",
          );
        },
      );

      await t.step(
        "control: the lock's holder is alive (another session delivering the same id): the retry waits, then goes once it lets go",
        async () => {
          const id = newId();
          const held = await holder(id);
          const tok = token("live");
          let done = false;
          const sending = send(state, tok, [], id).finally(() => done = true);
          await sleep(2000);
          assert.equal(done, false, "the retry did not wait for the lock");
          held.kill("SIGTERM");
          await held.status;
          const r = await sending;
          assert.equal(r.code, 0, r.stderr);
          await takeByToken(box, tok);
        },
      );
    } finally {
      await Deno.remove(top, { recursive: true });
    }
  },
});
