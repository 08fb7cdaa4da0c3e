import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  formatLogLine,
  type LogFields,
  MAX_FIELD_LENGTH,
  sanitizeField,
} from "../../lib/shared/log_line.ts";
import { hasControl } from "../../lib/shared/words.ts";

/** [name, value, sanitised] */
const SANITIZE: [string, string, string][] = [
  ["plain text", "a@b.example", "a@b.example"],
  ["CR LF (log forging)", "a\r\nevent=accept", "a??event=accept"],
  ["NUL", "a\0b", "a?b"],
  ["TAB", "a\tb", "a?b"],
  ["ESC (terminal escapes)", "\x1b[31m", "?[31m"],
  ["DEL and C1 NEL", "a\x7f\u0085", "a??"],
  ["U+2028 and U+2029", "a\u2028b\u2029", "a?b?"],
  ["UTF-8 kept", "jörg@bücher.example", "jörg@bücher.example"],
  ["exactly MAX_FIELD_LENGTH kept", "a".repeat(MAX_FIELD_LENGTH), "a".repeat(MAX_FIELD_LENGTH)],
  [
    "one over MAX_FIELD_LENGTH truncated",
    "a".repeat(MAX_FIELD_LENGTH + 1),
    `${"a".repeat(MAX_FIELD_LENGTH)}…`,
  ],
];

Deno.test("sanitizeField() replaces control characters and truncates", async (t) => {
  for (const [name, value, expected] of SANITIZE) {
    await t.step(name, () => strictEqual(sanitizeField(value), expected));
  }
});

/** [name, fields, line] */
const FORMAT: [string, LogFields, string][] = [
  [
    "bare values in insertion order",
    { event: "sent", rcpts: 2, ok: true },
    "event=sent rcpts=2 ok=true",
  ],
  ["undefined fields left out", { event: "sent", sender: undefined, exit: 0 }, "event=sent exit=0"],
  ["an empty value quoted", { sender: "" }, 'sender=""'],
  ["a space quoted", { note: "a b" }, 'note="a b"'],
  [
    "a double quote escaped",
    { sender: '"john doe"@x.example' },
    'sender="\\"john doe\\"@x.example"',
  ],
  ["a backslash escaped", { note: "a\\b" }, 'note="a\\\\b"'],
  ["an = quoted (no forged key)", { sender: "a event=accept" }, 'sender="a event=accept"'],
  ["a lone = quoted", { sender: "x=y" }, 'sender="x=y"'],
  ["an apostrophe left bare", { sender: "o'brien@x.example" }, "sender=o'brien@x.example"],
  [
    "CR LF never survive",
    { sender: "a\r\nevent=accept exit=0" },
    'sender="a??event=accept exit=0"',
  ],
  ["U+2028 never survives", { sender: "a\u2028b" }, "sender=a?b"],
  ["no fields", {}, ""],
];

Deno.test("formatLogLine() writes one key=value line, quoting where needed", async (t) => {
  for (const [name, fields, line] of FORMAT) {
    await t.step(name, () => strictEqual(formatLogLine(fields), line));
  }
});

/** Reads a formatLogLine() line back into its fields (test oracle). */
function parseLogLine(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([a-z]+)=("((?:[^"\\]|\\.)*)"|[^ ]*)(?: |$)/gy;
  for (const m of line.matchAll(re)) {
    out[m[1]!] = m[3] !== undefined ? m[3].replace(/\\(.)/g, "$1") : m[2]!;
  }
  return out;
}

Deno.test("formatLogLine() keeps any value on one line and reads back (property)", () => {
  const value = fc.oneof(
    fc.string({ unit: fc.constantFrom("a", " ", "=", '"', "\\", "\r", "\n", "\u2028", "\0", "é") }),
    fc.string({ unit: "binary", maxLength: 300 }),
  );
  fc.assert(
    fc.property(value, value, (a, b) => {
      const line = formatLogLine({ event: "refuse", sender: a, note: b });
      ok(!hasControl(line), JSON.stringify(line));
      deepStrictEqual(parseLogLine(line), {
        event: "refuse",
        sender: sanitizeField(a),
        note: sanitizeField(b),
      });
    }),
    { seed: 0x10c1, numRuns: 3000 },
  );
});
