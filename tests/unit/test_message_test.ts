import { strictEqual } from "node:assert/strict";
import { testMessage } from "../../lib/client/test_message.ts";

Deno.test("testMessage() is a complete message from root at the host, dated", () => {
  strictEqual(
    testMessage("sat.example", "a@example.net", new Date(Date.UTC(2026, 0, 2, 3, 4, 5))),
    [
      "From: sshsendmail <root@sat.example>",
      "To: <a@example.net>",
      "Subject: sshsendmail test from sat.example",
      "Date: Fri, 02 Jan 2026 03:04:05 GMT",
      "",
      "This test message left sat.example through sshsendmail and the relay's rsendmail.",
      "",
    ].join("\n"),
  );
});
