/**
 * `sshsendmail setup` from nothing to a delivered test message against the
 * real relay bed: key made, host key recorded, authorized_keys line
 * installed over an admin login, config written, test message delivered;
 * then `--test ADDR` alone repeats the last step. And the refusals: a relay
 * whose host key changed is not trusted, a host starting with `-` is refused,
 * a host key not confirmed at the terminal is not kept.
 *
 * @module
 */

import { deepStrictEqual, match, notStrictEqual, ok, strictEqual } from "node:assert/strict";
import {
  removeInstalledKeys,
  run,
  SSHSENDMAIL,
  startPostfix,
  startRelay,
  takeMail,
} from "./_bed.ts";
import { setupArgs } from "./_standalone.ts";

Deno.test({
  name: "sshsendmail setup: from nothing to a delivered test message",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const relay = await startRelay();
    const postfix = await startPostfix();
    const box = postfix.mailbox("rsmsetup");
    const admin = await relay.addKey(""); // the relay admin's own, unrestricted login
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "rsm-setup-" });
    const env = { SSHSENDMAIL_CONFIG: `${dir}/sshsendmail.conf` };
    const installed = `/home/${relay.user}/.ssh/authorized_keys`;
    try {
      await t.step("setup creates, records, installs, writes and tests", async () => {
        const r = await run(SSHSENDMAIL, [
          ...setupArgs(relay, dir, admin),
          "--allow-sender",
          "@relay.test",
          "--test",
          "rsmsetup@relay.test",
        ], { check: false, env });
        strictEqual(r.code, 0, r.stdout + r.stderr);
        strictEqual(r.stderr, "");
        match(r.stdout, /\[1\/5\] key: created .*SHA256:/);
        match(r.stdout, /\[2\/5\] relay host key recorded .*ssh-ed25519 SHA256:/);
        match(r.stdout, /\[3\/5\] authorized_keys line added to/);
        match(
          r.stdout,
          /restrict,command=".*\/dist\/rsendmail --label \S+ --require-integrity --max-messages 200\/hour --max-sessions 4 --allow-sender @relay.test" ssh-ed25519 AAAA/,
        );
        match(r.stdout, /\[4\/5\] config: wrote/);
        match(r.stdout, /\[5\/5\] test message to rsmsetup@relay.test: accepted by the relay/);
        const mail = new TextDecoder().decode(await takeMail(box));
        match(mail, /^Subject: sshsendmail test from /m);
        const key = await Deno.stat(`${dir}/keys/id_ed25519`);
        strictEqual((key.mode ?? 0) & 0o777, 0o600);
        // the key ssh-keygen can read is the key the relay accepted
        const pub = await run("/usr/bin/ssh-keygen", ["-y", "-f", `${dir}/keys/id_ed25519`]);
        ok((await Deno.readTextFile(`${dir}/keys/id_ed25519.pub`)).startsWith(pub.stdout.trim()));
      });

      await t.step("a second setup keeps the key and does not add the line twice", async () => {
        const r = await run(SSHSENDMAIL, [
          ...setupArgs(relay, dir, admin),
          "--allow-sender",
          "@relay.test",
        ], { check: false, env });
        strictEqual(r.code, 0, r.stdout + r.stderr);
        match(r.stdout, /key: kept/);
        match(r.stdout, /already in/);
        const lines = (await Deno.readTextFile(installed)).split("\n").filter((l) =>
          l.includes("sshsendmail@")
        );
        strictEqual(lines.length, 1);
      });

      await t.step("--test ADDR alone repeats the last step", async () => {
        const r = await run(SSHSENDMAIL, ["--test", "rsmsetup@relay.test"], { check: false, env });
        strictEqual(r.code, 0, r.stdout + r.stderr);
        match(r.stdout, /accepted by the relay/);
        match(new TextDecoder().decode(await takeMail(box)), /sshsendmail test/);
      });

      await t.step(
        "attack: a relay whose host key changed is refused (positive control above)",
        async () => {
          const kh = `${dir}/keys/known_hosts`;
          const text = await Deno.readTextFile(kh);
          // replace the recorded key with another valid ed25519 key
          const other = (await Deno.readTextFile(`${dir}/keys/id_ed25519.pub`)).split(" ")[1]!;
          await Deno.writeTextFile(kh, text.replace(/(ssh-ed25519 )\S+/, `$1${other}`));
          const r = await run(SSHSENDMAIL, ["--test", "rsmsetup@relay.test"], {
            check: false,
            env,
          });
          strictEqual(r.code, 75);
          match(r.stdout, /FAILED: 4\.7\.0 .*host key verification failed/);
          // setup run again refuses too, saying why, and installs and writes nothing.
          const before = [
            await Deno.readTextFile(installed),
            await Deno.readTextFile(env.SSHSENDMAIL_CONFIG),
          ];
          const again = await run(SSHSENDMAIL, setupArgs(relay, dir, admin), { check: false, env });
          notStrictEqual(again.code, 0);
          match(
            again.stdout + again.stderr,
            /cannot reach the relay: WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\n/,
          );
          deepStrictEqual(
            [await Deno.readTextFile(installed), await Deno.readTextFile(env.SSHSENDMAIL_CONFIG)],
            before,
          );
          await Deno.writeTextFile(kh, text);
        },
      );

      await t.step("attack: a host starting with - is refused before ssh runs", async () => {
        const r = await run(
          SSHSENDMAIL,
          ["setup", "--host=-oProxyCommand=touch /tmp/pwned-setup"],
          {
            check: false,
            env,
          },
        );
        strictEqual(r.code, 75);
        match(r.stderr, /^sshsendmail: invalid relay host/);
        ok(!(await Deno.stat("/tmp/pwned-setup").catch(() => undefined)));
      });

      // On a terminal, setup asks whether the host key it fetched is the
      // relay's. The terminal is a pty (python3's pty module: no shell).
      const dir2 = await Deno.makeTempDir({ dir: "/tmp", prefix: "rsm-setup-tty-" });
      const onTerminal = (answer: string) =>
        run("/usr/bin/python3", [
          "-c",
          "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
          SSHSENDMAIL,
          ...setupArgs(relay, dir2, admin),
        ], {
          check: false,
          env: { ...env, SSHSENDMAIL_CONFIG: `${dir2}/sshsendmail.conf` },
          stdin: answer,
        });
      const linesOf = async () =>
        (await Deno.readTextFile(installed)).split("\n").filter((l) => l.includes("sshsendmail@"));
      try {
        await t.step(
          "attack: a host key answered no at the terminal (a man in the middle's) is not kept, and nothing is installed",
          async () => {
            const before = await linesOf();
            const r = await onTerminal("n\n");
            strictEqual(r.code, 77, r.stdout + r.stderr);
            match(r.stdout, /Is this the relay's host key\? \[y\/N\]/);
            match(r.stdout + r.stderr, /host key not confirmed; nothing was installed/);
            ok(!(await Deno.stat(`${dir2}/keys/known_hosts`).catch(() => undefined)));
            strictEqual((await linesOf()).length, before.length);
          },
        );
        await t.step(
          "control: answered yes at the terminal, the host key is kept and the line installed",
          async () => {
            const before = await linesOf();
            const r = await onTerminal("y\n");
            strictEqual(r.code, 0, r.stdout + r.stderr);
            match(r.stdout, /Is this the relay's host key\? \[y\/N\]/);
            match(r.stdout, /\[3\/5\] authorized_keys line added to/);
            ok((await Deno.readTextFile(`${dir2}/keys/known_hosts`)).includes("ssh-ed25519"));
            strictEqual((await linesOf()).length, before.length + 1);
          },
        );
      } finally {
        await Deno.remove(dir2, { recursive: true });
      }
    } finally {
      await removeInstalledKeys(relay);
      await relay.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
