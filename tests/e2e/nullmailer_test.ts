/**
 * End to end with the real nullmailer 2.2 (Debian's package, unpacked beside
 * Postfix and run in a mount namespace, see tests/e2e/_satellite.ts): a
 * `remotes` line naming `sshsendmail` (a symlink to dist/sshsendmail in
 * /usr/lib/nullmailer), messages queued with nullmailer's own sendmail and
 * sent by nullmailer-send as user mail → real sshd → dist/rsendmail → the
 * relay's Postfix → Maildir.
 *
 * README's recipe runs as printed (read by tests/e2e/_recipes.ts): the
 * module symlink and the remotes line `localhost sshsendmail --service`, the
 * module dropping each message into a running satellite service
 * (tests/e2e/_service.ts) whose spool the namespace's /etc/sshsendmail.conf
 * names. The direct mode (a remotes line naming the relay and a key) keeps
 * its own tests, with nullmailer's exit-code rule (bit 32 = permanent).
 *
 * Run as root: deno task test tests/e2e/nullmailer_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Account,
  clearMailbox,
  closedPort,
  concat,
  expectNoMail,
  type Mailbox,
  RSENDMAIL,
  SSHSENDMAIL,
  startPostfix,
  startRelay,
  takeMail,
  waitFor,
} from "./_bed.ts";
import { startServiceBed } from "./_service.ts";
import { type Nullmailer, prepareNullmailer, split } from "./_satellite.ts";
import { nullmailerRecipe } from "./_recipes.ts";
import { parseMailq, type Queued } from "./_mailq.ts";

const latin1 = new TextDecoder("latin1");

function header(head: string, name: string): string | undefined {
  return new RegExp(`^${name}: ?(.*)$`, "mi").exec(head)?.[1]?.trim();
}

/** Queues one message with nullmailer's own sendmail (no -i: nullmailer keeps '.' lines). */
async function inject(nm: Nullmailer, sender: string, rcpt: string, message: Uint8Array | string) {
  const res = await nm.run(["/usr/sbin/sendmail", "-f", sender, rcpt], message);
  assert.equal(res.code, 0, `nullmailer sendmail: ${res.stderr}`);
}

Deno.test("nullmailer-send 2.2: only bit 32 of a module's exit status means permanent", async () => {
  const nm = await prepareNullmailer();
  try {
    // Records what nullmailer hands a protocol module, then exits with code=N.
    await nm.addModule(
      "fake",
      [
        "#!/bin/sh",
        'echo "argc=$#" >&2',
        'while read -r line && [ -n "$line" ]; do',
        '  echo "opt: $line" >&2',
        "  case $line in code=*) code=${line#code=};; esac",
        "done",
        'sed "s/^/fd3: /" <&3 >&2',
        'echo "fake module uid=$(id -un) exit=$code" >&2',
        "exit $code",
        "",
      ].join("\n"),
    );
    const outcomes: Record<number, string> = {};
    for (const code of [1, 7, 16, 20, 31, 32, 33, 34, 35, 64, 75, 77, 124, 126, 127, 255]) {
      await nm.clear();
      await nm.setRemotes([`127.0.0.1 fake --code=${code} --flag`]);
      await inject(nm, "alice@sat.test", "bob@relay.test", "Subject: bit\n\nline\n.\nafter\n");
      const [file] = await nm.queued();
      const res = await nm.send();
      assert.equal(res.code, 0, res.stderr);
      // The protocol as REFERENCE.md describes it: no argv, options on stdin, envelope + message on fd 3.
      assert.match(res.stderr, /^argc=0$/m);
      assert.match(
        res.stderr,
        new RegExp(`opt: host=127\\.0\\.0\\.1\\nopt: code=${code}\\nopt: flag\\n`),
      );
      assert.match(
        res.stderr,
        /fd3: alice@sat\.test\nfd3: bob@relay\.test\nfd3: \nfd3: Received: /,
      );
      assert.match(res.stderr, /fd3: line\nfd3: \.\nfd3: after\n/);
      assert.match(res.stderr, new RegExp(`fake module uid=mail exit=${code}`));
      const failed = await nm.failed();
      const queued = await nm.queued();
      outcomes[code] = failed.includes(file!)
        ? "failed"
        : queued.includes(file!)
        ? "queued"
        : "gone";
    }
    const expected = Object.fromEntries(
      Object.keys(outcomes).map((c) => [c, (Number(c) & 32) ? "failed" : "queued"]),
    );
    assert.deepEqual(outcomes, expected);
  } finally {
    await nm.remove();
  }
});

Deno.test("nullmailer 2.2 → sshsendmail → sshd → rsendmail → relay Postfix", async (t) => {
  const postfix = await startPostfix();
  const box: Mailbox = postfix.mailbox("rsmsatnm");
  await clearMailbox(box); // leftovers of an earlier failed run
  const rcpt = `${box.user}@${postfix.domain}`;
  const relay = await startRelay();
  const nm = await prepareNullmailer();
  try {
    const key = await relay.addKey(`restrict,command="${RSENDMAIL} --label nm"`, "mail");
    const strict = await relay.addKey(
      `restrict,command="${RSENDMAIL} --label nmstrict --allow-sender ok@relay.test"`,
      "mail",
    );
    const remote = (port: number, identity: string) =>
      `127.0.0.1 sshsendmail --port=${port} --user=${relay.user} --identity=${identity} --known-hosts=${relay.knownHosts}`;
    // Detection: run from nullmailer's protocol directory, through a symlink.
    await nm.addModule("sshsendmail", SSHSENDMAIL, true);

    await t.step(
      "a queued message is delivered, body intact, queue emptied, client silent",
      async () => {
        await nm.setRemotes([remote(relay.port, key)]);
        const body = concat(
          "first line\n",
          ".\n",
          "after a lone dot\n",
          "Gr\u00fc\u00dfe \u2014 8-bit\n",
          new Uint8Array([0xe9, 0x74, 0xe9, 0x0a]),
        );
        await inject(nm, "nm-sender@sat.test", rcpt, concat("Subject: nm plain\n\n", body));
        assert.equal((await nm.queued()).length, 1);
        const res = await nm.send();
        assert.equal(res.code, 0, res.stderr);
        assert.match(res.stdout, /Sent file\./, res.stdout);
        assert.equal(res.stderr, "", "the module is silent on success");
        const got = split(await takeMail(box, 15000));
        assert.equal(header(got.head, "Subject"), "nm plain");
        assert.equal(header(got.head, "Return-Path"), "<nm-sender@sat.test>");
        assert.deepEqual(got.body, body);
        assert.deepEqual(await nm.queued(), []);
        assert.deepEqual(await nm.failed(), []);
      },
    );

    await t.step(
      "closed port: exit 7, kept in queue with one line, delivered on the next pass",
      async () => {
        await nm.clear();
        await nm.setRemotes([remote(closedPort(), key)]);
        await inject(nm, "nm-retry@sat.test", rcpt, "Subject: nm retry\n\nretry me\n");
        const [file] = await nm.queued();
        const res = await nm.send();
        assert.equal(res.code, 0, res.stderr);
        // nullmailer-send names exit 7 by its table; the module's line follows on stderr.
        assert.match(res.stdout, /Sending failed: Connection refused/, res.stdout);
        assert.match(
          res.stderr,
          /^4\.4\.1 sshsendmail: connection refused by the relay$/m,
          res.stderr,
        );
        assert.equal(res.stderr.trim().split("\n").length, 1, res.stderr);
        assert.deepEqual(await nm.queued(), [file]);
        assert.deepEqual(await nm.failed(), []);
        await expectNoMail(box, 500);
        await nm.setRemotes([remote(relay.port, key)]);
        const again = await nm.send();
        assert.match(again.stdout, /Sent file\./, again.stdout);
        const got = split(await takeMail(box, 15000));
        assert.equal(header(got.head, "Subject"), "nm retry");
        assert.deepEqual(await nm.queued(), []);
      },
    );

    await t.step("unknown client key: exit 20 (auth failed), kept in queue", async () => {
      await nm.clear();
      // A key sshd does not list, owned by mail.
      const unknown = `${relay.dir}/not_authorized`;
      const gen = new Deno.Command("/usr/bin/ssh-keygen", {
        args: ["-q", "-t", "ed25519", "-N", "", "-f", unknown],
        stdout: "null",
        stderr: "null",
      });
      assert.equal((await gen.output()).code, 0);
      assert.equal(
        (await new Deno.Command("/usr/bin/chown", { args: ["mail", unknown] }).output()).code,
        0,
      );
      await nm.setRemotes([remote(relay.port, unknown)]);
      await inject(nm, "nm-auth@sat.test", rcpt, "Subject: nm auth\n\nno key\n");
      const res = await nm.send();
      assert.match(res.stdout, /Sending failed: Failed to authenticate to server/, res.stdout);
      assert.match(
        res.stderr,
        /^4\.7\.0 sshsendmail: authentication refused by the relay/m,
        res.stderr,
      );
      assert.equal((await nm.queued()).length, 1);
      assert.deepEqual(await nm.failed(), []);
      await nm.clear();
    });

    await t.step(
      "relay's permanent refusal (77): exit 34, moved to failed/, bounce delivered",
      async () => {
        await nm.clear();
        await nm.setRemotes([remote(relay.port, strict)]);
        await inject(nm, rcpt, rcpt, "Subject: nm refused\n\nnot an allowed sender\n");
        const [file] = await nm.queued();
        const res = await nm.send();
        assert.equal(res.code, 0, res.stderr);
        assert.match(res.stdout, /Sending failed: Server refused the message/, res.stdout);
        assert.match(
          res.stdout,
          new RegExp(`Moving message ${file!.replace(".", "\\.")} into failed`),
        );
        // The relay's own one line reaches nullmailer's log.
        assert.match(res.stderr, /^5\.7\.1 rsendmail: .*sender/m, res.stderr);
        assert.deepEqual(await nm.failed(), [file]);
        await expectNoMail(box, 500);
        // nullmailer-dsn queued a bounce (null sender) to the sender: the next pass delivers it.
        const queued = await nm.queued();
        assert.equal(queued.length, 1);
        const dsn = await Deno.readTextFile(`${nm.spool}/queue/${queued[0]}`);
        assert.match(dsn, new RegExp(`^\\n${rcpt.replace(".", "\\.")}\\n\\n`), dsn.slice(0, 200));
        const again = await nm.send();
        assert.match(again.stdout, /Sent file\./, again.stdout + again.stderr);
        const got = split(await takeMail(box, 15000));
        assert.equal(header(got.head, "Return-Path"), "<>");
        assert.match(latin1.decode(got.body), /nm refused/);
        assert.deepEqual(await nm.queued(), []);
      },
    );
  } finally {
    await nm.remove();
    await relay.stop();
  }
});

Deno.test("nullmailer 2.2 → README's `sshsendmail --service` → the satellite service → relay Postfix", async (t) => {
  const postfix = await startPostfix();
  const box: Mailbox = postfix.mailbox("rsmsatnmsvc");
  await clearMailbox(box);
  const rcpt = `${box.user}@${postfix.domain}`;
  const recipe = await nullmailerRecipe();
  const bed = await startServiceBed();
  const nm = await prepareNullmailer();
  const root: Account = { name: "root", uid: 0, gid: 0, home: "/root" };
  try {
    // README's two lines, only /usr/sbin/sshsendmail replaced by dist/sshsendmail.
    assert.equal(recipe.link.target, "/usr/sbin/sshsendmail");
    const dir = "/usr/lib/nullmailer/";
    assert.ok(recipe.link.path.startsWith(dir), recipe.link.path);
    await nm.addModule(recipe.link.path.slice(dir.length), SSHSENDMAIL, true);
    assert.match(recipe.remotes, /--service\b/);
    await nm.setRemotes([recipe.remotes]);
    // The module (as mail) reads the default config: inside the namespace
    // /etc/sshsendmail.conf is the bed's, naming its spool (nm.dir/etc lies over /etc).
    await Deno.copyFile(bed.conf, `${nm.dir}/etc/sshsendmail.conf`);
    await Deno.chmod(`${nm.dir}/etc/sshsendmail.conf`, 0o644);

    await t.step("the module hands the message to the service, which delivers it", async () => {
      const body = concat(
        "first line\n",
        ".\n",
        "after a lone dot\n",
        "Gr\u00fc\u00dfe \u2014 8-bit\n",
        new Uint8Array([0xe9, 0x74, 0xe9, 0x0a]),
      );
      await inject(nm, "nm-svc@sat.test", rcpt, concat("Subject: nm service\n\n", body));
      assert.equal((await nm.queued()).length, 1);
      const res = await nm.send();
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /Sent file\./, res.stdout);
      assert.equal(res.stderr, "", "the module is silent on success");
      assert.deepEqual(await nm.queued(), []);
      assert.deepEqual(await nm.failed(), []);
      const got = split(await takeMail(box, 15000));
      assert.equal(header(got.head, "Subject"), "nm service");
      assert.equal(header(got.head, "Return-Path"), "<nm-svc@sat.test>");
      assert.deepEqual(got.body, body);
      assert.equal((await bed.sendAs(root, ["-bp"])).stdout, "Mail queue is empty\n");
    });

    await t.step(
      "relay down: nullmailer's queue empties, the service keeps the message and delivers it later",
      async () => {
        await bed.stopService();
        await bed.writeConfig([], closedPort());
        await bed.start();
        await inject(nm, "nm-later@sat.test", rcpt, "Subject: nm later\n\nwaited\n");
        const res = await nm.send();
        assert.equal(res.code, 0, res.stderr);
        assert.match(res.stdout, /Sent file\./, res.stdout);
        assert.equal(res.stderr, "");
        assert.deepEqual(await nm.queued(), []);
        assert.deepEqual(await nm.failed(), []);
        let queued: Queued | undefined;
        await waitFor("the message deferred in the service's queue", async () => {
          const q = await bed.sendAs(root, ["-bp"]);
          assert.equal(q.code, 0, q.stderr);
          queued = parseMailq(q.stdout).messages[0];
          return queued?.reason !== undefined;
        });
        assert.equal(queued!.sender, "nm-later@sat.test");
        assert.deepEqual(queued!.recipients, [rcpt]);
        assert.match(queued!.reason!, /^4\.4\.1 sshsendmail: connection refused by the relay$/);
        await expectNoMail(box, 500);
        await bed.stopService();
        await bed.writeConfig();
        await bed.start();
        const flush = await bed.sendAs(root, ["-q", "-v"]);
        assert.deepEqual([flush.code, flush.stdout, flush.stderr], [
          0,
          "sshsendmail: delivered 1, deferred 0, failed 0, expired 0; 0 waiting\n",
          "",
        ]);
        const got = split(await takeMail(box, 15000));
        assert.equal(header(got.head, "Subject"), "nm later");
        assert.equal(header(got.head, "Return-Path"), "<nm-later@sat.test>");
        await expectNoMail(box, 500);
      },
    );
  } finally {
    await nm.remove();
    await bed.stop();
  }
});
