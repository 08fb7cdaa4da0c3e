import { strictEqual } from "node:assert/strict";
import { type FlushReply, flushSummary, removalId } from "../../lib/client/queue_words.ts";

Deno.test("removalId() takes the service's ids and Postfix-style short ids in either case", async (t) => {
  const cases: [string, string][] = [
    [`m${"0123456789abcdef".repeat(2)}`, `m${"0123456789abcdef".repeat(2)}`],
    ["4f2a1b3c9d", "4F2A1B3C9D"],
    ["4F2A1B3C9D", "4F2A1B3C9D"],
  ];
  for (const [word, id] of cases) await t.step(word, () => strictEqual(removalId(word), id));
});

Deno.test("removalId() refuses a path or any other word (no file name reaches the service)", async (t) => {
  const words = [
    "",
    "../../etc/passwd",
    `d${"0".repeat(32)}`,
    `M${"0".repeat(32)}`,
    `m${"0".repeat(31)}`,
    `m${"A".repeat(32)}`,
    "4F2A1B3C9",
    "4F2A1B3C9DE",
    "4F2A1B3C9G",
    "4F2A1B3C9D\n",
  ];
  for (const word of words) {
    await t.step(JSON.stringify(word), () => strictEqual(removalId(word), undefined));
  }
});

Deno.test("flushSummary() reports the run, its last error made printable", () => {
  const reply: FlushReply = {
    ok: true,
    op: "flush",
    delivered: 3,
    deferred: 1,
    failed: 0,
    expired: 2,
    waiting: 1,
    lastError: "4.4.1 connect\x1b[31m refused",
  };
  strictEqual(
    flushSummary("sshsendmail", reply),
    "sshsendmail: delivered 3, deferred 1, failed 0, expired 2; 1 waiting (4.4.1 connect?[31m refused)\n",
  );
  strictEqual(
    flushSummary("sshsendmail", { ...reply, lastError: undefined, waiting: 0 }),
    "sshsendmail: delivered 3, deferred 1, failed 0, expired 2; 0 waiting\n",
  );
});
