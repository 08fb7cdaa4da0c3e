/**
 * The README's relay hardening, verbatim: its sshd `Match User` block (the
 * account name replaced by the bed's) on the test relay's sshd. A key with
 * no options at all then still gets no forwarding, pty or tunnel, while a
 * forced-command key delivers as before.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ROOT, RSENDMAIL, run, startPostfix, startRelay, takeByToken, token } from "./_bed.ts";

/** The fenced block of README's "## Relay hardening" that starts with Match. */
async function matchBlock(user: string): Promise<string> {
  const text = await Deno.readTextFile(`${ROOT}/README.md`);
  const section = text.slice(text.indexOf("\n## Relay hardening\n"));
  const block = /```\n(Match User rsendmail\n[\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error("README: no Match block under ## Relay hardening");
  return block.replace("Match User rsendmail", `Match User ${user}`);
}

Deno.test("relay hardening: README's sshd Match block, verbatim; a key without options gets no forwarding or pty; a forced key delivers", async (t) => {
  const postfix = await startPostfix();
  const box = postfix.mailbox("rsmhard");
  const probe = await startRelay();
  const user = probe.user;
  await probe.stop();
  const relay = await startRelay({ extraConfig: await matchBlock(user) });
  try {
    const plain = await relay.addKey("");
    const forced = await relay.addKey(`restrict,command="${RSENDMAIL} --label hardening"`);
    await t.step("sshd -T shows the block in force for the account", async () => {
      const cfg = await run("/usr/sbin/sshd", [
        "-T",
        "-f",
        `${relay.dir}/sshd_config`,
        "-C",
        `user=${user},host=localhost,addr=127.0.0.1`,
      ]);
      for (
        const line of [
          "allowtcpforwarding no",
          "allowagentforwarding no",
          "allowstreamlocalforwarding no",
          "x11forwarding no",
          "permittty no",
          "permittunnel no",
          "permituserrc no",
          "authenticationmethods publickey",
        ]
      ) assert.ok(cfg.stdout.split("\n").includes(line), `${line}\n${cfg.stdout}`);
    });
    await t.step(
      "a key without options: no remote forwarding (a bed without the block allows it)",
      async () => {
        const forward = async (r: typeof relay, key: string) => {
          const argv = r.sshArgv(key).slice(1);
          const port = 20000 + Math.floor(Math.random() * 20000);
          return await run("/usr/bin/ssh", [
            ...argv.slice(0, -1),
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            `127.0.0.1:${port}:127.0.0.1:22`,
            argv.at(-1)!,
            "true",
          ], { check: false });
        };
        const refused = await forward(relay, plain);
        assert.equal(refused.code, 255, refused.stderr);
        assert.match(refused.stderr, /remote port forwarding failed/);
        // Positive control: the same request to a relay without the block.
        const open = await startRelay();
        try {
          const res = await forward(open, await open.addKey(""));
          assert.equal(res.code, 0, res.stderr);
        } finally {
          await open.stop();
        }
      },
    );
    await t.step("a key without options: no pty", async () => {
      const argv = relay.sshArgv(plain).slice(1).filter((a) => a !== "-T");
      const res = await run("/usr/bin/ssh", [...argv.slice(0, -1), "-tt", argv.at(-1)!, "tty"], {
        check: false,
      });
      assert.doesNotMatch(res.stdout, /\/dev\/pts/);
    });
    await t.step("positive control: the forced-command key delivers", async () => {
      const tok = token("hardening");
      const res = await run("/usr/bin/ssh", [
        ...relay.sshArgv(forced).slice(1),
        `sendmail -oi -- rsmhard@${postfix.domain}`,
      ], { stdin: `Subject: ${tok}\n\n${tok}\n`, check: false });
      assert.equal(res.code, 0, res.stderr);
      await takeByToken(box, tok);
    });
  } finally {
    await relay.stop();
  }
});
