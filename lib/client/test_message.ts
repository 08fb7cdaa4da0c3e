/**
 * The test message of `sshsendmail setup` and `--test`. Pure.
 *
 * @module
 */

/**
 * The test message from `host` to `address`, dated `date`.
 *
 * @example Usage
 * ```ts
 * import { ok } from "node:assert/strict";
 * import { testMessage } from "./test_message.ts";
 * ok(testMessage("sat", "a@example.net", new Date(0)).startsWith("From: sshsendmail <root@sat>\n"));
 * ```
 */
export function testMessage(host: string, address: string, date: Date): string {
  return [
    `From: sshsendmail <root@${host}>`,
    `To: <${address}>`,
    `Subject: sshsendmail test from ${host}`,
    `Date: ${date.toUTCString()}`,
    "",
    `This test message left ${host} through sshsendmail and the relay's rsendmail.`,
    "",
  ].join("\n");
}
