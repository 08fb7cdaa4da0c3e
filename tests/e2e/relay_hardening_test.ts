/**
 * The relay's second hardening round (issue 12), end to end: the BUILT
 * dist/rsendmail as a forced command behind a real sshd, the real Postfix
 * behind it. Each test is named after the attack it stops and carries a
 * positive control that differs only by the attack.
 *
 * Mail goes to this file's own account (rsmhard), found by a unique token.
 *
 * @module
 */

import assert from "node:assert/strict";
import { quoteWords } from "../../lib/words.ts";
import { run, type RunResult, startPostfix, startRelay } from "./_bed.ts";
import { expectNoToken, takeByToken, token } from "./_standalone.ts";

const RSENDMAIL = new URL("../../dist/rsendmail", import.meta.url).pathname;
const ACCOUNT = "rsmhard";

/** Sends `message` with the request words through ssh and the key. */
async function request(
  argv: string[],
  words: string[],
  message: string,
): Promise<RunResult> {
  const [cmd, ...args] = argv;
  return await run(cmd!, [...args, quoteWords(["sendmail", ...words])], {
    stdin: message,
    check: false,
  });
}

Deno.test("relay: program, file and include recipients are refused (5.1.3); a plain one is delivered", async (t) => {
  const postfix = await startPostfix();
  const box = postfix.mailbox(ACCOUNT);
  const relay = await startRelay();
  try {
    const key = await relay.addKey(`restrict,command="${RSENDMAIL} --label hard"`);
    const argv = relay.sshArgv(key);
    const attacks: [string, string][] = [
      ["program recipient |/usr/bin/id", "|/usr/bin/id"],
      ["quoted program recipient", `"|/usr/bin/touch /tmp/rsm-pwned"@${postfix.domain}`],
      ["file recipient /etc/passwd", "/etc/passwd"],
      ["quoted file recipient", `"/tmp/rsm-file"@${postfix.domain}`],
      ["include recipient", `":include:/etc/aliases"@${postfix.domain}`],
    ];
    for (const [name, rcpt] of attacks) {
      await t.step(`refuses ${name}`, async () => {
        const tok = token("prog");
        const res = await request(
          argv,
          ["-oi", "--", rcpt, `${ACCOUNT}@${postfix.domain}`],
          `Subject: ${tok}\n\n${tok}\n`,
        );
        assert.equal(res.code, 65, res.stderr);
        assert.match(
          res.stderr,
          /^5\.1\.3 rsendmail: program, file and include recipients are not allowed\n$/,
        );
        await expectNoToken(box, tok, 500);
      });
    }
    await t.step("positive control: the same request without the attack is delivered", async () => {
      const tok = token("prog-ok");
      const res = await request(
        argv,
        ["-oi", "--", `${ACCOUNT}@${postfix.domain}`],
        `Subject: ${tok}\n\n${tok}\n`,
      );
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout + res.stderr, "");
      await takeByToken(box, tok);
    });
    assert.ok(!(await Deno.stat("/tmp/rsm-pwned").then(() => true, () => false)));
    assert.ok(!(await Deno.stat("/tmp/rsm-file").then(() => true, () => false)));
  } finally {
    await relay.stop();
  }
});
