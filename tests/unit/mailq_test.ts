import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import type { ListedMessage } from "../../lib/client/drop.ts";
import { arrivalTime, formatMailq, MAILQ_HEADER, printable } from "../../lib/client/mailq.ts";

const NOW = Date.UTC(2024, 2, 15, 12, 0, 0);
const ID_A = `m${"a".repeat(32)}`;
const ID_B = `m${"b".repeat(32)}`;
const ID_C = `m${"c".repeat(32)}`;
const INDENT = " ".repeat(41);
/** mailq shows Postfix's short ids: ten upper-case hex digits. */
const SHORT_A = "A".repeat(10);
const SHORT_B = "B".repeat(10);
const SHORT_C = "C".repeat(10);

function message(fields: Partial<ListedMessage>): ListedMessage {
  return {
    id: ID_A,
    uid: 1000,
    size: 1234,
    created: NOW - 3_600_000,
    sender: "ann@x.example",
    recipients: ["bob@y.example"],
    extractRecipients: false,
    attempts: 0,
    lastError: undefined,
    nextAttempt: undefined,
    ...fields,
  };
}

/** The arrival column computed with the same local-time Date methods (no global set). */
function localStamp(ms: number): string {
  const d = new Date(ms);
  const day = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][d.getDay()];
  const month =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][
      d.getMonth()
    ];
  const two = (n: number) => String(n).padStart(2, "0");
  return `${day} ${month} ${String(d.getDate()).padStart(2, " ")} ${two(d.getHours())}:${
    two(d.getMinutes())
  }:${two(d.getSeconds())}`;
}

const ARRIVAL_REGEXP =
  /^(Sun|Mon|Tue|Wed|Thu|Fri|Sat) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 123][0-9] [012][0-9]:[0-5][0-9]:[0-5][0-9]$/;

/** Lines of a listing (without the final empty string after the last LF). */
function lines(text: string): string[] {
  ok(text.endsWith("\n"), "a listing ends with LF");
  return text.slice(0, -1).split("\n");
}

Deno.test("formatMailq() says the queue is empty", () => {
  strictEqual(formatMailq([], NOW), "Mail queue is empty\n");
});

Deno.test("formatMailq() prints one message in Postfix's layout", () => {
  const m = message({});
  strictEqual(
    formatMailq([m], NOW),
    [
      "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------",
      `${"A".repeat(10)}      1234 ${localStamp(m.created)}  ann@x.example`,
      `${INDENT}bob@y.example`,
      "",
      "-- 2 Kbytes in 1 Request.",
      "",
    ].join("\n"),
  );
});

Deno.test("formatMailq() prints Postfix's exact header line", () => {
  strictEqual(
    MAILQ_HEADER,
    "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------",
  );
  strictEqual(lines(formatMailq([message({})], NOW))[0], MAILQ_HEADER);
});

Deno.test("formatMailq() aligns a short id's columns under the header, recipients one left", () => {
  const out = lines(
    formatMailq([message({ id: "m4f2d62e0a0b0123456789abcdef01234", size: 7 })], NOW),
  );
  const senderColumn = MAILQ_HEADER.indexOf("-Sender/Recipient");
  strictEqual(out[1]!.indexOf("ann@x.example"), senderColumn);
  strictEqual(out[1]!.indexOf("       7"), MAILQ_HEADER.indexOf("--Size--"));
  strictEqual(out[1]!.slice(0, 12), "4F2D62E0A0  ");
  strictEqual(out[2], `${INDENT}bob@y.example`);
  strictEqual(out[2]!.indexOf("bob"), senderColumn - 1);
});

Deno.test("formatMailq() sorts messages by arrival, oldest first", async (t) => {
  await t.step("given newest first", () => {
    const out = formatMailq([
      message({ id: ID_C, created: NOW - 1_000 }),
      message({ id: ID_A, created: NOW - 3_000 }),
      message({ id: ID_B, created: NOW - 2_000 }),
    ], NOW);
    ok(out.indexOf(SHORT_A) < out.indexOf(SHORT_B));
    ok(out.indexOf(SHORT_B) < out.indexOf(SHORT_C));
  });
  await t.step("equal arrival keeps the order given", () => {
    const out = formatMailq([
      message({ id: ID_B, created: NOW }),
      message({ id: ID_A, created: NOW }),
    ], NOW);
    ok(out.indexOf(SHORT_B) < out.indexOf(SHORT_A));
  });
  await t.step("the caller's array is left as it was", () => {
    const given = [message({ id: ID_B, created: NOW }), message({ id: ID_A, created: NOW - 1 })];
    formatMailq(given, NOW);
    deepStrictEqual(given.map((m) => m.id), [ID_B, ID_A]);
  });
});

/** [name, message fields, reason line or undefined] */
const REASON: [string, Partial<ListedMessage>, string | undefined][] = [
  ["no line without a last error", { attempts: 2 }, undefined],
  ["next try now when no next attempt is set", {
    lastError: "connect: timed out",
    attempts: 3,
  }, "(connect: timed out; 3 attempts; next try now)"],
  ["next try now when the next attempt is due", {
    lastError: "x",
    attempts: 1,
    nextAttempt: NOW,
  }, "(x; 1 attempts; next try now)"],
  ["next try now when the next attempt is past", {
    lastError: "x",
    attempts: 2,
    nextAttempt: NOW - 60_000,
  }, "(x; 2 attempts; next try now)"],
  [
    "next try in seconds",
    { lastError: "x", attempts: 2, nextAttempt: NOW + 45_000 },
    "(x; 2 attempts; next try in 45s)",
  ],
  [
    "next try in minutes",
    { lastError: "x", attempts: 2, nextAttempt: NOW + 90_000 },
    "(x; 2 attempts; next try in 1m)",
  ],
  ["next try in hours", {
    lastError: "x",
    attempts: 4,
    nextAttempt: NOW + 3 * 3_600_000 + 5 * 60_000,
  }, "(x; 4 attempts; next try in 3h05m)"],
  ["next try in days", {
    lastError: "x",
    attempts: 9,
    nextAttempt: NOW + 3 * 86_400_000,
  }, "(x; 9 attempts; next try in 3d00h)"],
];

Deno.test("formatMailq() prints the (reason; N attempts; next try …) line under the sender", async (t) => {
  for (const [name, fields, expected] of REASON) {
    await t.step(name, () => {
      const out = lines(formatMailq([message(fields)], NOW));
      if (expected === undefined) {
        strictEqual(out[2], `${INDENT}bob@y.example`);
        ok(!out.some((l) => l.startsWith("(")));
      } else {
        strictEqual(out[2], expected);
        strictEqual(out[3], `${INDENT}bob@y.example`);
      }
    });
  }
});

/** [name, sizes, closing line] */
const TOTAL: [string, number[], string][] = [
  ["0 bytes is 0 Kbytes", [0], "-- 0 Kbytes in 1 Request."],
  ["1 byte rounds up to 1 Kbytes", [1], "-- 1 Kbytes in 1 Request."],
  ["1024 bytes is 1 Kbytes", [1024], "-- 1 Kbytes in 1 Request."],
  ["1025 bytes rounds up to 2 Kbytes", [1025], "-- 2 Kbytes in 1 Request."],
  ["two messages: plural, the total rounded once", [600, 600], "-- 2 Kbytes in 2 Requests."],
  ["two small messages still 1 Kbytes", [1, 1], "-- 1 Kbytes in 2 Requests."],
  ["three messages", [1024, 1024, 1024], "-- 3 Kbytes in 3 Requests."],
  ["50 MB", [52_428_800], "-- 51200 Kbytes in 1 Request."],
];

Deno.test("formatMailq() closes with -- N Kbytes in N Request(s).", async (t) => {
  for (const [name, sizes, closing] of TOTAL) {
    await t.step(name, () => {
      const out = lines(
        formatMailq(sizes.map((size, i) => message({ size, created: NOW - i })), NOW),
      );
      strictEqual(out.at(-1), closing);
      strictEqual(out.at(-2), "", "a blank line before the total");
    });
  }
});

Deno.test("formatMailq() shows -t messages and the special senders", async (t) => {
  await t.step("-t without recipients: from the message headers", () => {
    const out = lines(formatMailq([message({ recipients: [], extractRecipients: true })], NOW));
    strictEqual(out[2], `${INDENT}(recipients from the message headers)`);
  });
  await t.step("-t with recipients on the command line: those", () => {
    const out = lines(formatMailq([message({ extractRecipients: true })], NOW));
    strictEqual(out[2], `${INDENT}bob@y.example`);
  });
  await t.step("every recipient on its own line", () => {
    const out = lines(formatMailq([message({ recipients: ["b@y.example", "c@z.example"] })], NOW));
    deepStrictEqual(out.slice(2, 4), [`${INDENT}b@y.example`, `${INDENT}c@z.example`]);
  });
  await t.step("the null sender is MAILER-DAEMON", () => {
    ok(lines(formatMailq([message({ sender: "" })], NOW))[1]!.endsWith("  MAILER-DAEMON"));
  });
  await t.step("no -f is (default)", () => {
    ok(lines(formatMailq([message({ sender: null })], NOW))[1]!.endsWith("  (default)"));
  });
});

/** Characters a terminal acts on, or that hide or reorder text. */
const DANGEROUS =
  // deno-lint-ignore no-control-regex
  /[\x00-\x09\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/;

Deno.test("formatMailq() neutralises terminal escapes in sender, reason and recipients", () => {
  const out = formatMailq([message({
    sender: "a\x1b]0;pwned\x07@x.example",
    recipients: [
      "b@y.example\r\nm00000000000000000000000000000000     1 Mon Jan  1 00:00:00  fake",
    ],
    lastError: "refused\u202e\u2066evil\u0085\x1b[2J",
    attempts: 1,
  })], NOW);
  ok(!DANGEROUS.test(out), JSON.stringify(out));
  strictEqual(lines(out).length, 6, "no line was added");
  ok(out.includes("a?]0;pwned?@x.example"));
  ok(out.includes("(refused??evil??[2J; 1 attempts; next try now)"));
});

/** [attack, text, printed] */
const PRINTABLE_REFUSE: [string, string, string][] = [
  ["ESC (CSI: clear screen)", "a\x1b[2Jb", "a?[2Jb"],
  ["ESC ] (OSC: window title)", "\x1b]0;x\x07", "?]0;x?"],
  ["CR (overwrite the line)", "a\rb", "a?b"],
  ["LF (a fake queue line)", "a\nb", "a?b"],
  ["CRLF", "a\r\nb", "a??b"],
  ["NUL", "a\0b", "a?b"],
  ["TAB", "a\tb", "a?b"],
  ["BEL", "a\x07b", "a?b"],
  ["backspace", "a\bb", "a?b"],
  ["DEL", "a\x7fb", "a?b"],
  ["C1 NEL (U+0085)", "a\u0085b", "a?b"],
  ["C1 CSI (U+009B)", "a\u009b2Jb", "a?2Jb"],
  ["U+2028 line separator", "a\u2028b", "a?b"],
  ["U+2029 paragraph separator", "a\u2029b", "a?b"],
  ["right-to-left override (U+202E)", "a\u202eb", "a?b"],
  ["left-to-right embedding to pop (U+202A-U+202C)", "\u202a\u202b\u202c", "???"],
  ["left-to-right override (U+202D)", "a\u202db", "a?b"],
  ["bidi isolates (U+2066-U+2069, Trojan Source)", "\u2066\u2067\u2068\u2069", "????"],
  ["left-to-right and right-to-left marks", "a\u200e\u200fb", "a??b"],
  ["Arabic letter mark (U+061C)", "a\u061cb", "a?b"],
  ["zero-width space", "a\u200bb", "a?b"],
  ["zero-width non-joiner and joiner", "a\u200c\u200db", "a??b"],
  ["word joiner (U+2060)", "a\u2060b", "a?b"],
  ["zero-width no-break space (BOM)", "\ufeffa", "?a"],
  ["soft hyphen (invisible)", "a\u00adb", "a?b"],
  ["Mongolian vowel separator (U+180E)", "a\u180eb", "a?b"],
  ["a tag character (U+E0041)", "a\u{e0041}b", "a?b"],
];

/** [name, text]: printed unchanged. */
const PRINTABLE_ACCEPT: [string, string][] = [
  ["an address", "ann@x.example"],
  [
    "every printable ASCII character",
    Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join(""),
  ],
  ["Latin letters", "jörg@bücher.example"],
  ["CJK", "用户@例子.广告"],
  ["an emoji", "a\u{1F600}@x.example"],
  ["a no-break space", "a\u00a0b"],
  ["Hebrew letters (right-to-left by themselves, no control)", "שלום"],
  ["the empty text", ""],
];

Deno.test("printable() replaces controls, bidi and zero-width characters with ?", async (t) => {
  for (const [name, text, printed] of PRINTABLE_REFUSE) {
    await t.step(`replaces ${name}`, () => {
      strictEqual(printable(text), printed);
    });
  }
});

Deno.test("printable() keeps printable text, in any script, unchanged", async (t) => {
  for (const [name, text] of PRINTABLE_ACCEPT) {
    await t.step(name, () => {
      strictEqual(printable(text), text);
    });
  }
});

Deno.test("printable() cuts at max characters", async (t) => {
  await t.step("200 by default", () => {
    strictEqual(printable("a".repeat(300)), "a".repeat(200));
  });
  await t.step("exactly max is kept whole", () => {
    strictEqual(printable("a".repeat(200)), "a".repeat(200));
  });
  await t.step("a given max, after replacing", () => {
    strictEqual(printable("\x1b[2Jabc", 3), "?[2");
  });
});

Deno.test("arrivalTime() prints Postfix's 19-character local time", async (t) => {
  const instants: [string, number][] = [
    ["the epoch", 0],
    ["a single-digit day", Date.UTC(2020, 11, 1, 6, 41, 53)],
    ["a two-digit day", Date.UTC(2024, 2, 15, 12, 0, 0)],
    ["the last second of a year", Date.UTC(2023, 11, 31, 23, 59, 59)],
    ["a leap day", Date.UTC(2024, 1, 29, 0, 0, 0)],
    ["milliseconds are dropped", Date.UTC(2024, 6, 4, 9, 5, 7, 999)],
  ];
  for (const [name, ms] of instants) {
    await t.step(name, () => {
      const stamp = arrivalTime(ms);
      strictEqual(stamp.length, 19);
      ok(ARRIVAL_REGEXP.test(stamp), stamp);
      strictEqual(stamp, localStamp(ms));
    });
  }
});
