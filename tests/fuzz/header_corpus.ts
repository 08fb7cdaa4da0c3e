/**
 * What Postfix 3.7's `sendmail -t -oi` extracts from tricky header sections,
 * measured with the real program (tests/e2e/header_count_test.ts measures
 * every row again), beside what the relay counts for the same message.
 * tests/unit/header_recipients_test.ts checks the relay's side.
 *
 * @module
 */

/** One measured message. */
export interface HeaderFact {
  /** The spelling, named after the bypass it would be. */
  name: string;
  /** The whole message, one character per byte. */
  message: string;
  /** Recipients Postfix extracts (0: sendmail refuses the message). */
  postfix: number;
  /** What the relay counts, or "uncountable" (refused). */
  relay: number | "uncountable";
}

const BODY = "Subject: s\n\nbody\nTo: body1@x, body2@x\n";
const fact = (
  name: string,
  head: string,
  postfix: number,
  relay: number | "uncountable" = postfix,
) => ({
  name,
  message: `${head}\n${BODY}`,
  postfix,
  relay,
});

/** Measured facts; where the relay counts more than Postfix, the row says why. */
export const HEADER_FACTS: readonly HeaderFact[] = [
  fact("plain list", "To: a@x, b@x", 2),
  fact("blank before colon (To : …)", "To : a@x, b@x, c@x, d@x, e@x", 5),
  fact("tab before colon (Bcc\\t: …)", "To: a@x\nBcc\t: f@x, g@x", 3),
  fact("blanks and tabs before colon", "To \t \t: a@x, b@x", 2),
  fact("field-name case (tO, CC, bcc)", "tO: a@x\nCC: b@x\nbcc: c@x", 3),
  fact("repeated To: fields add up", "To: a@x\nTo: b@x\nTo: c@x", 3),
  fact('quoted pair outside quotes (a\\"@x, …, "@y)', 'To: a\\"@x, b@x, c@x, d@x, "@y', 5),
  fact("addresses without commas (a@x b@x …)", "To: a@x b@x c@x d@x", 4),
  fact("phrase without angle brackets (John Doe j@x)", "To: John Doe j@x", 3),
  fact("display name before <addr> is one address", "To: John Doe <j@x>", 1),
  fact("comma inside a quoted display name", 'To: "Doe, John" <j@x>', 1),
  fact("comma inside an encoded word splits it", "To: =?utf-8?q?Doe,_J?= <j@x>", 2),
  fact("commas inside a comment", "To: a@x (b@x, c@x)", 1),
  fact("comment-only entries count nothing", "To: a@x, (c1), (c2)", 1),
  fact("unterminated comment swallows the rest", "To: a@x, (b@x, c@x", 1),
  fact("unterminated quote swallows the rest", 'To: a@x, "b@x, c@x', 2),
  fact("escaped ) keeps a comment open", "To: (a\\) b@x, c@x", 0),
  fact("<a, b> is one address", "To: <a, b>", 1),
  fact("<addr> followed by an address", "To: <a@x> b@x", 2),
  fact("> without < ends an address", "To: a>b, c", 3),
  fact("group counts its members", "To: team: a@x, b@x;", 2),
  fact("empty group counts nothing", "To: undisclosed-recipients:;", 0),
  fact("colon without semicolon is no group", "To: my team: a@x", 2),
  fact("a later group hides an earlier one", "To: g: a@x; h: b@x, c@x;", 2),
  fact("semicolon outside a group separates", "To: a@x, b@x;c@x", 3),
  fact("domain literals are words", "To: [a b] [c]", 2),
  fact("quoted strings are words", 'To: "a" "b" c', 3),
  fact("a lone backslash is an empty address", "To: a@x, \\", 2),
  fact("CR inside a line is a blank", "To: a@x\rb@x", 2),
  fact("folded with LF", "To: a@x,\n b@x,\n\tc@x", 3),
  fact("folded with CRLF", "To: a@x,\r\n b@x,\r\n\tc@x\r", 3),
  fact("Resent- fields win over To/Cc/Bcc", "To: a@x, b@x, c@x\nResent-To: r@x", 1, 3),
  fact("plain fields after a Resent- field are ignored", "Resent-Cc: r@x\nTo: a@x, b@x", 1, 2),
  fact("Resent-From alone does not switch to Resent-", "Resent-From: r@x\nTo: a@x, b@x", 2),
  fact("empty Resent-To: switches to Resent-", "Resent-To:\nTo: a@x, b@x", 0, 2),
  fact(
    "Apparently-To and Resent-Reply-To never count",
    "Apparently-To: a@x\nResent-Reply-To: b@x\nTo: c@x",
    1,
  ),
  fact(
    "leading From_ lines are skipped",
    "From x@y Mon Jan  1 00:00:00 2026\n>From z\nTo: a@x, b@x",
    2,
  ),
  fact("short 'From :' line is skipped too", "From :x\n\tzz\nTo: a@x, b@x", 0),
  fact(
    "long 'From :' line is a header",
    `From :x${"y".repeat(2100)}\n\tzz\nTo: a@x, b@x`,
    2,
    "uncountable",
  ),
  fact("a line starting with CR ends the header section", "Subject: s\n\r\nTo: a@x, b@x", 0),
  fact("a line without colon ends the header section", "Subject: s\nnot a header\nTo: a@x, b@x", 0),
  fact("a leading blank line ends the header section", "\nTo: a@x, b@x", 0),
  fact("a leading continuation ends the header section", " To: a@x, b@x", 0),
  fact("a name with a blank ends the header section", "X Y: z\nTo: a@x", 0),
  fact("CRs after a field are stripped", "To: a@x\r\r\nCc: b@x, c@x", 3),
  fact(
    "2100 blanks before the colon: no header to Postfix",
    `To${" ".repeat(2100)}: a@x, b@x`,
    0,
    2,
  ),
  fact("NUL cuts Postfix's line record", "To: a@x\0 b@x\n c@x, d@x", 3, "uncountable"),
  fact("header over header_size_limit", `To: ${"a@x, ".repeat(20500)}b@x`, 0, 20501),
];
