import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { UsageError } from "../../lib/shared/errors.ts";
import { EX_USAGE } from "../../lib/shared/exit_codes.ts";
import {
  hasControl,
  MAX_COMMAND_LENGTH,
  MAX_WORD_LENGTH,
  MAX_WORDS,
  quoteWord,
  quoteWords,
  tokenizeWords,
} from "../../lib/shared/words.ts";
import { assertRefused } from "./_assert.ts";

const REFUSED = { exitCode: EX_USAGE, status: "5.5.2" };

/** [name, command, expected words] */
const ACCEPT: [string, string, string[]][] = [
  ["a bare program name", "sendmail", ["sendmail"]],
  ["options and a recipient", "sendmail -i -f a@b.example c@d.example", [
    "sendmail",
    "-i",
    "-f",
    "a@b.example",
    "c@d.example",
  ]],
  ["runs of spaces, leading and trailing", "  sendmail   -i  ", ["sendmail", "-i"]],
  ["the empty command", "", []],
  ["a command of spaces only", "   ", []],
  ["every safe bare character", "AZaz09@%+=:,./_-", ["AZaz09@%+=:,./_-"]],
  ["a single-quoted word with a space", "'a b'", ["a b"]],
  ["an empty single-quoted word", "''", [""]],
  ["-f with an empty word (null sender)", "sendmail -f '' x", ["sendmail", "-f", "", "x"]],
  ["an empty word last", "a ''", ["a", ""]],
  ["an empty word glued to text", "a''b", ["ab"]],
  ["a quote written as '\\''", "'it'\\''s'", ["it's"]],
  ["shell syntax inside single quotes", "'$HOME `id` $(id) ;|&<>()*?[~#{}!\\'", [
    "$HOME `id` $(id) ;|&<>()*?[~#{}!\\",
  ]],
  ["a double-quoted word with a space", '"a b"', ["a b"]],
  ["an empty double-quoted word", '""', [""]],
  ["a single quote inside double quotes", '"it\'s"', ["it's"]],
  ['\\" inside double quotes', '"a\\"b"', ['a"b']],
  ["\\\\ inside double quotes", '"a\\\\b"', ["a\\b"]],
  ["\\$ inside double quotes", '"\\$HOME"', ["$HOME"]],
  ["\\` inside double quotes", '"\\`id\\`"', ["`id`"]],
  ["a backslash before an ordinary character inside double quotes", '"a\\b"', ["a\\b"]],
  ["operators inside double quotes", '"a;b|c&d<e>f(g)*?[~#{}"', ["a;b|c&d<e>f(g)*?[~#{}"]],
  ["a backslash-escaped space", "a\\ b", ["a b"]],
  ["a backslash-escaped quote", "o\\'brien@x.example", ["o'brien@x.example"]],
  ["a backslash-escaped dollar", "\\$HOME", ["$HOME"]],
  ["a backslash-escaped backslash", "a\\\\b", ["a\\b"]],
  ["a quoted local part kept with its quotes", `'"john doe"@x.example'`, ['"john doe"@x.example']],
  ["double quotes removed as sh removes them", '"john doe"@x.example', ["john doe@x.example"]],
  ["mixed quoting in one word", "a'b'\"c\"\\d", ["abcd"]],
  ["UTF-8 letters bare", "jörg@bücher.example 用户@例子.广告", [
    "jörg@bücher.example",
    "用户@例子.广告",
  ]],
  ["an emoji bare (surrogate pair)", "a\u{1F600}@x.example", ["a\u{1F600}@x.example"]],
];

/** [attack, command]: each refused with UsageError 64 / 5.5.2. */
const REFUSE: [string, string][] = [
  ["an unterminated single quote", "sendmail 'abc"],
  ["a lone single quote at the end", "sendmail abc'"],
  ["an unterminated double quote", 'sendmail "abc'],
  ['an escaped closing double quote (\\")', 'sendmail "abc\\"'],
  ["a backslash ending a double-quoted word", 'sendmail "abc\\'],
  ["a trailing backslash", "sendmail abc\\"],
  ["NUL", "sendmail a\0b"],
  ["CR", "sendmail a\rb"],
  ["LF (a second command line)", "sendmail a@b.example\nid"],
  ["LF inside single quotes (upstream let it reach sendmail)", "sendmail 'a\nb'"],
  ["CR inside double quotes", 'sendmail "a\rb"'],
  ["LF after a backslash (line continuation)", "sendmail a\\\nb"],
  ["TAB as a separator", "sendmail\t-i"],
  ["vertical tab", "sendmail\v-i"],
  ["form feed", "sendmail\f-i"],
  ["ESC (terminal escapes)", "sendmail \x1b[2J"],
  ["DEL", "sendmail a\x7f"],
  ["C1 NEL (U+0085)", "sendmail a\u0085b"],
  ["U+2028 line separator", "sendmail a\u2028b"],
  ["U+2029 paragraph separator", "sendmail 'a\u2029b'"],
  ["$ outside quotes (parameter expansion)", "sendmail $HOME"],
  ["$( ) outside quotes (command substitution)", "sendmail a$(id)@x.example"],
  ["backquote outside quotes", "sendmail `id`"],
  ["; (command list)", "sendmail a@b.example;id"],
  ["| (pipe)", "sendmail a@b.example|id"],
  ["& (background)", "sendmail a@b.example&id"],
  ["< (redirection)", "sendmail </etc/passwd"],
  ["> (redirection)", "sendmail >/tmp/x"],
  ["( (subshell)", "(sendmail)"],
  [") (subshell)", "sendmail)"],
  ["* (glob)", "sendmail *"],
  ["? (glob)", "sendmail ?"],
  ["[ (glob)", "sendmail [a]"],
  ["~ (tilde expansion)", "sendmail ~root"],
  ["# (comment)", "sendmail a@b.example #c@d.example"],
  ["{ (brace expansion)", "sendmail {a,b}@x.example"],
  ["} (brace)", "sendmail a}"],
  ["! (pipeline negation)", "! sendmail"],
  ["$ inside double quotes", 'sendmail "$HOME"'],
  ["${IFS} inside double quotes", 'sendmail "a${IFS}b"'],
  ["$( ) inside double quotes", 'sendmail "a$(touch /tmp/x)@x.example"'],
  ["backquote inside double quotes", 'sendmail "`id`"'],
  ["a 1 MB command", `sendmail ${"a".repeat(1 << 20)}`],
  ["100k words", `sendmail${" a".repeat(100_000)}`],
  ["a 5000-character word", `sendmail ${"a".repeat(5000)}`],
  ["one word over MAX_WORD_LENGTH", `sendmail ${"a".repeat(MAX_WORD_LENGTH + 1)}`],
  ["one word over MAX_WORDS", `sendmail${" a".repeat(MAX_WORDS)}`],
  ["one character over MAX_COMMAND_LENGTH", `sendmail ${"a".repeat(MAX_COMMAND_LENGTH - 8)}`],
];

/** The largest inputs the limits allow: controls for the length refusals. */
function longestCommand(): string {
  const full = Array.from({ length: 15 }, () => "a".repeat(MAX_WORD_LENGTH));
  const used = full.join(" ").length + 1;
  return [...full, "b".repeat(MAX_COMMAND_LENGTH - used)].join(" ");
}

Deno.test("tokenizeWords() accepts the quoting dialect", async (t) => {
  for (const [name, command, words] of ACCEPT) {
    await t.step(name, () => {
      deepStrictEqual(tokenizeWords(command), words);
    });
  }
});

Deno.test("tokenizeWords() refuses control characters, metacharacters, bad quoting and absurd lengths", async (t) => {
  for (const [name, command] of REFUSE) {
    await t.step(`refuses ${name}`, () => {
      assertRefused(() => tokenizeWords(command), UsageError, REFUSED);
    });
  }
});

Deno.test("tokenizeWords() accepts the positive controls beside its refusals", async (t) => {
  await t.step("a word of exactly MAX_WORD_LENGTH", () => {
    const word = "a".repeat(MAX_WORD_LENGTH);
    deepStrictEqual(tokenizeWords(`sendmail ${word}`), ["sendmail", word]);
  });
  await t.step("exactly MAX_WORDS words", () => {
    strictEqual(tokenizeWords(`sendmail${" a".repeat(MAX_WORDS - 1)}`).length, MAX_WORDS);
  });
  await t.step("a command of exactly MAX_COMMAND_LENGTH", () => {
    const command = longestCommand();
    strictEqual(command.length, MAX_COMMAND_LENGTH);
    strictEqual(tokenizeWords(command).length, 16);
  });
  await t.step("metacharacters and control-free text once quoted", () => {
    deepStrictEqual(tokenizeWords("sendmail '$HOME' '`id`' 'a;b' \\~root '#c'"), [
      "sendmail",
      "$HOME",
      "`id`",
      "a;b",
      "~root",
      "#c",
    ]);
  });
  await t.step("a balanced quote after an escaped one", () => {
    deepStrictEqual(tokenizeWords('sendmail "abc\\""'), ["sendmail", 'abc"']);
  });
});

Deno.test("tokenizeWords(): every UTF-16 code unit outside quotes is a word character exactly as the sh-safe class says", () => {
  // The class the dialect defines (words.ts's SAFE_BARE_REGEXP), beside the
  // characters at or above U+00A0 and the refusals that come first.
  const safe = /^[A-Za-z0-9@%+=:,./_-]$/;
  const quoting = new Set([" ", "'", '"', "\\"]);
  let accepted = 0;
  for (let code = 0; code <= 0xffff; code++) {
    const ch = String.fromCharCode(code);
    if (quoting.has(ch)) continue;
    const command = `a${ch}b`;
    let got: string[] | string;
    try {
      got = tokenizeWords(command);
    } catch (err) {
      got = err instanceof UsageError ? err.message : String(err);
    }
    const want = hasControl(command)
      ? "control character in request"
      : safe.test(ch) || code >= 0xa0
      ? [command]
      : "unquoted shell metacharacter in request";
    deepStrictEqual(got, want, `U+${code.toString(16).padStart(4, "0")}`);
    if (Array.isArray(got)) accepted++;
  }
  ok(accepted > 60_000, `${accepted} accepted`);
});

Deno.test("tokenizeWords() refuses a 1 MB command before scanning it", () => {
  const err = assertRefused(
    () => tokenizeWords(`sendmail ${"\n".repeat(1 << 20)}`),
    UsageError,
    REFUSED,
  );
  strictEqual(err.message, "request too long");
});

/** [word, quoted] */
const QUOTE: [string, string][] = [
  ["sendmail", "sendmail"],
  ["--size=123", "--size=123"],
  ["a@b.example", "a@b.example"],
  ["", "''"],
  ["a b", "'a b'"],
  ["o'brien@x.example", "'o'\\''brien@x.example'"],
  ["$HOME", "'$HOME'"],
  ["a$(touch${IFS}/tmp/x)@example.net", "'a$(touch${IFS}/tmp/x)@example.net'"],
  ['"john doe"@x.example', `'"john doe"@x.example'`],
  ["jörg", "'jörg'"],
  ["\\", "'\\'"],
];

Deno.test("quoteWord() leaves safe words bare and single-quotes the rest", async (t) => {
  for (const [word, quoted] of QUOTE) {
    await t.step(JSON.stringify(word), () => {
      strictEqual(quoteWord(word), quoted);
      deepStrictEqual(tokenizeWords(quoted), [word]);
    });
  }
});

Deno.test("quoteWords() joins quoted words with single spaces", () => {
  strictEqual(quoteWords(["sendmail", "-f", "", "a b"]), "sendmail -f '' 'a b'");
  strictEqual(quoteWords([]), "");
});

/** Characters that stress the quoter, beside arbitrary code units. */
const TRICKY = fc.constantFrom(
  "'",
  '"',
  "\\",
  " ",
  "$",
  "`",
  "-",
  "=",
  "#",
  "~",
  "*",
  "ö",
  "\u00a0",
  "用",
  "\u{1F600}",
);
/** One character (or code unit) without control characters. */
const WORD_CHAR = fc.oneof(
  TRICKY,
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }),
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
).filter((c) => !hasControl(c));
const WORD = fc.string({ unit: WORD_CHAR, maxLength: 12 });

Deno.test("tokenizeWords() reads back quoteWords() exactly (property)", () => {
  fc.assert(
    fc.property(fc.array(WORD, { maxLength: 12 }), (words) => {
      deepStrictEqual(tokenizeWords(quoteWords(words)), words);
    }),
    { seed: 0x5e4d, numRuns: 3000 },
  );
});

Deno.test("tokenizeWords() throws only UsageError, and its words re-quote to themselves (property)", () => {
  const input = fc.oneof(
    fc.string({ unit: fc.constantFrom("a", " ", "'", '"', "\\", "$", "`", ";", "\n", "é") }),
    fc.string({ unit: "binary", maxLength: 40 }),
  );
  fc.assert(
    fc.property(input, (command) => {
      let words: string[];
      try {
        words = tokenizeWords(command);
      } catch (err) {
        ok(err instanceof UsageError, `unexpected ${String(err)}`);
        strictEqual(err.exitCode, EX_USAGE);
        return;
      }
      ok(!words.some(hasControl));
      deepStrictEqual(tokenizeWords(quoteWords(words)), words);
    }),
    { seed: 0x70c1, numRuns: 3000 },
  );
});
