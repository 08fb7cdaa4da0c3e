import { deepStrictEqual, ok } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { headerSenders } from "../../lib/relay/header_senders.ts";
import { isSenderAllowed } from "../../lib/shared/relay_config.ts";

/** [name, head, senders] */
const SENDERS: [string, string, string[]][] = [
  ["a bare From:", "From: ok@a.example\n\nbody\n", ["ok@a.example"]],
  ["a display name", "From: Ok Person <ok@a.example>\n\n", ["ok@a.example"]],
  ["a quoted display name", 'From: "Person, Ok" <ok@a.example>\n\n', ["ok@a.example"]],
  ["lower-cased", "From: OK@A.Example\n\n", ["ok@a.example"]],
  ["the field name in any case", "FROM: a@a.example\nsEnDeR: b@a.example\n\n", [
    "a@a.example",
    "b@a.example",
  ]],
  ["obsolete space before the colon", "From : a@a.example\nSender\t: b@a.example\n\n", [
    "a@a.example",
    "b@a.example",
  ]],
  ["From: and Sender:", "From: a@a.example\nSender: b@a.example\n\n", [
    "a@a.example",
    "b@a.example",
  ]],
  ["Resent-From: and Resent-Sender:", "Resent-From: r@a.example\nResent-Sender: s@a.example\n\n", [
    "r@a.example",
    "s@a.example",
  ]],
  ["two From: fields, both read", "From: a@a.example\nFrom: b@b.example\n\n", [
    "a@a.example",
    "b@b.example",
  ]],
  ["a mailbox list", "From: a@a.example, B <b@b.example>\n\n", ["a@a.example", "b@b.example"]],
  ["a group", "From: team: a@a.example, b@b.example;\n\n", ["a@a.example", "b@b.example"]],
  ["a folded field (LF, tab)", "From: a@a.example,\n\tb@b.example\nSubject: s\n\n", [
    "a@a.example",
    "b@b.example",
  ]],
  ["a folded field (CRLF, spaces)", "From: A\r\n   <a@a.example>\r\nSubject: s\r\n\r\n", [
    "a@a.example",
  ]],
  ["a field folded before its colon's value", "From:\n a@a.example\n\n", ["a@a.example"]],
  ["CRLF header section", "Subject: s\r\nFrom: a@a.example\r\n\r\nFrom: b@b.example\r\n", [
    "a@a.example",
  ]],
  ["no empty line: all of it is header", "From: a@a.example", ["a@a.example"]],
  ["a display name with '@' in quotes is text", 'From: "Joe @ Home" <joe@a.example>\n\n', [
    "joe@a.example",
  ]],
  ["a comment with '@' is text", "From: Joe (at @ home) <joe@a.example>\n\n", ["joe@a.example"]],
  ["an escaped quote in a display name", 'From: "a\\"@b" <joe@a.example>\n\n', ["joe@a.example"]],
  ["an IP literal domain", "From: a@[192.0.2.1]\n\n", [""]],
  ["no From: at all", "Subject: s\nTo: b@b.example\n\nbody\n", []],
  ["From: in the body only", "Subject: s\n\nFrom: a@a.example\n", []],
  ["From: in a CRLF body only", "Subject: s\r\n\r\nFrom: a@a.example\r\n", []],
  [
    "other fields are not read",
    "Reply-To: r@b.example\nX-From: x@b.example\nFrom-Me: f@b.example\nReturn-Path: <p@b.example>\nX-Original-Sender: o@b.example\n\n",
    [],
  ],
  ["a first line starting with a space is no field", " From: a@b.example\n\n", []],
  ["the empty message", "", []],
];

/** [attack, head, senders]: each yields something `@a.example` does not allow. */
const HIDDEN: [string, string, string[]][] = [
  [
    "an allowed address in the display name, the forged mailbox",
    'From: "ok@a.example" <boss@bank.example>\n\n',
    [
      "ok@a.example",
      "boss@bank.example",
    ],
  ],
  [
    "an allowed address in a comment, the forged mailbox",
    "From: boss@bank.example (ok@a.example)\n\n",
    [
      "boss@bank.example",
      "ok@a.example",
    ],
  ],
  [
    "an allowed address as an encoded word",
    "From: =?utf-8?q?ok@a.example?= <boss@bank.example>\n\n",
    [
      "=?utf-8?q?ok@a.example?=",
      "boss@bank.example",
    ],
  ],
  ["allowed From:, forged Sender:", "From: ok@a.example\nSender: boss@bank.example\n\n", [
    "ok@a.example",
    "boss@bank.example",
  ]],
  ["allowed From:, forged Resent-From:", "From: ok@a.example\nResent-From: boss@bank.example\n\n", [
    "ok@a.example",
    "boss@bank.example",
  ]],
  ["a folded From: whose second line is forged", "From: ok@a.example,\n boss@bank.example\n\n", [
    "ok@a.example",
    "boss@bank.example",
  ]],
  ["a second From: field", "From: ok@a.example\nFrom: boss@bank.example\n\n", [
    "ok@a.example",
    "boss@bank.example",
  ]],
  ["a From: without an address", "From: Boss\n\n", [""]],
  ["an empty From:", "From:\n\n", [""]],
  ["a group without members", "From: undisclosed-recipients:;\n\n", [""]],
  ["a quoted local part holding the allowed address", 'From: "ok@a.example"@bank.example\n\n', [
    "",
    "ok@a.example",
  ]],
  [
    "an allowed mailbox beside a quoted-local forged one",
    'From: ok@a.example, "boss"@bank.example\n\n',
    [
      "",
      "ok@a.example",
    ],
  ],
  ["a quoted local part, space before the @", 'From: ok@a.example, "boss" @bank.example\n\n', [
    "",
    "ok@a.example",
  ]],
  ["spaces around the @ (CFWS)", "From: ok@a.example, boss @ bank.example\n\n", [
    "",
    "ok@a.example",
  ]],
  ["comments around the @", "From: ok@a.example, boss(x)@(y)bank.example\n\n", [
    "",
    "ok@a.example",
  ]],
  ["a source route", "From: <@ok.a.example:boss@bank.example>\n\n", ["", "boss@bank.example"]],
  ["an unterminated comment swallowing a quote", 'From: ("x)boss@bank.example("@a.example\n\n', [
    "",
    "boss@bank.example",
  ]],
  [
    "a body after an empty header section is read too (stricter, never laxer)",
    "\nFrom: boss@bank.example\n",
    [
      "boss@bank.example",
    ],
  ],
];

const ALLOW = ["@a.example"];

Deno.test("headerSenders() returns every address of From:, Sender: and their Resent- forms", async (t) => {
  for (const [name, head, senders] of SENDERS) {
    await t.step(name, () => deepStrictEqual(headerSenders(head), senders));
  }
});

Deno.test("headerSenders() lets no forged mailbox hide behind an allowed one", async (t) => {
  for (const [name, head, senders] of HIDDEN) {
    await t.step(`catches ${name}`, () => {
      deepStrictEqual(headerSenders(head), senders);
      ok(!headerSenders(head).every((a) => isSenderAllowed(a, ALLOW)));
    });
  }
  await t.step(
    "positive control: allowed From: and Sender: with display names and comments",
    () => {
      const head = 'From: "Ops, team" (on call) <ok@a.example>\nSender: Bot <bot@a.example>\n\n';
      deepStrictEqual(headerSenders(head), ["ok@a.example", "bot@a.example"]);
      ok(headerSenders(head).every((a) => isSenderAllowed(a, ALLOW)));
    },
  );
  await t.step("positive control: an '@' in a display name or a comment is no mailbox", () => {
    const head = 'From: "Joe @ A" (at @ work) <joe@a.example>\n\n';
    ok(headerSenders(head).every((a) => isSenderAllowed(a, ALLOW)));
  });
});

Deno.test("headerSenders() never misses a forged mailbox, however it is written (property)", () => {
  const allowed = fc.constantFrom(
    "ok@a.example",
    "Ok <ok@a.example>",
    '"ok@a.example" <ok@a.example>',
    "ok@a.example (ok@a.example)",
    '"Joe @ A" <ok@a.example>',
  );
  const forged = fc.constantFrom(
    "boss@bank.example",
    "<boss@bank.example>",
    "Boss <boss@bank.example>",
    '"boss"@bank.example',
    '"ok@a.example"@bank.example',
    '"boss x"@bank.example',
    "boss @ bank.example",
    "boss@ bank.example",
    "boss(c)@bank.example",
    "boss@(c)bank.example",
    '"ok@a.example" <"boss"@bank.example>',
    "(ok@a.example) boss@bank.example",
  );
  const separator = fc.constantFrom(", ", ",\n ", ",\r\n\t", ",");
  const field = fc.constantFrom("From", "Sender", "Resent-From", "resent-sender", "FROM ");
  fc.assert(
    fc.property(
      field,
      fc.array(allowed, { maxLength: 3 }),
      forged,
      fc.array(allowed, { maxLength: 2 }),
      separator,
      (name, before, bad, after, sep) => {
        const head = `Subject: s\n${name}: ${
          [...before, bad, ...after].join(sep)
        }\nTo: x@y\n\nbody\n`;
        ok(
          !headerSenders(head).every((a) => isSenderAllowed(a, ALLOW)),
          JSON.stringify([head, headerSenders(head)]),
        );
      },
    ),
    { seed: 0x4ead, numRuns: 2000 },
  );
  fc.assert(
    fc.property(
      field,
      fc.array(allowed, { minLength: 1, maxLength: 4 }),
      separator,
      (name, good, sep) => {
        const head = `${name}: ${good.join(sep)}\n\n`;
        ok(headerSenders(head).every((a) => isSenderAllowed(a, ALLOW)), head);
      },
    ),
    { seed: 0x600d, numRuns: 500 },
  );
});
