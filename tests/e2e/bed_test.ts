/**
 * Self-test of the end-to-end test bed (tests/e2e/_bed.ts).
 *
 * Run as root with:
 * deno test --allow-run --allow-read --allow-write --allow-env
 *   --allow-net=127.0.0.1 --allow-sys tests/e2e/bed_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  clearMailbox,
  expectNoMail,
  RSENDMAIL,
  run,
  startPostfix,
  startRelay,
  startSyslog,
  takeMail,
  withStateDir,
} from "./_bed.ts";

const decoder = new TextDecoder();

Deno.test("relay: forced command runs and gets SSH_ORIGINAL_COMMAND", async () => {
  const relay = await startRelay();
  try {
    const key = await relay.addKey('restrict,command="/usr/bin/env"');
    const [ssh = "", ...sshArgs] = relay.sshArgv(key);
    assert.equal(ssh, "/usr/bin/ssh");
    const res = await run(ssh, [...sshArgs, "anything", "'quoted words'"], {
      check: false,
    });
    assert.equal(res.code, 0, res.stderr);
    const env = new Map(
      res.stdout.split("\n").filter((l) => l.includes("=")).map((l) => {
        const i = l.indexOf("=");
        return [l.slice(0, i), l.slice(i + 1)] as [string, string];
      }),
    );
    assert.equal(env.get("SSH_ORIGINAL_COMMAND"), "anything 'quoted words'");
    assert.equal(env.get("USER"), "rsmrelay");
    assert.match(
      env.get("SSH_CONNECTION") ?? "",
      /^127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+$/,
    );

    // A key added while sshd runs works at once; a key without command=
    // runs the requested command through the shell.
    const plain = await relay.addKey("");
    const res2 = await run("/usr/bin/ssh", [
      ...relay.sshArgv(plain).slice(1),
      "echo",
      "plain",
    ], { check: false });
    assert.equal(res2.code, 0, res2.stderr);
    assert.equal(res2.stdout, "plain\n");

    // An unknown key is refused with ssh's own 255.
    const unknown = `${relay.dir}/unknown_key`;
    await run("/usr/bin/ssh-keygen", [
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-f",
      unknown,
    ]);
    const res3 = await run("/usr/bin/ssh", [
      ...relay.sshArgv(unknown).slice(1),
      "true",
    ], { check: false });
    assert.equal(res3.code, 255);
    assert.match(res3.stderr, /Permission denied \(publickey\)/);
  } finally {
    await relay.stop();
  }
  assert.equal(await Deno.stat(relay.dir).then(() => true, () => false), false);
});

Deno.test("relay: dist/rsendmail's forced commands keep their state in the bed", () => {
  const S = "/tmp/bed/state";
  const cases: [string, string][] = [
    [`restrict,command="${RSENDMAIL}"`, `restrict,command="${RSENDMAIL} --state-dir ${S}"`],
    [
      `restrict,command="${RSENDMAIL} --label k1"`,
      `restrict,command="${RSENDMAIL} --state-dir ${S} --label k1"`,
    ],
    // A test that names its own state directory keeps it.
    [
      `restrict,command="${RSENDMAIL} --state-dir /x --label k1"`,
      `restrict,command="${RSENDMAIL} --state-dir /x --label k1"`,
    ],
    // Other programs, and a longer name that starts the same, are left alone.
    ['restrict,command="/usr/bin/env"', 'restrict,command="/usr/bin/env"'],
    [`restrict,command="${RSENDMAIL}2 -x"`, `restrict,command="${RSENDMAIL}2 -x"`],
    ["", ""],
  ];
  for (const [options, want] of cases) assert.equal(withStateDir(options, S), want, options);
});

Deno.test("postfix: local sendmail delivers into the Maildir", async () => {
  const postfix = await startPostfix();
  assert.equal(await startPostfix(), postfix, "idempotent");
  const box = postfix.mailbox("rcpt1");
  await clearMailbox(box);
  const token = crypto.randomUUID();
  const msg = `Subject: bed ${token}\nFrom: a@b.test\nTo: rcpt1@relay.test\n\n` +
    `line one\n.\nafter the dot\n`;
  await run(
    "/usr/sbin/sendmail",
    ["-oi", "-f", "a@b.test", "rcpt1@relay.test"],
    {
      stdin: msg,
    },
  );
  const mail = decoder.decode(await takeMail(box));
  assert.match(mail, new RegExp(`Subject: bed ${token}`));
  assert.match(mail, /^Return-Path: <a@b\.test>$/m);
  assert.match(mail, /^Delivered-To: rcpt1@relay\.test$/m);
  assert.match(mail, /\n\.\nafter the dot\n$/);
  await expectNoMail(box, 300);

  // Mail to root (and to a fresh account) doesn't break anything.
  const box2 = postfix.mailbox("rsmbedx");
  await run("/usr/sbin/sendmail", [
    "-oi",
    "-f",
    "",
    "rsmbedx@relay.test",
    "root",
  ], {
    stdin: "Subject: two\n\nbody\n",
  });
  const mail2 = decoder.decode(await takeMail(box2));
  assert.match(mail2, /^Return-Path: <>$/m);
  await takeMail({ user: "root", dir: "/root/Maildir" });
});

Deno.test("syslog: logger -p mail.info reaches newLines()", async () => {
  const syslog = await startSyslog();
  try {
    assert.deepEqual(await syslog.newLines(), []);
    const token = crypto.randomUUID();
    await run("/usr/bin/logger", [
      "-p",
      "mail.info",
      "-t",
      "rsmbed",
      `hello ${token}`,
    ]);
    await run("/usr/bin/logger", [
      "-p",
      "user.info",
      "-t",
      "rsmbed",
      "not mail",
    ]);
    await run("/usr/bin/logger", [
      "-p",
      "mail.err",
      "-t",
      "rsmbed",
      `second ${token}`,
    ]);
    const got = await syslog.waitForLine(`second ${token}`);
    assert.deepEqual(got, [
      `info rsmbed: hello ${token}`,
      `err rsmbed: second ${token}`,
    ]);
    assert.deepEqual(await syslog.newLines(), []);

    // A line break in a message arrives escaped, on one line.
    await run("/usr/bin/logger", [
      "-p",
      "mail.warning",
      "-t",
      "rsmbed",
      `a\rb ${token}`,
    ]);
    assert.deepEqual(await syslog.waitForLine(token), [
      `warning rsmbed: a#015b ${token}`,
    ]);

    // Postfix logs to its maillog_file, not to /dev/log.
    const postfix = await startPostfix();
    const box = postfix.mailbox("rcpt2");
    await run("/usr/sbin/sendmail", ["-oi", "rcpt2@relay.test"], {
      stdin: "Subject: quiet\n\nbody\n",
    });
    await takeMail(box);
    await run("/usr/bin/logger", ["-p", "mail.info", "-t", "rsmbed", token]);
    assert.deepEqual(await syslog.waitForLine(token), [
      `info rsmbed: ${token}`,
    ]);
  } finally {
    await syslog.stop();
  }
  const devLog = await run("/usr/bin/test", ["-e", "/dev/log"], {
    check: false,
  });
  assert.equal(devLog.code, 1, "/dev/log removed");
});

Deno.test("postfix: stop() stops the master", async () => {
  const postfix = await startPostfix();
  await postfix.stop();
  const status = await run("/usr/sbin/postfix", ["status"], { check: false });
  assert.notEqual(status.code, 0, status.stderr);
});
