/**
 * Standalone mode end to end: `sendmail` (a symlink to dist/sshsendmail,
 * settings from SSHSENDMAIL_CONFIG) used by the real programs that send mail
 * on a satellite — cron, mutt, bsd-mailx, git send-email, Emacs, PHP — then
 * real sshd → dist/rsendmail → the relay's Postfix → Maildir. Each message
 * must arrive with the body its program wrote, and the client must stay
 * silent on success. Then ssh's own failures: each is 75 with its own line,
 * and failover to the next configured host.
 *
 * Needs root and: cron, mutt, bsd-mailx, git-email + libmailtools-perl,
 * emacs-nox, php-cli, util-linux (unshare, mount).
 *
 * @module
 */

import assert from "node:assert/strict";
import { closedPort, expectNoToken, run, takeByToken, token, uidOf } from "./_bed.ts";
import {
  makeCronTree,
  parseMessage,
  type Standalone,
  startStandalone,
  viaRelay,
  whileCron,
} from "./_standalone.ts";

const ACCOUNT = "rsmstd";
const PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/** A body every program must pass through unchanged: a lone dot line and 8-bit text. */
function bodyFor(tok: string): string {
  return `first line ${tok}\n.\nGrüße, 8-bit\nlast line\n`;
}

/** Environment for a sending program: its own HOME and the client's config. */
function envFor(s: Standalone, conf: string): Record<string, string> {
  return { HOME: s.dir, SSHSENDMAIL_CONFIG: conf, PATH, LANG: "C.UTF-8", LC_ALL: "C.UTF-8" };
}

function assertSilent(res: { stdout: string; stderr: string }, what: string): void {
  assert.equal(res.stdout, "", `${what}: stdout`);
  assert.equal(res.stderr, "", `${what}: stderr`);
}

Deno.test("standalone: real senders through a sendmail symlink arrive intact", async (t) => {
  const s = await startStandalone(ACCOUNT);
  const relayUid = await uidOf(s.relay.user);
  try {
    const conf = await s.config("forced", s.forcedKey);

    await t.step("cron 3.0pl1 daemon mails a job's output", async () => {
      // The real cron daemon, in a private mount namespace: its sendmail
      // (/usr/sbin/sendmail, compiled in) is our client bind-mounted over it;
      // /etc/cron.d holds one @reboot job, and a private /run makes cron take
      // this start for a boot (no /run/crond.reboot), so the job runs at once
      // instead of at the next minute. The relay's sshd runs outside the
      // namespace and hands the message to the real Postfix sendmail.
      const tok = token("cron");
      const ns = `${s.dir}/cron`;
      await makeCronTree(ns);
      await Deno.writeTextFile(
        `${ns}/cron.d/rsmtest`,
        [
          `MAILTO=${s.rcpt}`,
          `@reboot root echo 'first line ${tok}'; echo .; echo 'Grüße, 8-bit'; echo 'last line'`,
          "",
        ].join("\n"),
      );
      const env = { PATH, SSHSENDMAIL_CONFIG: conf, LANG: "C.UTF-8" };
      // Nothing may have been written to cron's stdout/stderr by the mailer.
      const [mail, out] = await whileCron(
        ns,
        s.sendmail,
        env,
        () => takeByToken(s.box, tok, 20000),
      );
      const dec = new TextDecoder();
      assert.equal(dec.decode(out.stdout), "", "cron stdout (mailer output)");
      assert.equal(dec.decode(out.stderr), "", "cron stderr (mailer output)");
      const msg = parseMessage(mail);
      assert.ok(viaRelay(msg, relayUid), msg.headers);
      assert.deepEqual(msg.header("From"), ["root@relay.test (Cron Daemon)"]);
      assert.equal(msg.body, bodyFor(tok));
    });

    await t.step("mutt batch mode (sendmail -oem -oi, use_envelope_from)", async () => {
      const tok = token("mutt");
      const muttrc = `${s.dir}/muttrc`;
      await Deno.writeTextFile(
        muttrc,
        [
          `set sendmail="${s.sendmail} -oem -oi"`,
          "set use_envelope_from=yes",
          'set from="Mutt Sender <mutt-sender@example.net>"',
          'set record=""',
          "set copy=no",
          `set folder="${s.dir}"`,
          `set spoolfile="${s.dir}/spool"`,
          "set hostname=satellite.test",
          "set charset=utf-8",
          "set send_charset=us-ascii:utf-8",
          "",
        ].join("\n"),
      );
      const res = await run(
        "/usr/bin/mutt",
        ["-n", "-F", muttrc, "-s", `mutt ${tok}`, "--", s.rcpt],
        { stdin: bodyFor(tok), env: envFor(s, conf), check: false },
      );
      assert.equal(res.code, 0, res.stderr);
      assertSilent(res, "mutt");
      const msg = parseMessage(await takeByToken(s.box, tok));
      assert.ok(viaRelay(msg, relayUid), msg.headers);
      assert.deepEqual(msg.header("Return-Path"), ["<mutt-sender@example.net>"]);
      assert.deepEqual(msg.header("Subject"), [`mutt ${tok}`]);
      assert.equal(msg.body, bodyFor(tok));
    });

    await t.step("bsd-mailx mail -s (sendmail -i -t via MAILRC set sendmail=)", async () => {
      const tok = token("mailx");
      const mailrc = `${s.dir}/mailrc`;
      await Deno.writeTextFile(mailrc, `set sendmail=${s.sendmail}\n`);
      const res = await run("/usr/bin/bsd-mailx", ["-s", `mailx ${tok}`, s.rcpt], {
        stdin: bodyFor(tok),
        env: { ...envFor(s, conf), MAILRC: mailrc },
        check: false,
      });
      assert.equal(res.code, 0, res.stderr);
      assertSilent(res, "mailx");
      const msg = parseMessage(await takeByToken(s.box, tok));
      assert.ok(viaRelay(msg, relayUid), msg.headers);
      assert.deepEqual(msg.header("Subject"), [`mailx ${tok}`]);
      assert.equal(msg.body, bodyFor(tok));
    });

    await t.step("git send-email --sendmail-cmd of a one-commit repository", async () => {
      const tok = token("git");
      const repo = `${s.dir}/repo`;
      const env = {
        ...envFor(s, conf),
        GIT_CONFIG_NOSYSTEM: "1",
        GIT_AUTHOR_NAME: "Git Author",
        GIT_AUTHOR_EMAIL: "git-author@example.net",
        GIT_COMMITTER_NAME: "Git Author",
        GIT_COMMITTER_EMAIL: "git-author@example.net",
      };
      await run("/usr/bin/git", ["init", "-q", repo], { env });
      await Deno.writeTextFile(`${repo}/file.txt`, bodyFor(tok));
      await run("/usr/bin/git", ["-C", repo, "add", "file.txt"], { env });
      await run("/usr/bin/git", ["-C", repo, "commit", "-q", "-m", `Add file ${tok}`], { env });
      const patch = await run("/usr/bin/git", ["-C", repo, "format-patch", "--stdout", "-1"], {
        env,
      });
      const res = await run("/usr/bin/git", [
        "-C",
        repo,
        "send-email",
        `--sendmail-cmd=${s.sendmail}`,
        `--to=${s.rcpt}`,
        "--from=Git Author <git-author@example.net>",
        "--confirm=never",
        "--suppress-cc=all",
        "--8bit-encoding=UTF-8",
        "--quiet",
        "-1",
      ], { env, check: false });
      assert.equal(res.code, 0, res.stderr);
      // git's own report; anything from the client would show up here too.
      assert.equal(res.stdout, `Sent [PATCH] Add file ${tok}\n`);
      assert.equal(res.stderr, "");
      const msg = parseMessage(await takeByToken(s.box, tok));
      assert.ok(viaRelay(msg, relayUid), msg.headers);
      assert.deepEqual(msg.header("Subject"), [`[PATCH] Add file ${tok}`]);
      assert.equal(msg.body, parseMessage(patch.stdout).body);
      assert.ok(msg.body.includes(`+first line ${tok}\n+.\n+Grüße, 8-bit\n`));
    });

    await t.step("Emacs batch sendmail-send-it with mail-interactive (silence)", async () => {
      // mail-interactive t: Emacs waits for sendmail and signals an error
      // (exit 255 in batch) when it exits non-zero or prints anything.
      const tok = token("emacs");
      const el = `${s.dir}/send.el`;
      await Deno.writeTextFile(
        el,
        [
          "(require 'sendmail)",
          `(setq sendmail-program ${JSON.stringify(s.sendmail)}`,
          "      mail-interactive t",
          '      user-full-name "Emacs User"',
          '      user-mail-address "emacs-user@example.net"',
          "      mail-specify-envelope-from t)",
          "(with-temp-buffer",
          `  (insert ${JSON.stringify(`To: ${s.rcpt}\nSubject: emacs ${tok}\n`)}`,
          `          mail-header-separator ${JSON.stringify(`\n${bodyFor(tok)}`)})`,
          "  (mail-mode)",
          "  (sendmail-send-it))",
          "",
        ].join("\n"),
      );
      const res = await run("/usr/bin/emacs", ["--batch", "-Q", "-l", el], {
        env: envFor(s, conf),
        check: false,
      });
      assert.equal(res.code, 0, `${res.stderr}${res.stdout}`);
      assertSilent(res, "emacs");
      const msg = parseMessage(await takeByToken(s.box, tok));
      assert.ok(viaRelay(msg, relayUid), msg.headers);
      assert.deepEqual(msg.header("Return-Path"), ["<emacs-user@example.net>"]);
      assert.equal(msg.body, bodyFor(tok));
    });

    await t.step("PHP mail() with sendmail_path = sendmail -t -i", async () => {
      const tok = token("php");
      const code = [
        `$ok = mail(${JSON.stringify(s.rcpt)}, ${JSON.stringify(`php ${tok}`)},`,
        `  ${JSON.stringify(bodyFor(tok))}, "From: php-app@example.net");`,
        "exit($ok ? 0 : 1);",
      ].join("\n");
      const res = await run(
        "/usr/bin/php",
        ["-n", "-d", `sendmail_path=${s.sendmail} -t -i`, "-r", code],
        { env: envFor(s, conf), check: false },
      );
      assert.equal(res.code, 0, `${res.stderr}${res.stdout}`);
      assertSilent(res, "php");
      const msg = parseMessage(await takeByToken(s.box, tok));
      assert.ok(viaRelay(msg, relayUid), msg.headers);
      assert.deepEqual(msg.header("Subject"), [`php ${tok}`]);
      assert.deepEqual(msg.header("From"), ["php-app@example.net"]);
      // PHP's mail() writes the message and then one line end of its own
      // (ext/standard/mail.c: PHP_MAIL_EOL "%s" PHP_MAIL_EOL).
      assert.equal(msg.body, `${bodyFor(tok)}\n`);
    });
  } finally {
    await s.stop();
  }
});

/** One line, ending in a newline, starting with an enhanced status code. */
const ONE_LINE_REGEXP = /^[45]\.\d{1,3}\.\d{1,3} sshsendmail: [^\n]+\n$/;

Deno.test("standalone: ssh failures are 75 with their own line; failover", async (t) => {
  const s = await startStandalone(ACCOUNT);
  const relayUid = await uidOf(s.relay.user);
  const lines = new Map<string, string>();
  const tokens: string[] = [];
  try {
    const send = async (conf: string, tok: string) => {
      tokens.push(tok);
      return await run(s.sendmail, ["-oi", "--", s.rcpt], {
        stdin: `Subject: ${tok}\n\n${bodyFor(tok)}`,
        env: envFor(s, conf),
        check: false,
      });
    };
    const expectFailure = async (name: string, conf: string, pattern: RegExp) => {
      const res = await send(conf, token(name));
      assert.equal(res.code, 75, `${name}: ${res.stderr}`);
      assert.equal(res.stdout, "");
      assert.match(res.stderr, ONE_LINE_REGEXP);
      assert.match(res.stderr, pattern);
      lines.set(name, res.stderr);
    };
    const closed = closedPort();

    await t.step("DNS failure", async () => {
      const conf = await s.config("dns", s.forcedKey, [], ["nonexistent.invalid"]);
      await expectFailure("dns", conf, /^4\.4\.3 .*resolve/);
    });
    await t.step("closed port", async () => {
      const conf = await s.config("closed", s.forcedKey, [`port = ${closed}`]);
      await expectFailure("closed", conf, /^4\.4\.1 .*refused/);
    });
    await t.step("wrong key (not in authorized_keys)", async () => {
      const key = `${s.dir}/stranger_key`;
      await run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
      const conf = await s.config("wrongkey", key);
      await expectFailure("wrongkey", conf, /^4\.7\.0 .*authentication/);
    });
    await t.step("unknown host key (empty known_hosts)", async () => {
      const empty = `${s.dir}/empty_known_hosts`;
      await Deno.writeTextFile(empty, "");
      const strict = await s.config("hostkey", s.forcedKey, [
        `known_hosts = ${empty}`,
        "ssh_option = StrictHostKeyChecking=yes",
        "ssh_option = GlobalKnownHostsFile=/dev/null",
      ]);
      await expectFailure("hostkey", strict, /^4\.7\.0 .*host key/);
      // Without StrictHostKeyChecking, ssh would ask; BatchMode=yes (always
      // set by the client) turns the question into the same refusal.
      const asking = await s.config("hostkey-ask", s.forcedKey, [
        `known_hosts = ${empty}`,
        "ssh_option = GlobalKnownHostsFile=/dev/null",
      ]);
      const res = await send(asking, token("hostkey-ask"));
      assert.equal(res.code, 75, res.stderr);
      assert.equal(res.stderr, lines.get("hostkey"));
      assert.equal(await Deno.readTextFile(empty), "", "known_hosts must stay empty");
    });
    await t.step("relay program missing (plain key, remote 127)", async () => {
      const conf = await s.config("missing", s.plainKey, [
        "relay_command = /nonexistent/rsendmail",
      ]);
      await expectFailure("missing", conf, /^4\.3\.5 .*not found/);
    });
    await t.step("each failure has its own message", () => {
      assert.equal(lines.size, 5, [...lines.keys()].join(","));
      assert.equal(new Set(lines.values()).size, 5, [...lines.values()].join(""));
    });
    await t.step("failover: first host refuses, second delivers", async () => {
      // sshd listens on 127.0.0.1 only: the same port on 127.0.0.2 is closed.
      for (const [name, first] of [["refused", "127.0.0.2"], ["nodns", "nonexistent.invalid"]]) {
        const tok = token(`failover-${name}`);
        const conf = await s.config(`failover-${name}`, s.forcedKey, [], [first!, s.relay.host]);
        const res = await send(conf, tok);
        assert.equal(res.code, 0, res.stderr);
        assertSilent(res, "sshsendmail");
        const msg = parseMessage(await takeByToken(s.box, tok));
        assert.ok(viaRelay(msg, relayUid), msg.headers);
        assert.equal(msg.body, bodyFor(tok));
      }
    });
    await t.step("no failed attempt delivered anything", async () => {
      const failed = tokens.filter((x) => !x.startsWith("failover-"));
      assert.equal(failed.length, 6);
      for (const tok of failed) await expectNoToken(s.box, tok, 100);
    });
  } finally {
    await s.stop();
  }
});
