/**
 * Standalone mode's local mail end to end, what a whole MTA does before mail
 * leaves a satellite: the real cron mailing `root` reaches the `adminaddr`
 * mailbox; with no `-f` the envelope sender is `LOGIN@domain` (the login of
 * the sending uid); an unqualified `-f` gets `@domain`; a `From:` is added
 * only when missing; an aliases file maps names; `mailq` (which asks the
 * satellite service, tests/e2e/_service.ts) and `newaliases` work under
 * their own names. Real sshd → dist/rsendmail → Postfix → Maildir.
 *
 * Needs root and: cron, util-linux (unshare, mount, setpriv).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  account,
  closedPort,
  ensureUser,
  expectNoToken,
  RSENDMAIL,
  run,
  SSHSENDMAIL,
  startPostfix,
  takeBytes,
  token,
  uidOf,
  waitFor,
} from "./_bed.ts";
import {
  makeCronTree,
  parseMessage,
  startStandalone,
  text,
  viaRelay,
  whileCron,
} from "./_standalone.ts";
import { startServiceBed } from "./_service.ts";
import { bytes, envFor, fromMarker, PATH } from "./_smtp.ts";
import { MAILQ_HEADER, parseMailq } from "./_mailq.ts";

const ADMIN = "rsmadmin";
/** The unprivileged account that sends in the default-sender steps. */
const SENDER = "rsmlocal";
const ALIAS1 = "rsmalias1";
const ALIAS2 = "rsmalias2";
const DOMAIN = "sat.test";

/** Date and Message-ID, so that the relay's Postfix adds neither (bytes compare). */
const FIXED =
  `Date: Thu, 01 Jan 2026 00:00:00 +0000\nMessage-ID: <${crypto.randomUUID()}@example.net>\n`;

function bodyFor(tok: string): string {
  return `first line ${tok}\n.\nGrüße, 8-bit\nlast line\n`;
}

Deno.test("local mail: the real cron mailing root reaches adminaddr", async () => {
  const s = await startStandalone(ADMIN);
  const relayUid = await uidOf(s.relay.user);
  try {
    const conf = await s.config("admin", s.forcedKey, [
      `adminaddr = ${s.rcpt}`,
      `domain = ${DOMAIN}`,
    ]);
    // As in standalone_test.ts: the real cron daemon in a private mount
    // namespace, our client bind-mounted over its /usr/sbin/sendmail, one
    // @reboot job in /etc/cron.d that runs at once (private /run). No
    // MAILTO: cron mails the job's owner, `root`.
    const tok = token("cron-root");
    const ns = `${s.dir}/cron`;
    await makeCronTree(ns);
    await Deno.writeTextFile(
      `${ns}/cron.d/rsmtest`,
      `@reboot root echo 'first line ${tok}'; echo .; echo 'Grüße, 8-bit'; echo 'last line'\n`,
    );
    const env = { PATH, SSHSENDMAIL_CONFIG: conf, LANG: "C.UTF-8" };
    const [mail, out] = await whileCron(ns, s.sendmail, env, () => takeBytes(s.box, tok, 20000));
    assert.equal(text(out.stdout), "", "cron stdout (mailer output)");
    assert.equal(text(out.stderr), "", "cron stderr (mailer output)");
    const msg = parseMessage(text(mail));
    assert.ok(viaRelay(msg, relayUid), msg.headers);
    // Envelope: root → adminaddr; sender root@domain (cron passes no -f).
    assert.deepEqual(msg.header("X-Original-To"), [s.rcpt]);
    assert.deepEqual(msg.header("Return-Path"), [`<root@${DOMAIN}>`]);
    // Headers are cron's own: the client neither redirects To: nor adds a
    // From: (the relay's Postfix qualifies bare header addresses with its
    // own myorigin, as for any local submission).
    assert.deepEqual(msg.header("To"), ["root@relay.test"]);
    assert.deepEqual(msg.header("From"), ["root@relay.test (Cron Daemon)"]);
    assert.equal(msg.body, bodyFor(tok));
  } finally {
    await s.stop();
  }
});

Deno.test("local mail: default sender, From:, aliases, mailq, newaliases", async (t) => {
  const s = await startStandalone(ADMIN);
  const postfix = await startPostfix();
  const alias1 = postfix.mailbox(ALIAS1);
  const alias2 = postfix.mailbox(ALIAS2);
  const home = ensureUser(SENDER);
  const relayUid = await uidOf(s.relay.user);
  try {
    // The unprivileged sender reads the config and its own key.
    await Deno.chmod(s.dir, 0o711);
    const ownKey = await s.relay.addKey(`restrict,command="${RSENDMAIL}"`, SENDER);
    const userConf = await s.config("user", ownKey, [
      `adminaddr = ${s.rcpt}`,
      `domain = ${DOMAIN}`,
    ]);
    const userEnv = { ...envFor(s, userConf), HOME: home, USER: "root", LOGNAME: "root" };
    const asSender = (args: string[], stdin: string) =>
      run("/usr/bin/setpriv", [
        `--reuid=${SENDER}`,
        `--regid=${SENDER}`,
        "--init-groups",
        "--",
        s.sendmail,
        ...args,
      ], { stdin, env: userEnv, check: false });

    await t.step("no -f: Return-Path <login@domain>, From: added", async () => {
      const tok = token("nof");
      const message = `X-Rsm-Test: ${tok}\nTo: ${s.rcpt}\nSubject: ${tok}\n${FIXED}\n${
        bodyFor(tok)
      }`;
      // USER/LOGNAME say root: the login comes from the uid, not the environment.
      const res = await asSender(["-i", "--", s.rcpt], message);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(`${res.stdout}${res.stderr}`, "");
      const data = await takeBytes(s.box, tok);
      const msg = parseMessage(text(data));
      assert.ok(viaRelay(msg, relayUid), msg.headers);
      assert.deepEqual(msg.header("Return-Path"), [`<${SENDER}@${DOMAIN}>`]);
      // The one added line, then the message exactly as written.
      assert.deepEqual(
        fromMarker(data, `From: ${SENDER}@${DOMAIN}\n`),
        bytes(`From: ${SENDER}@${DOMAIN}\n${message}`),
      );
    });

    await t.step("unqualified -f name gets @domain; an existing From: is untouched", async () => {
      const tok = token("fname");
      const message = [
        `X-Rsm-Test: ${tok}`,
        "From: Someone Else <someone@elsewhere.example>",
        `To: ${s.rcpt}`,
        `Subject: ${tok}`,
        FIXED,
        bodyFor(tok),
      ].join("\n");
      const res = await asSender(["-f", "alice", "--", s.rcpt], message);
      assert.equal(res.code, 0, res.stderr);
      const data = await takeBytes(s.box, tok);
      const msg = parseMessage(text(data));
      assert.deepEqual(msg.header("Return-Path"), [`<alice@${DOMAIN}>`]);
      assert.deepEqual(msg.header("From"), ["Someone Else <someone@elsewhere.example>"]);
      assert.deepEqual(fromMarker(data, "X-Rsm-Test: "), bytes(message));
    });

    await t.step("aliases file: names, recursion, comments, continuation lines", async () => {
      const aliases = `${s.dir}/aliases`;
      await Deno.writeTextFile(
        aliases,
        [
          "# /etc/aliases for the satellite",
          "postmaster: root",
          "root: " + `${ALIAS1}@relay.test,`,
          `    ${ALIAS2}@relay.test`,
          "# a comment between entries",
          "webmaster: postmaster, |/usr/bin/ignored-pipe, /var/mail/ignored-file",
          "",
        ].join("\n"),
      );
      const conf = await s.config("aliases", s.forcedKey, [
        `adminaddr = ${s.rcpt}`,
        `domain = ${DOMAIN}`,
        `aliases = ${aliases}`,
      ]);
      const tok = token("aliases");
      // webmaster@localhost → postmaster → root → alias1, alias2;
      // root@<domain> → the same two (sent once each); nobody (no alias) →
      // adminaddr; a remote address stays as it is.
      const res = await run(
        s.sendmail,
        ["-f", "app@example.net", "--", "webmaster@localhost", `root@${DOMAIN}`, "nobody"],
        { stdin: `Subject: ${tok}\n\n${bodyFor(tok)}`, env: envFor(s, conf), check: false },
      );
      assert.equal(res.code, 0, res.stderr);
      for (
        const [box, rcpt] of [[alias1, `${ALIAS1}@relay.test`], [alias2, `${ALIAS2}@relay.test`], [
          s.box,
          s.rcpt,
        ]] as const
      ) {
        const msg = parseMessage(text(await takeBytes(box, tok)));
        assert.ok(viaRelay(msg, relayUid), msg.headers);
        assert.deepEqual(msg.header("X-Original-To"), [rcpt]);
        assert.equal(msg.body, bodyFor(tok));
        await expectNoToken(box, tok, 300);
      }
    });

    await t.step("mailq (symlink) lists the queue", async () => {
      // mailq asks the satellite service; here its relay is down, so the
      // message waits in the service's queue with the reason it could not go.
      const bed = await startServiceBed({ deferStart: true });
      try {
        await bed.writeConfig([], closedPort());
        await bed.start();
        const user = await account(SENDER);
        const mailq = `${bed.dir}/mailq`;
        await Deno.symlink(SSHSENDMAIL, mailq);
        const empty = await bed.sendAs(user, [mailq]);
        assert.deepEqual([empty.code, empty.stdout, empty.stderr], [
          0,
          "Mail queue is empty\n",
          "",
        ]);
        const tok = token("mailq");
        const res = await bed.sendAs(
          user,
          ["-i", "--", s.rcpt],
          `Subject: ${tok}\n\n${bodyFor(tok)}`,
        );
        assert.equal(res.code, 0, res.stderr);
        assert.equal(`${res.stdout}${res.stderr}`, "");
        let out = "";
        await waitFor("the message deferred", async () => {
          const list = await bed.sendAs(user, [mailq]);
          assert.equal(list.code, 0, list.stderr);
          assert.equal(list.stderr, "");
          out = list.stdout;
          return parseMailq(out).messages[0]?.reason !== undefined;
        });
        // Postfix's layout: header, one block, the total.
        const lines = out.split("\n");
        assert.equal(lines[0], MAILQ_HEADER, out);
        assert.match(
          lines[1]!,
          new RegExp(
            `^[0-9A-F]{10} +\\d+ [A-Z][a-z]{2} [A-Z][a-z]{2} [ 123]\\d \\d\\d:\\d\\d:\\d\\d  ${SENDER}@${DOMAIN}$`,
          ),
          out,
        );
        assert.match(
          lines[2]!,
          /^\(4\.4\.1 sshsendmail: connection refused by the relay; 1 attempts; next try in \w+\)$/,
          out,
        );
        assert.equal(lines[3], `${" ".repeat(41)}${s.rcpt}`, out);
        assert.deepEqual(lines.slice(4), ["", "-- 1 Kbytes in 1 Request.", ""], out);
        await expectNoToken(s.box, tok, 300);
      } finally {
        await bed.stop();
      }
    });

    await t.step("newaliases (symlink) exits 0 silently", async () => {
      const newaliases = `${s.dir}/newaliases`;
      await Deno.symlink(SSHSENDMAIL, newaliases);
      // Not even a configuration is needed.
      const res = await run(newaliases, [], {
        env: { PATH, SSHSENDMAIL_CONFIG: `${s.dir}/missing.conf` },
        check: false,
      });
      assert.deepEqual([res.code, res.stdout, res.stderr], [0, "", ""]);
      // The same binary under its own name does complain without one.
      const plain = await run(s.sendmail, ["-i", "--", s.rcpt], {
        stdin: "Subject: x\n\nx\n",
        env: { PATH, SSHSENDMAIL_CONFIG: `${s.dir}/missing.conf` },
        check: false,
      });
      assert.notEqual(plain.code, 0);
    });
  } finally {
    await s.stop();
  }
});
