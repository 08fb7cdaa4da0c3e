import { notStrictEqual, strictEqual } from "node:assert/strict";
import { pipeMessageId } from "../../lib/client/pipe_message_id.ts";
import { ConfigError } from "../../lib/shared/errors.ts";
import { EX_TEMPFAIL } from "../../lib/shared/exit_codes.ts";
import { assertRefused } from "./_assert.ts";

const REQ = { sender: "a@example.org", recipients: ["b@example.net", "c@example.net"] };

/** The id as WebCrypto computes it (the edge's former implementation). */
async function webCryptoId(queueId: string, req: typeof REQ): Promise<string> {
  const text = [queueId, req.sender ?? "", ...req.recipients].join("\0");
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)),
  );
  return `m${Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

Deno.test("pipeMessageId() is the first 128 bits of SHA-256 over the queue id and envelope", async (t) => {
  const cases: [string, typeof REQ][] = [
    ["4F2A1B3C9D", REQ],
    ["3Wq9kZ1x2y", { sender: "", recipients: ["ü@exämple.net"] }],
    ["A".repeat(64), { sender: "x@y", recipients: [] }],
  ];
  for (const [queueId, req] of cases) {
    await t.step(
      queueId,
      async () => strictEqual(pipeMessageId(queueId, req), await webCryptoId(queueId, req)),
    );
  }
});

Deno.test("pipeMessageId() gives a retry the same id and another delivery another", () => {
  strictEqual(pipeMessageId("4F2A1B3C9D", REQ), pipeMessageId("4F2A1B3C9D", { ...REQ }));
  notStrictEqual(pipeMessageId("4F2A1B3C9D", REQ), pipeMessageId("4F2A1B3C9E", REQ));
  notStrictEqual(
    pipeMessageId("4F2A1B3C9D", REQ),
    pipeMessageId("4F2A1B3C9D", { ...REQ, recipients: ["b@example.net"] }),
  );
});

Deno.test("pipeMessageId() refuses a queue id carrying other words for the relay's command", async (t) => {
  for (const queueId of ["", "4F2A; rm -rf /", "--id=m0", "A".repeat(65), "4F2A\n1B"]) {
    await t.step(JSON.stringify(queueId), () => {
      assertRefused(() => pipeMessageId(queueId, REQ), ConfigError, { exitCode: EX_TEMPFAIL });
    });
  }
  await t.step("positive control: Postfix's long queue id", () => {
    strictEqual(pipeMessageId("4bQ2Zf1Yx7z9Hk3", REQ).length, 33);
  });
});
