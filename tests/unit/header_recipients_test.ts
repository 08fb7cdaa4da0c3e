import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import {
  countAddresses,
  countHeaderRecipients,
  type HeaderCount,
} from "../../lib/relay/header_recipients.ts";
import { HEADER_FACTS } from "../fuzz/header_corpus.ts";

const COUNT_TABLE: ReadonlyArray<[string, string, number]> = [
  ["one address", "a@x.example", 1],
  ["two addresses", "a@x.example, b@x.example", 2],
  ["a comma inside a quoted name is not a separator", '"Doe, John" <j@x.example>, b@x.example', 2],
  ["a comma inside a comment is not a separator", "a@x.example (x, y), b@x.example", 2],
  ["a group counts its members", "team: a@x.example, b@x.example;", 2],
  ["an empty group counts nothing", "undisclosed-recipients:;", 0],
  ["empty entries count nothing", " , a@x.example ,, ", 1],
  ["a bare local name counts", "root", 1],
  [
    'quoted pair outside quotes is part of an atom (a\\"@x, …, "@y)',
    'a\\"@x, b@x, c@x, d@x, "@y',
    5,
  ],
  ["addresses without commas are separate (a@x b@x)", "a@x b@x c@x", 3],
  ["a phrase without <…> is addresses (John Doe j@x)", "John Doe j@x", 3],
  ["a phrase before <…> is not (John Doe <j@x>)", "John Doe <j@x>", 1],
  ["an encoded word's comma separates", "=?utf-8?q?Doe,_J?= <j@x>", 2],
  ["comment-only entries count nothing", "a@x, (c1), (c2 (nested))", 1],
  ["an unterminated comment swallows the rest", "a@x, (b@x, c@x", 1],
  ["an escaped ) keeps the comment open", "(a\\) b@x, c@x", 0],
  ["an unterminated quote swallows the rest", 'a@x, "b@x, c@x', 2],
  ["<a, b> is one address", "<a, b>", 1],
  ["<addr> then an address is two", "<a@x> b@x", 2],
  ["> alone splits", "a>b, c", 3],
  ["a colon without semicolon is no group", "my team: a@x", 2],
  ["a group hides what precedes it up to a comma", "g: a@x; h: b@x, c@x;", 2],
  ["a semicolon outside a group separates", "a@x;b@x", 2],
  ["domain literals are words", "[a b] [c]", 2],
  ["quoted strings are words", '"a" "b" c', 3],
  ["a lone backslash is an (empty) address", "a@x, \\", 2],
  ["CR and LF are blanks", "a@x\rb@x\n c@x", 3],
  ["the value ends at NUL, as a C string does", "a@x\0, b@x, c@x", 1],
  ["nothing but blanks", " \t ", 0],
];

Deno.test("countAddresses() counts the addresses Postfix's tok822_parse finds", async (t) => {
  for (const [name, value, expected] of COUNT_TABLE) {
    await t.step(name, () => strictEqual(countAddresses(value), expected));
  }
});

const counted = (count: number): HeaderCount => ({ kind: "counted", count });

const HEAD_TABLE: ReadonlyArray<[string, string, number]> = [
  ["To, Cc and Bcc add up", "To: a@x\nCc: b@x, c@x\nBcc: d@x\nSubject: s\n\nbody\n", 4],
  ["folded fields are unfolded", "To: a@x,\n  b@x,\n\tc@x\nSubject: s\n\n", 3],
  ["field names are case-insensitive", "TO: a@x\ncC: b@x\n\n", 2],
  ["the body is not read", "Subject: s\n\nTo: a@x\nCc: b@x\n", 0],
  ["Resent- and plain fields: the larger sum counts", "To: a@x, b@x\nResent-To: c@x\n\n", 2],
  ["CRLF line ends", "To: a@x\r\nCc: b@x\r\n\r\nTo: c@x\r\n", 2],
  ["From and Reply-To are not recipients", "From: a@x\nReply-To: b@x\nTo: c@x\n\n", 1],
  ["a message without empty line ends with its last line", "To: a@x\nCc: b@x", 2],
  ["an empty message counts nothing", "", 0],
];

Deno.test("countHeaderRecipients() counts what sendmail -t would send to", async (t) => {
  for (const [name, head, expected] of HEAD_TABLE) {
    await t.step(name, () => deepStrictEqual(countHeaderRecipients(head), counted(expected)));
  }
});

/**
 * Each bypass of a 2-recipient limit, with its positive control: the same
 * spelling within the limit. A row whose attack is counted over 2 and whose
 * control is counted at most 2 shows the limit binds that spelling and does
 * not refuse everything written that way.
 */
const BYPASS_TABLE: ReadonlyArray<[string, string, number, string, number]> = [
  ["blank before colon (To : …)", "To : a@x, b@x, c@x, d@x, e@x", 5, "To : a@x, b@x", 2],
  ["tab before colon (Bcc\\t: …)", "To: a@x\nBcc\t: f@x, g@x", 3, "To: a@x\nBcc\t: f@x", 2],
  ["blanks and tabs before colon", "Cc \t : a@x, b@x, c@x", 3, "Cc \t : a@x, b@x", 2],
  [
    'quoted pair outside quotes (a\\"@x, …, "@y)',
    'To: a\\"@x, b@x, c@x, d@x, "@y',
    5,
    'To: a\\"@x, "@y',
    2,
  ],
  ["addresses without commas (a@x b@x c@x)", "To: a@x b@x c@x", 3, "To: a@x b@x", 2],
  ["phrase without angle brackets (John Doe j@x)", "To: John Doe j@x", 3, "To: Doe j@x", 2],
  [
    "encoded word with a comma",
    "To: =?utf-8?q?D,_J?= <j@x>, k@x",
    3,
    "To: =?utf-8?q?D_J?= <j@x>, k@x",
    2,
  ],
  ["folding (LF)", "To: a@x,\n b@x,\n\tc@x", 3, "To: a@x,\n b@x", 2],
  ["folding (CRLF)", "To: a@x,\r\n b@x,\r\n\tc@x\r\n", 3, "To: a@x,\r\n b@x\r\n", 2],
  ["field-name case (tO/cC/BCC)", "tO: a@x\ncC: b@x\nBCC: c@x", 3, "tO: a@x\nBCC: c@x", 2],
  ["repeated fields", "To: a@x\nTo: b@x\nTo: c@x", 3, "To: a@x\nTo: b@x", 2],
  ["group members", "To: team: a@x, b@x, c@x;", 3, "To: team: a@x, b@x;", 2],
  ["semicolon as a separator", "To: a@x;b@x;c@x", 3, "To: a@x;b@x", 2],
  ["Resent- fields (Resent-To : …)", "Resent-To : a@x, b@x, c@x", 3, "Resent-To : a@x, b@x", 2],
  [
    "Resent- beside plain fields",
    "To: a@x\nResent-Cc: r@x, s@x, t@x",
    3,
    "To: a@x\nResent-Cc: r@x",
    1,
  ],
  [
    "From_ line before the fields",
    "From x Mon\nTo: a@x, b@x, c@x",
    3,
    "From x Mon\nTo: a@x, b@x",
    2,
  ],
  ["quoted display name with commas", 'To: "D, J" <j@x>, a@x, b@x', 3, 'To: "D, J" <j@x>', 1],
  ["comment after an address", "To: a@x (x), b@x, c@x", 3, "To: a@x (x, y, z)", 1],
];

Deno.test("countHeaderRecipients() counts each -t bypass of --max-recipients 2 (positive control: within 2)", async (t) => {
  for (const [name, attack, attackCount, control, controlCount] of BYPASS_TABLE) {
    await t.step(name, () => {
      deepStrictEqual(
        countHeaderRecipients(`${attack}\nSubject: s\n\nbody\n`),
        counted(attackCount),
      );
      ok(attackCount > 2);
      deepStrictEqual(
        countHeaderRecipients(`${control}\nSubject: s\n\nbody\n`),
        counted(controlCount),
      );
      ok(controlCount <= 2);
    });
  }
});

Deno.test("countHeaderRecipients() never counts fewer than Postfix extracts (measured facts)", async (t) => {
  for (const f of HEADER_FACTS) {
    await t.step(f.name, () => {
      const got = countHeaderRecipients(f.message);
      if (f.relay === "uncountable") {
        strictEqual(got.kind, "uncountable");
      } else {
        deepStrictEqual(got, counted(f.relay));
        ok(f.relay >= f.postfix, `${f.relay} < ${f.postfix}`);
      }
    });
  }
});

const HEAD = "To: a@x\nSubject: s\n\nbody\n";

Deno.test("countHeaderRecipients() refuses what it cannot count (positive control: the same, countable)", async (t) => {
  await t.step("header section not ended within the bytes read", () => {
    deepStrictEqual(countHeaderRecipients("To: a@x\nCc: b", { complete: false }), {
      kind: "uncountable",
      reason: "header section too long",
    });
    deepStrictEqual(countHeaderRecipients("To: a@x\nCc: b@x\n", { complete: false }), {
      kind: "uncountable",
      reason: "header section too long",
    });
    deepStrictEqual(countHeaderRecipients(HEAD.slice(0, 20), { complete: false }), counted(1));
  });
  await t.step("NUL byte in the header section", () => {
    deepStrictEqual(countHeaderRecipients("To: a@x\0 b@x\n c@x\n\n"), {
      kind: "uncountable",
      reason: "NUL byte in header section",
    });
    deepStrictEqual(countHeaderRecipients(`${HEAD}\0 in the body\n`), counted(1));
  });
  await t.step("From_ line as long as Postfix's line record", () => {
    deepStrictEqual(countHeaderRecipients(`From :${"y".repeat(2042)}\n${HEAD}`), {
      kind: "uncountable",
      reason: "From_ line too long",
    });
    deepStrictEqual(countHeaderRecipients(`From :${"y".repeat(2041)}\n${HEAD}`), counted(1));
  });
});
