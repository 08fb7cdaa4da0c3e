/**
 * The satellite service end to end: local users drop mail, the service
 * (as its own account, started as its unit starts it) delivers it over one
 * batch session to the real relay.
 *
 * @module
 */

import assert from "node:assert/strict";
import { account, startServiceBed } from "./_service.ts";
import { parseMessage, takeByToken, token } from "./_standalone.ts";

Deno.test("service: a user's sendmail is delivered with envelope sender login@domain", async () => {
  const bed = await startServiceBed();
  try {
    const ann = await account("rsmann");
    const rcpt = await account("rsmrcpt");
    const box = bed.mailbox(rcpt.name);
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
  } finally {
    await bed.stop();
  }
});

Deno.test("service: root's sendmail and mailq go through root's own directory", async () => {
  const bed = await startServiceBed();
  try {
    const root = { name: "root", uid: 0, gid: 0, home: "/root" };
    const rcpt = await account("rsmrcpt");
    const box = bed.mailbox(rcpt.name);
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
  } finally {
    await bed.stop();
  }
});
