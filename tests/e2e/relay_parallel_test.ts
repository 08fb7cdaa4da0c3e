/**
 * The relay's batch with `--parallel N` (issue 15), end to end: the BUILT
 * dist/rsendmail as a forced command behind a real sshd, the real Postfix
 * behind it. Several sendmail processes run at once, yet every frame is
 * answered in frame order, every message arrives exactly once, and one id
 * is never delivered twice (in one batch or in two concurrent sessions).
 *
 * Mail goes to this file's own account (rsmpar), found by a unique token.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type BatchReply, parseReply } from "../../lib/shared/batch.ts";
import { encodeFrame } from "../../lib/shared/request_codec.ts";
import { Sha256 } from "../../lib/shared/sha256.ts";
import { quoteWords } from "../../lib/shared/words.ts";
import {
  concat,
  expectNoToken,
  type Mailbox,
  type Relay,
  RSENDMAIL,
  run,
  startPostfix,
  startRelay,
  takeByToken,
  token,
} from "./_bed.ts";

const ACCOUNT = "rsmpar";
const encoder = new TextEncoder();

/** One frame to send: its id, its message, and the SHA-256 it declares. */
interface Frame {
  id: string;
  tok: string;
  body: Uint8Array;
  sha256: string;
}

function hex(bytes: Uint8Array): string {
  const hash = new Sha256();
  hash.update(bytes);
  return hash.hex();
}

/** A frame holding a fresh token (padded to `pad` bytes of body text). */
function frame(rcpt: string, pad = 0): Frame {
  const tok = token("par");
  const body = encoder.encode(
    `From: a@relay.test\nTo: ${rcpt}\nSubject: ${tok}\n\n${tok}\n${"x".repeat(pad)}\n`,
  );
  return { id: `id-${tok}`, tok, body, sha256: hex(body) };
}

/** The batch's stdin: each frame's header and bytes, then END. */
function batchInput(rcpt: string, frames: readonly Frame[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of frames) {
    const header = encodeFrame({
      sender: "a@relay.test",
      extractRecipients: false,
      recipients: [rcpt],
      size: f.body.length,
      sha256: f.sha256,
      id: f.id,
    });
    parts.push(encoder.encode(`${header}\n`), f.body);
  }
  parts.push(encoder.encode("END\n"));
  return concat(...parts);
}

/** Runs one batch session through ssh; returns its exit code, replies and stderr. */
async function runBatch(
  relay: Relay,
  key: string,
  input: Uint8Array,
): Promise<{ code: number; replies: BatchReply[]; stderr: string }> {
  const [cmd, ...args] = relay.sshArgv(key);
  const res = await run(cmd!, [...args, quoteWords(["rsendmail", "--batch"])], {
    stdin: input,
    check: false,
  });
  const lines = res.stdout.split("\n").filter((l) => l !== "");
  const replies = lines.map((l) => {
    const reply = parseReply(l);
    assert.ok(reply, `not a reply line: ${l}`);
    return reply;
  });
  return { code: res.code, replies, stderr: res.stderr };
}

/** Each token arrives once: taken, and no second copy shows up. */
async function arrivesOnce(box: Mailbox, frames: readonly Frame[]): Promise<void> {
  for (const f of frames) await takeByToken(box, f.tok);
  for (const f of frames) await expectNoToken(box, f.tok, 100);
}

async function withKey(
  options: string,
  fn: (relay: Relay, key: string, rcpt: string, box: Mailbox) => Promise<void>,
): Promise<void> {
  const postfix = await startPostfix();
  const box = postfix.mailbox(ACCOUNT);
  const relay = await startRelay();
  try {
    const label = `par-${crypto.randomUUID().slice(0, 8)}`;
    const key = await relay.addKey(`restrict,command="${RSENDMAIL} --label ${label} ${options}"`);
    await fn(relay, key, `${ACCOUNT}@${postfix.domain}`, box);
  } finally {
    await relay.stop();
  }
}

for (const parallel of [4, 1]) {
  const what = parallel === 1 ? " (positive control: one sendmail at a time)" : "";
  Deno.test(`relay --parallel ${parallel}: 10 frames are answered in frame order and each message arrives exactly once${what}`, async () => {
    await withKey(`--parallel ${parallel}`, async (relay, key, rcpt, box) => {
      // The first message is the largest: with several sendmails at once it
      // is likely done last, yet its reply comes first.
      const frames = Array.from({ length: 10 }, (_, i) => frame(rcpt, i === 0 ? 400_000 : 0));
      const res = await runBatch(relay, key, batchInput(rcpt, frames));
      assert.equal(res.code, 0, res.stderr);
      assert.deepEqual(res.replies.map((r) => r.id), frames.map((f) => f.id));
      for (const r of res.replies) {
        assert.equal(r.code, 0, r.text);
        assert.equal(r.status, "2.0.0");
        assert.match(r.text, /^delivered, label par-/);
      }
      await arrivesOnce(box, frames);
    });
  });
}

Deno.test("relay --parallel 4: a duplicate id within one batch is delivered once ('already delivered' for the second)", async () => {
  await withKey("--parallel 4", async (relay, key, rcpt, box) => {
    const [a, b, c] = [frame(rcpt, 200_000), frame(rcpt), frame(rcpt)];
    const res = await runBatch(relay, key, batchInput(rcpt, [a!, b!, a!, c!]));
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(
      res.replies.map((r) => [r.id, r.code, r.text.replace(/, label .*/, "")]),
      [[a!.id, 0, "delivered"], [b!.id, 0, "delivered"], [a!.id, 0, "already delivered"], [
        c!.id,
        0,
        "delivered",
      ]],
    );
    await arrivesOnce(box, [a!, b!, c!]);
  });
});

Deno.test("relay --parallel 4: the same id in two concurrent sessions is delivered once", async () => {
  await withKey("--parallel 4", async (relay, key, rcpt, box) => {
    const shared = frame(rcpt, 100_000);
    const own = [frame(rcpt), frame(rcpt)];
    const [one, two] = await Promise.all([
      runBatch(relay, key, batchInput(rcpt, [shared, own[0]!])),
      runBatch(relay, key, batchInput(rcpt, [shared, own[1]!])),
    ]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(two.code, 0, two.stderr);
    const texts = [one.replies[0]!, two.replies[0]!].map((r) => r.text.replace(/, label .*/, ""));
    assert.deepEqual(texts.sort(), ["already delivered", "delivered"]);
    for (const r of [...one.replies, ...two.replies]) assert.equal(r.code, 0, r.text);
    await arrivesOnce(box, [shared, ...own]);
  });
});

Deno.test("relay --parallel 4: a frame whose SHA-256 does not match gets its own error while its neighbours deliver", async () => {
  await withKey("--parallel 4", async (relay, key, rcpt, box) => {
    const good = [frame(rcpt, 200_000), frame(rcpt), frame(rcpt)];
    const bad = frame(rcpt);
    bad.sha256 = hex(encoder.encode("something else"));
    const res = await runBatch(relay, key, batchInput(rcpt, [good[0]!, bad, good[1]!, good[2]!]));
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(res.replies.map((r) => r.id), [good[0]!.id, bad.id, good[1]!.id, good[2]!.id]);
    assert.deepEqual(res.replies.map((r) => r.code), [0, 65, 0, 0]);
    assert.equal(res.replies[1]!.status, "5.6.0");
    assert.equal(res.replies[1]!.text, "rsendmail: message does not match its SHA-256");
    await arrivesOnce(box, good);
    await expectNoToken(box, bad.tok, 300);
  });
});

Deno.test("relay: a bad --parallel value (0, 17, x) is refused as an admin error (4.3.5); 16 is served", async (t) => {
  for (const value of ["0", "17", "x"]) {
    await t.step(`--parallel ${value} is refused`, async () => {
      await withKey(`--parallel ${value}`, async (relay, key, rcpt, box) => {
        const f = frame(rcpt);
        const res = await runBatch(relay, key, batchInput(rcpt, [f]));
        assert.equal(res.code, 75, res.stderr);
        assert.equal(res.stderr, "4.3.5 rsendmail: relay configuration error\n");
        assert.deepEqual(res.replies, []);
        await expectNoToken(box, f.tok, 300);
      });
    });
  }
  await t.step("--parallel 16 is served (positive control)", async () => {
    await withKey("--parallel 16", async (relay, key, rcpt, box) => {
      const frames = [frame(rcpt), frame(rcpt)];
      const res = await runBatch(relay, key, batchInput(rcpt, frames));
      assert.equal(res.code, 0, res.stderr);
      assert.deepEqual(res.replies.map((r) => r.code), [0, 0]);
      await arrivesOnce(box, frames);
    });
  });
});
