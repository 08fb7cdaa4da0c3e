import { strictEqual } from "node:assert/strict";
import { countAddresses, countHeaderRecipients } from "../../lib/header_recipients.ts";

const COUNT_TABLE: ReadonlyArray<[string, string, number]> = [
  ["one address", "a@x.example", 1],
  ["two addresses", "a@x.example, b@x.example", 2],
  ["a comma inside a quoted name is not a separator", '"Doe, John" <j@x.example>, b@x.example', 2],
  ["a comma inside a comment is not a separator", "a@x.example (x, y), b@x.example", 2],
  ["a group counts its members", "team: a@x.example, b@x.example;", 2],
  ["an empty group counts nothing", "undisclosed-recipients:;", 0],
  ["empty entries count nothing", " , a@x.example ,, ", 1],
  ["a bare local name counts", "root", 1],
];

Deno.test("countAddresses() counts an address list's members", async (t) => {
  for (const [name, value, expected] of COUNT_TABLE) {
    await t.step(name, () => strictEqual(countAddresses(value), expected));
  }
});

const HEAD_TABLE: ReadonlyArray<[string, string, number]> = [
  ["To, Cc and Bcc add up", "To: a@x\nCc: b@x, c@x\nBcc: d@x\nSubject: s\n\nbody\n", 4],
  ["folded fields are unfolded", "To: a@x,\n  b@x,\n\tc@x\nSubject: s\n\n", 3],
  ["field names are case-insensitive", "TO: a@x\ncC: b@x\n\n", 2],
  ["the body is not read", "Subject: s\n\nTo: a@x\nCc: b@x\n", 0],
  ["Resent- fields win when present", "To: a@x, b@x\nResent-To: c@x\n\n", 1],
  ["CRLF line ends", "To: a@x\r\nCc: b@x\r\n\r\nTo: c@x\r\n", 2],
  ["From and Reply-To are not recipients", "From: a@x\nReply-To: b@x\nTo: c@x\n\n", 1],
];

Deno.test("countHeaderRecipients() counts what sendmail -t would send to", async (t) => {
  for (const [name, head, expected] of HEAD_TABLE) {
    await t.step(name, () => strictEqual(countHeaderRecipients(head), expected));
  }
});
