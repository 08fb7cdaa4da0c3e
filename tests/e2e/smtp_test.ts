/**
 * `sshsendmail -bs` end to end: real SMTP clients (swaks, Symfony Mailer
 * from Debian's php-symfony-mailer with SendmailTransport's default command
 * `/usr/sbin/sendmail -bs`, Laravel's `-bs -i`) and hand-written pipelined
 * dialogues, through real sshd → dist/rsendmail (batch mode) → the relay's
 * Postfix → Maildir. Bodies are compared byte for byte. Most sessions run
 * with `queue = no` (direct: the reply to each dot is the relay's verdict);
 * one runs as a local user against the satellite service
 * (tests/e2e/_service.ts), which answers `250 2.0.0 Ok: queued as HEX` and
 * keeps the message while the relay is down.
 *
 * Needs root and: swaks, php-cli, php-symfony-mailer, util-linux (unshare,
 * mount).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  account,
  closedPort,
  expectNoToken,
  type Mailbox,
  RSENDMAIL,
  run,
  SSHSENDMAIL,
  startPostfix,
  takeBytes,
  token,
  uidOf,
  waitFor,
} from "./_bed.ts";
import { parseMessage, startStandalone, text, viaRelay } from "./_standalone.ts";
import { startServiceBed } from "./_service.ts";
import {
  bytes,
  envFor,
  fromMarker,
  loginCount,
  parseReplies,
  type Reply,
  smtpSession,
} from "./_smtp.ts";
import { parseMailq, type Queued } from "./_mailq.ts";

const ACCOUNT = "rsmsmtp";
const ACCOUNT2 = "rsmsmtp2";
/** The local account that speaks -bs to the satellite service. */
const SENDER = "rsmsmtpu";

/** A body every client must pass through unchanged: a lone dot line and 8-bit text. */
function bodyFor(tok: string): string {
  return `first line ${tok}\n.\nGrüße, 8-bit ÄÖÜ\n..two dots\nlast line\n`;
}

function codes(replies: Reply[]): number[] {
  return replies.map((r) => r.code);
}

Deno.test("smtp: swaks, Symfony Mailer and Laravel's argv deliver through -bs", async (t) => {
  const s = await startStandalone(ACCOUNT);
  const relayUid = await uidOf(s.relay.user);
  try {
    const conf = await s.config("forced", s.forcedKey);
    const env = envFor(s, conf);

    const swaks = async (command: string, tok: string) => {
      const data = `${s.dir}/${tok}.eml`;
      // swaks sends the file as DATA: line ends become CRLF, a leading dot
      // is doubled on the wire.
      await Deno.writeTextFile(
        data,
        `From: swaks@example.net\nTo: ${s.rcpt}\nSubject: ${tok}\n\n${bodyFor(tok)}`,
      );
      const res = await run("/usr/bin/swaks", [
        "--pipe",
        command,
        "--from",
        "swaks@example.net",
        "--to",
        s.rcpt,
        "--helo",
        "client.test",
        "--data",
        `@${data}`,
        "--silent",
        "2",
      ], { env, check: false });
      assert.equal(res.code, 0, `${res.stderr}${res.stdout}`);
      const msg = parseMessage(text(await takeBytes(s.box, tok)));
      assert.deepEqual(msg.header("Return-Path"), ["<swaks@example.net>"]);
      assert.deepEqual(msg.header("Subject"), [tok]);
      return msg;
    };

    // What a whole MTA makes of swaks's dialogue: Postfix's own sendmail -bs
    // (local submission, no relay). swaks ends DATA with CRLF . CRLF after
    // the file's last line end, so every MTA delivers one more empty line.
    const reference = (await swaks("/usr/sbin/sendmail -bs", token("reference")))
      .body.replace(/reference-\S+/, "TOKEN");
    assert.equal(reference, `${bodyFor("TOKEN")}\n`);

    await t.step("swaks --pipe 'sshsendmail -bs'", async () => {
      const tok = token("swaks");
      const msg = await swaks(`${SSHSENDMAIL} -bs`, tok);
      assert.ok(viaRelay(msg, relayUid), msg.headers);
      assert.equal(msg.body, reference.replace("TOKEN", tok));
    });

    await t.step("swaks --pipe 'sendmail -bs -i' (Laravel's argv)", async () => {
      const tok = token("laravel");
      const msg = await swaks(`${s.sendmail} -bs -i`, tok);
      assert.ok(viaRelay(msg, relayUid), msg.headers);
      assert.equal(msg.body, reference.replace("TOKEN", tok));
    });

    await t.step("Symfony Mailer SendmailTransport, default /usr/sbin/sendmail -bs", async () => {
      // The PHP process runs in a private mount namespace where
      // /usr/sbin/sendmail is our client (bind mount); the transport is
      // built with no command, so it runs its default '/usr/sbin/sendmail -bs'.
      // Two messages through one transport: one SMTP session.
      const tok = token("symfony");
      const script = `${s.dir}/symfony.php`;
      await Deno.writeTextFile(
        script,
        [
          "<?php",
          "require '/usr/share/php/Symfony/Component/Mailer/autoload.php';",
          "use Symfony\\Component\\Mailer\\Mailer;",
          "use Symfony\\Component\\Mailer\\Transport\\SendmailTransport;",
          "use Symfony\\Component\\Mime\\Email;",
          "use Symfony\\Component\\Mime\\Header\\Headers;",
          "use Symfony\\Component\\Mime\\Message;",
          "use Symfony\\Component\\Mime\\Part\\TextPart;",
          "[, $rcpt, $tok, $body] = $argv;",
          "$transport = new SendmailTransport();",
          "$mailer = new Mailer($transport);",
          "// 8-bit transfer encoding: the body's bytes go on the wire as they are,",
          "// line ends included (Symfony makes them CRLF only for encoded parts).",
          '$crlf = str_replace("\\n", "\\r\\n", $body);',
          "$headers = (new Headers())->addMailboxListHeader('From', ['symfony-app@example.net'])",
          "  ->addMailboxListHeader('To', [$rcpt])->addTextHeader('Subject', \"8bit $tok\");",
          "$mailer->send(new Message($headers, new TextPart($crlf, 'utf-8', 'plain', '8bit')));",
          "// Email's default text part (quoted-printable).",
          "$mailer->send((new Email())->from('symfony-app@example.net')->to($rcpt)",
          '  ->subject("qp $tok")->text($body));',
          'echo "sent\\n";',
          "",
        ].join("\n"),
      );
      const before = await loginCount(s.relay.log);
      const res = await run("/usr/bin/unshare", [
        "-m",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        `mount --bind "$1" /usr/sbin/sendmail && shift && exec /usr/bin/php "$@"`,
        "sh",
        s.sendmail,
        script,
        s.rcpt,
        tok,
        bodyFor(tok),
      ], { env, check: false });
      assert.equal(res.code, 0, `${res.stderr}${res.stdout}`);
      assert.equal(res.stdout, "sent\n");
      assert.equal(res.stderr, "");
      // Outside the namespace /usr/sbin/sendmail is still Postfix's.
      assert.notEqual(
        (await Deno.stat("/usr/sbin/sendmail")).size,
        (await Deno.stat(SSHSENDMAIL)).size,
      );

      const eight = parseMessage(text(await takeBytes(s.box, `8bit ${tok}`)));
      assert.ok(viaRelay(eight, relayUid), eight.headers);
      assert.deepEqual(eight.header("Return-Path"), ["<symfony-app@example.net>"]);
      assert.deepEqual(eight.header("Content-Transfer-Encoding"), ["8bit"]);
      // Symfony ends DATA with CRLF . CRLF after the body's own last CRLF.
      assert.equal(eight.body, `${bodyFor(tok)}\n`);

      const qp = parseMessage(text(await takeBytes(s.box, `qp ${tok}`)));
      assert.ok(viaRelay(qp, relayUid), qp.headers);
      assert.deepEqual(qp.header("Content-Transfer-Encoding"), ["quoted-printable"]);
      assert.equal(decodeQp(qp.body), `${bodyFor(tok)}\n`);
      // Both messages shared one -bs session, hence one ssh connection.
      assert.equal(await loginCount(s.relay.log) - before, 1);
    });
  } finally {
    await s.stop();
  }
});

/** Quoted-printable to text (soft breaks removed, =XX decoded as UTF-8). */
function decodeQp(qp: string): string {
  const raw = qp.replace(/=\r?\n/g, "");
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === "=" && /^[0-9A-F]{2}$/.test(raw.slice(i + 1, i + 3))) {
      out.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(...bytes(raw[i]!));
  }
  return text(new Uint8Array(out));
}

/** A message with every header Postfix would otherwise add, so it adds none. */
function messageFor(tok: string, rcpt: string): string {
  return [
    `X-Rsm-Test: ${tok}`,
    "From: Session Sender <sender@example.net>",
    `To: ${rcpt}`,
    `Subject: session ${tok}`,
    "Date: Thu, 01 Jan 2026 00:00:00 +0000",
    `Message-ID: <${tok}@example.net>`,
    "",
    `first line ${tok}`,
    ".",
    "..two dots",
    ". dot space",
    "trailing space ",
    "Grüße, 8-bit ÄÖÜ",
    "",
    "last line",
    "",
  ].join("\n");
}

/** SMTP transparency: a leading dot doubled; LF or CRLF line ends. */
function stuffed(message: string, eol: string): string {
  return message.split("\n").slice(0, -1).map((l) => (l.startsWith(".") ? `.${l}` : l))
    .map((l) => `${l}${eol}`).join("");
}

async function assertDelivered(box: Mailbox, tok: string, rcpt: string): Promise<void> {
  const data = await takeBytes(box, `X-Rsm-Test: ${tok}`);
  assert.deepEqual(fromMarker(data, "X-Rsm-Test: "), bytes(messageFor(tok, rcpt)), text(data));
}

Deno.test("smtp: one pipelined session, three messages, refusals and commands", async () => {
  const s = await startStandalone(ACCOUNT);
  const box2 = (await startPostfix()).mailbox(ACCOUNT2);
  const rcpt2 = `${ACCOUNT2}@relay.test`;
  try {
    const conf = await s.config("forced", s.forcedKey);
    const env = envFor(s, conf);
    const [t1, t2, t3, t4] = [token("one"), token("two"), token("three"), token("cmdline")];
    const crlf = (...lines: string[]) => lines.map((l) => `${l}\r\n`).join("");
    const input = [
      crlf("EHLO client.test", "MAIL FROM:<sender@example.net> BODY=8BITMIME SIZE=2000"),
      crlf(`RCPT TO:<${s.rcpt}>`, "RCPT TO:<-oQ/tmp/x@relay.test>", `RCPT TO:<${rcpt2}>`),
      crlf("DATA"),
      stuffed(messageFor(t1, s.rcpt), "\r\n"),
      crlf(".", "NOOP", "HELP", "VRFY root", "EXPN staff", `NOOP ${"x".repeat(600)}`),
      crlf("MAIL FROM:<sender@example.net>", `RCPT TO:<${s.rcpt}>`, "RSET", "DATA"),
      // Message two: bare LF everywhere, commands included.
      `MAIL FROM:<sender@example.net>\nRCPT TO:<${s.rcpt}>\nDATA\n`,
      stuffed(messageFor(t2, s.rcpt), "\n"),
      ".\n",
      crlf("MAIL FROM:<sender@example.net>", `RCPT TO:<${s.rcpt}>`, "DATA"),
      stuffed(messageFor(t3, s.rcpt), "\r\n"),
      crlf(".", "QUIT"),
    ].join("");
    const before = await loginCount(s.relay.log);
    const res = await smtpSession([s.sendmail, "-bs"], input, env);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stderr, "");
    const r = res.replies;
    assert.deepEqual(codes(r), [
      220, // greeting
      250, // EHLO
      250, // MAIL
      250, // RCPT 1
      501, // RCPT refused
      250, // RCPT 2
      354, // DATA
      250, // message 1
      250, // NOOP
      214, // HELP
      502, // VRFY
      502, // EXPN
      500, // line too long
      250, // MAIL
      250, // RCPT
      250, // RSET
      503, // DATA without MAIL (RSET forgot it)
      250, // MAIL (bare LF)
      250, // RCPT
      354, // DATA
      250, // message 2
      250, // MAIL
      250, // RCPT
      354, // DATA
      250, // message 3
      221, // QUIT
    ], res.stdout);
    assert.deepEqual(r[1]!.lines.slice(1).sort(), [
      "8BITMIME",
      "ENHANCEDSTATUSCODES",
      "PIPELINING",
      "SIZE 52428800",
    ]);
    assert.match(r[4]!.lines[0]!, /^5\.1\.3 /);
    for (const i of [7, 20, 24]) assert.match(r[i]!.lines[0]!, /^2\.0\.0 Ok: sent as /);
    assert.match(r[12]!.lines[0]!, /line too long/);
    // Three messages, one ssh connection.
    assert.equal(await loginCount(s.relay.log) - before, 1);

    await assertDelivered(s.box, t1, s.rcpt);
    await assertDelivered(box2, t1, s.rcpt);
    await assertDelivered(s.box, t2, s.rcpt);
    await assertDelivered(s.box, t3, s.rcpt);
    // The same message sent on the command line is delivered with the same bytes.
    const cmd = await smtpSessionless(s.sendmail, t4, s.rcpt, env);
    assert.equal(cmd.code, 0, cmd.stderr);
    await assertDelivered(s.box, t4, s.rcpt);
  } finally {
    await s.stop();
  }
});

function smtpSessionless(sendmail: string, tok: string, rcpt: string, env: Record<string, string>) {
  return run(sendmail, ["-f", "sender@example.net", "--", rcpt], {
    stdin: messageFor(tok, rcpt),
    env,
    check: false,
  });
}

Deno.test("smtp: relay down queues (250, mailq), relay refusal is 5xx", async (t) => {
  const s = await startStandalone(ACCOUNT);
  try {
    const session = (from: string, tok: string) =>
      [
        "EHLO client.test",
        `MAIL FROM:<${from}>`,
        `RCPT TO:<${s.rcpt}>`,
        "DATA",
        `Subject: ${tok}`,
        "",
        ...bodyFor(tok).split("\n").slice(0, -1).map((l) => (l.startsWith(".") ? `.${l}` : l)),
        ".",
      ].map((l) => `${l}\r\n`).join("");

    await t.step(
      "relay unreachable: 250 queued by the service, mailq shows it, delivered once it is back",
      async () => {
        // The satellite service (tests/e2e/_service.ts) with its relay down.
        const bed = await startServiceBed({ deferStart: true });
        try {
          await bed.writeConfig([], closedPort());
          await bed.start();
          const user = await account(SENDER);
          const tok = token("down");
          const res = await bed.sendAs(user, ["-bs"], `${session("q@example.net", tok)}QUIT\r\n`);
          assert.equal(res.code, 0, res.stderr);
          assert.equal(res.stderr, "");
          const replies = parseReplies(res.stdout);
          assert.deepEqual(codes(replies), [220, 250, 250, 250, 354, 250, 221], res.stdout);
          // The answer after the dot: the service has it (its drop's name).
          assert.match(replies[5]!.lines[0]!, /^2\.0\.0 Ok: queued as [0-9a-f]{32}$/, res.stdout);
          let queued: Queued | undefined;
          await waitFor("the message deferred in the service's queue", async () => {
            const list = await bed.sendAs(user, ["-bp"]);
            assert.equal(list.code, 0, list.stderr);
            queued = parseMailq(list.stdout).messages[0];
            return queued?.reason !== undefined;
          });
          assert.equal(queued!.sender, "q@example.net");
          assert.deepEqual(queued!.recipients, [s.rcpt]);
          assert.match(queued!.reason!, /^4\.4\.1 sshsendmail: connection refused by the relay$/);
          await expectNoToken(s.box, tok, 300);

          // The relay is back: the service (restarted with its queue) delivers it on -q.
          await bed.stopService();
          await bed.writeConfig();
          await bed.start();
          const flush = await bed.sendAs(user, ["-q", "-v"]);
          assert.deepEqual([flush.code, flush.stdout, flush.stderr], [
            0,
            "sshsendmail: delivered 1, deferred 0, failed 0, expired 0; 0 waiting\n",
            "",
          ]);
          const msg = parseMessage(text(await takeBytes(s.box, tok)));
          assert.deepEqual(msg.header("Return-Path"), ["<q@example.net>"]);
          assert.equal(msg.body, bodyFor(tok));
          await expectNoToken(s.box, tok, 1000);
          assert.equal((await bed.sendAs(user, ["-bp"])).stdout, "Mail queue is empty\n");
        } finally {
          await bed.stop();
        }
      },
    );

    await t.step(
      "sender refused by the key's --allow-sender: 5xx after the dot (queue = no)",
      async () => {
        // Direct mode keeps the relay's verdict on each message after its dot.
        const key = await s.relay.addKey(
          `restrict,command="${RSENDMAIL} --allow-sender allowed@example.net"`,
        );
        const conf = await s.config("refusing", key, ["queue = no"]);
        const env = envFor(s, conf);
        const [bad, good] = [token("refused"), token("allowed")];
        const res = await smtpSession(
          [s.sendmail, "-bs"],
          `${session("other@example.net", bad)}${
            session("allowed@example.net", good).replace(/^EHLO[^\n]*\n/, "")
          }QUIT\r\n`,
          env,
        );
        assert.equal(res.code, 0, res.stderr);
        assert.deepEqual(
          codes(res.replies),
          [220, 250, 250, 250, 354, 550, 250, 250, 354, 250, 221],
          res.stdout,
        );
        assert.match(res.replies[5]!.lines[0]!, /^5\.7\.1 .*sender not allowed/);
        assert.match(res.replies[9]!.lines[0]!, /^2\.0\.0 Ok: sent as m[0-9a-f]{32}$/);
        const msg = parseMessage(text(await takeBytes(s.box, good)));
        assert.equal(msg.body, bodyFor(good));
        await expectNoToken(s.box, bad, 300);
      },
    );
  } finally {
    await s.stop();
  }
});
