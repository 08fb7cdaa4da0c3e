/**
 * The satellite service end to end: local users drop mail, the service
 * (as its own account, started as its unit starts it) delivers it over one
 * batch session to the real relay.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Queue } from "../../lib/client/queue_io.ts";
import { newMessageId } from "../../lib/client/queue_entry.ts";
import { Sha256 } from "../../lib/shared/sha256.ts";
import { type Account, account, expectNoToken, type Mailbox, takeByToken, token } from "./_bed.ts";
import { parseMessage } from "./_standalone.ts";
import { names, type ServiceBed, startServiceBed } from "./_service.ts";

/** A service bed, the sender rsmann and the recipient rsmrcpt's mailbox; the bed stops after `fn`. */
async function withBed(
  fn: (s: { bed: ServiceBed; ann: Account; rcpt: Account; box: Mailbox }) => Promise<void>,
): Promise<void> {
  const bed = await startServiceBed();
  try {
    const rcpt = await account("rsmrcpt");
    await fn({ bed, ann: await account("rsmann"), rcpt, box: bed.mailbox(rcpt.name) });
  } finally {
    await bed.stop();
  }
}

Deno.test("service: a user's sendmail is delivered with envelope sender login@domain", () =>
  withBed(async ({ bed, ann, rcpt, box }) => {
    const tok = token("svc");
    const started = Date.now();
    const res = await bed.sendAs(
      ann,
      [`${rcpt.name}@${bed.domain}`],
      `Subject: t\n\nhello ${tok}\n`,
    );
    const submitted = Date.now() - started;
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout + res.stderr, "");
    const mail = parseMessage(await takeByToken(box, tok));
    assert.deepEqual(mail.header("Return-Path"), [`<rsmann@sat.test>`]);
    assert.deepEqual(mail.header("From"), [`rsmann@sat.test`]);
    console.log(`submit ${submitted} ms, delivered ${Date.now() - started} ms`);
    const q = await bed.sendAs(ann, [bed.sendmail, "-bp"]);
    assert.equal(q.stdout, "Mail queue is empty\n", q.stderr);
  }));

Deno.test("service: root's sendmail and mailq go through root's own directory", () =>
  withBed(async ({ bed, rcpt, box }) => {
    const root = { name: "root", uid: 0, gid: 0, home: "/root" };
    const tok = token("root");
    const res = await bed.sendAs(
      root,
      [`${rcpt.name}@${bed.domain}`],
      `Subject: r\n\nhello ${tok}\n`,
    );
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout + res.stderr, "");
    const mail = parseMessage(await takeByToken(box, tok));
    assert.deepEqual(mail.header("Return-Path"), [`<root@sat.test>`]);
    const q = await bed.sendAs(root, [bed.sendmail, "-bp"]);
    assert.equal(q.stdout, "Mail queue is empty\n", q.stderr);
    const f = await bed.sendAs(root, [bed.sendmail, "-q", "-v"]);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stdout, /delivered 0, deferred 0, failed 0, expired 0; 0 waiting/);
  }));

Deno.test("service: Date: and Message-ID: are added at submission when missing, kept when present", () =>
  withBed(async ({ bed, ann, rcpt, box }) => {
    const bare = token("bare");
    const before = Date.now();
    const r1 = await bed.sendAs(
      ann,
      [`${rcpt.name}@${bed.domain}`],
      `Subject: ${bare}\n\n${bare}\n`,
    );
    assert.equal(r1.code, 0, r1.stderr);
    const m1 = parseMessage(await takeByToken(box, bare));
    assert.equal(m1.header("Date").length, 1);
    const date = Date.parse(m1.header("Date")[0]!);
    assert.ok(Math.abs(date - before) < 5000, m1.header("Date")[0]);
    assert.match(m1.header("Message-ID")[0] ?? "", /^<[0-9a-f]{24}@sat\.test>$/);
    const full = token("full");
    const r2 = await bed.sendAs(
      ann,
      [`${rcpt.name}@${bed.domain}`],
      `Date: Mon, 01 Jan 2024 00:00:00 +0000\nMessage-ID: <mine@example.net>\nSubject: ${full}\n\n${full}\n`,
    );
    assert.equal(r2.code, 0, r2.stderr);
    const m2 = parseMessage(await takeByToken(box, full));
    assert.deepEqual(m2.header("Date"), ["Mon, 01 Jan 2024 00:00:00 +0000"]);
    assert.deepEqual(m2.header("Message-ID"), ["<mine@example.net>"]);
  }));

Deno.test("service: -t with a local name in To: (mail -s x root) goes to adminaddr; Bcc: is dropped", () =>
  withBed(async ({ bed, ann, rcpt, box }) => {
    await bed.stopService();
    await bed.writeConfig([`adminaddr = ${rcpt.name}@${bed.domain}`]);
    await bed.start();
    const tok = token("dash-t");
    const res = await bed.sendAs(
      ann,
      ["-t", "-i"],
      `To: root\nBcc: ${ann.name}\nSubject: ${tok}\n\n${tok}\n`,
    );
    assert.equal(res.code, 0, res.stderr);
    const mail = parseMessage(await takeByToken(box, tok));
    // Arrived in adminaddr's box; the relay's Postfix may qualify the header.
    assert.match(mail.header("To")[0] ?? "", /^root(@relay\.test)?$/);
    assert.deepEqual(mail.header("Bcc"), []);
    // Positive control: -t to a remote address keeps -t (the relay extracts it).
    const remote = token("dash-t-remote");
    const r2 = await bed.sendAs(
      ann,
      ["-t"],
      `To: ${rcpt.name}@${bed.domain}\nSubject: ${remote}\n\n${remote}\n`,
    );
    assert.equal(r2.code, 0, r2.stderr);
    await takeByToken(box, remote);
  }));

Deno.test("service: sendmail -v says where the message went; a direct send with -v shows ssh's diagnostics", () =>
  withBed(async ({ bed, ann, rcpt, box }) => {
    const tok = token("verbose");
    const res = await bed.sendAs(
      ann,
      ["-v", `${rcpt.name}@${bed.domain}`],
      `Subject: v\n\n${tok}\n`,
    );
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /^sshsendmail: handed to the delivery service as [0-9a-f]{32}; /);
    await takeByToken(box, tok);
    // Direct (queue = no, as the account that holds the key): ssh's own lines, then its exit.
    await bed.writeConfig(["queue = no"]);
    const direct = token("verbose-direct");
    const d = await bed.sendAs(bed.service, [
      bed.sendmail,
      "-v",
      `${rcpt.name}@${bed.domain}`,
    ], `Subject: v\n\n${direct}\n`);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stderr, /Authenticated to 127\.0\.0\.1/);
    assert.match(d.stderr, /sshsendmail: 127\.0\.0\.1: ssh exited 0\n$/);
    await takeByToken(box, direct);
    // Positive control: without -v, silence.
    const quiet = token("quiet-direct");
    const q = await bed.sendAs(
      bed.service,
      [bed.sendmail, `${rcpt.name}@${bed.domain}`],
      `Subject: q\n\n${quiet}\n`,
    );
    assert.equal(q.stdout + q.stderr, "");
    await takeByToken(box, quiet);
  }));

Deno.test("service: messages on both sides of its 64 KiB in-memory copy, with and without From:, arrive byte for byte", () =>
  withBed(async ({ bed, ann, rcpt, box }) => {
    // Lines of printable text, none starting with "From " (mbox would quote it).
    const bodyOf = (bytes: number, tok: string) => {
      const lines: string[] = [`token ${tok}`];
      for (let i = 0, n = 0; n < bytes; i++) {
        const line = `${String(i).padStart(6, "0")} ${"abcdefghij".repeat(7)}`;
        lines.push(line);
        n += line.length + 1;
      }
      return `${lines.join("\n")}\n`;
    };
    const cases = [
      {
        name: "60 KB, no From: (copied again with From: added, in memory)",
        bytes: 60_000,
        from: false,
      },
      { name: "70 KB, no From: (past 64 KiB: a spool file)", bytes: 70_000, from: false },
      { name: "70 KB with From:", bytes: 70_000, from: true },
      { name: "300 KB with From:", bytes: 300_000, from: true },
    ];
    for (const c of cases) {
      const tok = token("big");
      const body = bodyOf(c.bytes, tok);
      const head = `${c.from ? "From: rsmann@sat.test\n" : ""}Subject: ${c.name}\n\n`;
      const res = await bed.sendAs(ann, [`${rcpt.name}@${bed.domain}`], head + body);
      assert.equal(res.code, 0, res.stderr);
      const mail = parseMessage(await takeByToken(box, tok));
      assert.equal(mail.body.trimEnd(), body.trimEnd(), c.name);
      assert.deepEqual(mail.header("From"), ["rsmann@sat.test"], c.name);
    }
  }));

Deno.test("service stopped: mailq says so (75, one line); mail sent meanwhile waits in drop/ and goes once the service is back", () =>
  withBed(async ({ bed, ann, rcpt, box }) => {
    await bed.stopService();
    const q = await bed.sendAs(ann, [bed.sendmail, "-bp"]);
    assert.equal(q.code, 75, q.stdout + q.stderr);
    assert.equal(q.stdout, "");
    assert.equal(q.stderr, "sshsendmail: the sshsendmail service is not running\n");
    const tok = token("down");
    const res = await bed.sendAs(
      ann,
      [`${rcpt.name}@${bed.domain}`],
      `Subject: d\n\nwhile down ${tok}\n`,
    );
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout + res.stderr, "");
    await bed.start();
    const mail = parseMessage(await takeByToken(box, tok));
    assert.deepEqual(mail.header("Return-Path"), ["<rsmann@sat.test>"]);
    // control: running again, mailq answers
    const again = await bed.sendAs(ann, [bed.sendmail, "-bp"]);
    assert.equal(again.code, 0, again.stderr);
  }));

Deno.test("service: the first configured relay refuses the connection: the next one delivers at once, not after a backoff", () =>
  withBed(async ({ bed, ann, rcpt, box }) => {
    await bed.stopService();
    // Nothing listens on 127.0.0.2 at the relay's port: refused before any reply.
    const conf = await Deno.readTextFile(bed.conf);
    const hostLine = `host = ${bed.relay.host}`;
    assert.ok(conf.includes(`${hostLine}\n`), conf);
    await Deno.writeTextFile(
      bed.conf,
      conf.replace(`${hostLine}\n`, `host = 127.0.0.2, ${bed.relay.host}\n`),
    );
    await bed.start();
    // A message deferred instead would wait 60 s for its retry: takeByToken gives up after 15.
    for (const tok of [token("failover"), token("failover2")]) {
      const res = await bed.sendAs(
        ann,
        [`${rcpt.name}@${bed.domain}`],
        `Subject: f\n\nfailover ${tok}\n`,
      );
      assert.equal(res.code, 0, res.stderr);
      const mail = parseMessage(await takeByToken(box, tok));
      assert.deepEqual(mail.header("Return-Path"), ["<rsmann@sat.test>"]);
    }
    const q = await bed.sendAs(ann, [bed.sendmail, "-bp"]);
    assert.equal(q.stdout, "Mail queue is empty\n", q.stderr);
  }));

Deno.test("service: a drop left in incoming/ that was queued already (stopped between the two) is removed at start, not queued again: delivered once", () =>
  withBed(async ({ bed, ann, rcpt, box }) => {
    await bed.stopService();
    const tok = token("twice");
    const res = await bed.sendAs(
      ann,
      [`${rcpt.name}@${bed.domain}`],
      `Subject: t\n\nonce ${tok}\n`,
    );
    assert.equal(res.code, 0, res.stderr);
    const drops = await names(`${bed.spool}/drop`);
    assert.equal(drops.length, 1, `drop/: ${drops}`);
    const drop = drops[0]!;
    // What a service leaves when it stops after queueing the drop and before removing it:
    // the drop claimed into incoming/ (still the user's), and its message in queue/new.
    await Deno.rename(`${bed.spool}/drop/${drop}`, `${bed.spool}/incoming/${drop}`);
    const body = new TextEncoder().encode(
      `From: ${ann.name}@sat.test\nSubject: t\n\nonce ${tok}\n`,
    );
    const path = await new Queue(`${bed.spool}/queue`).enqueue({
      v: 1,
      id: newMessageId(crypto.randomUUID()),
      sender: `${ann.name}@sat.test`,
      recipients: [`${rcpt.name}@${bed.domain}`],
      extractRecipients: false,
      created: Date.now(),
      size: body.length,
      sha256: new Sha256().update(body).hex(),
      uid: ann.uid,
      drop: drop.slice(1),
    }, body);
    await Deno.chown(path, bed.service.uid, bed.service.gid);
    await bed.start();
    await takeByToken(box, tok);
    await expectNoToken(box, tok, 3000);
    assert.deepEqual(await names(`${bed.spool}/incoming`), []);
    const q = await bed.sendAs(ann, [bed.sendmail, "-bp"]);
    assert.equal(q.stdout, "Mail queue is empty\n", q.stderr);
  }));

Deno.test("service: no relay configured yet (before setup): mail is accepted and waits, saying why; once a relay is configured, it goes", () =>
  withBed(async ({ bed, ann, rcpt, box }) => {
    await bed.stopService();
    const conf = await Deno.readTextFile(bed.conf);
    await Deno.writeTextFile(bed.conf, conf.replace(/^host = .*\n/m, ""));
    await bed.start();
    const tok = token("nohost");
    const res = await bed.sendAs(
      ann,
      [`${rcpt.name}@${bed.domain}`],
      `Subject: n\n\nwaits ${tok}\n`,
    );
    assert.deepEqual([res.code, res.stdout, res.stderr], [0, "", ""]);
    let list = "";
    for (let i = 0; i < 100 && !list.includes("no relay configured"); i++) {
      list = (await bed.sendAs(ann, [bed.sendmail, "-bp"])).stdout;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(
      list,
      /\(4\.3\.5 sshsendmail: no relay configured \(host in the config file\); 1 attempts?; /,
    );
    await expectNoToken(box, tok, 500);
    // Control: the relay configured (as setup writes it) and the service restarted.
    await bed.stopService();
    await Deno.writeTextFile(bed.conf, conf);
    await bed.start();
    const flush = await bed.sendAs(ann, [bed.sendmail, "-q"]);
    assert.equal(flush.code, 0, flush.stderr);
    await takeByToken(box, tok);
  }));
