import { deepStrictEqual } from "node:assert/strict";
import { headerRecipients, splitAddresses } from "../../lib/client/header_addresses.ts";

/** [what, value, addresses or undefined] */
const SPLIT: [string, string, string[] | undefined][] = [
  ["bare names", "root, ops", ["root", "ops"]],
  ["display names and angle addresses", 'Ann <ann@x.example>, "Doe, John" <j@x.example>', [
    "ann@x.example",
    "j@x.example",
  ]],
  ["a group", "team: a@x.example, b@x.example;", ["a@x.example", "b@x.example"]],
  ["comments", "root (the admin), ops", ["root", "ops"]],
  ["unsure: an unterminated quote", '"Ann <ann@x.example>', undefined],
  ["unsure: a backslash outside quotes", "a\\,b@x.example", undefined],
  ["unsure: two angle addresses in one", "<a@x.example> <b@x.example>", undefined],
  ["unsure: not an address", "a b c", undefined],
];

Deno.test("splitAddresses() reads an address list, or is unsure", async (t) => {
  for (const [what, value, want] of SPLIT) {
    await t.step(what, () => deepStrictEqual(splitAddresses(value), want));
  }
});

Deno.test("headerRecipients() takes To/Cc/Bcc, drops Bcc lines (folded too), leaves Resent- to -t", () => {
  const head = "To: root\nBcc: a@x.example,\n  b@x.example\nCc: ops\nSubject: s\n\nTo: body@x\n";
  deepStrictEqual(headerRecipients(head), {
    recipients: ["root", "a@x.example", "b@x.example", "ops"],
    head: "To: root\nCc: ops\nSubject: s\n\nTo: body@x\n",
    bccLines: [1, 2],
  });
  deepStrictEqual(headerRecipients("Resent-To: root\nTo: x@y.example\n\n"), undefined);
});
