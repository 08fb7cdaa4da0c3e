import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  MAX_COMMAND_LINE,
  MAX_COMMANDS,
  type SmtpAction,
  SmtpSession,
  unstuffLine,
} from "../../lib/client/smtp_session.ts";

const OPTIONS = { hostname: "sat.example", maxSize: 1_000_000, maxRecipients: 3 };

function session(): SmtpSession {
  return new SmtpSession(OPTIONS);
}

/** Runs `commands` and returns the last action. */
function run(s: SmtpSession, commands: readonly string[]): SmtpAction {
  let last: SmtpAction | undefined;
  for (const c of commands) last = s.onLine(c);
  return last!;
}

/** The one reply line of an action (asserting there is exactly one). */
function only(action: SmtpAction): string {
  strictEqual(action.lines.length, 1, JSON.stringify(action));
  return action.lines[0]!;
}

const MAIL = "MAIL FROM:<ann@x.example>";
const RCPT = "RCPT TO:<bob@y.example>";

Deno.test("SmtpSession greets with 220 and its host name", () => {
  strictEqual(session().greeting(), "220 sat.example ESMTP sshsendmail");
});

Deno.test("SmtpSession answers EHLO with its extensions and HELO with its name", async (t) => {
  const EHLO_REPLY = {
    kind: "reply",
    lines: [
      "250-sat.example",
      "250-PIPELINING",
      "250-SIZE 1000000",
      "250-8BITMIME",
      "250 ENHANCEDSTATUSCODES",
    ],
  };
  await t.step("EHLO", () => deepStrictEqual(session().onLine("EHLO client.example"), EHLO_REPLY));
  await t.step("ehlo in lower case", () => deepStrictEqual(session().onLine("ehlo c"), EHLO_REPLY));
  await t.step("EHLO with an address literal", () => {
    deepStrictEqual(session().onLine("EHLO [192.0.2.1]"), EHLO_REPLY);
  });
  await t.step("HELO", () => {
    deepStrictEqual(session().onLine("HELO client.example"), {
      kind: "reply",
      lines: ["250 sat.example"],
    });
  });
  await t.step("refuses EHLO without a domain", () => {
    strictEqual(only(session().onLine("EHLO")), "501 5.5.4 EHLO needs a domain");
  });
  await t.step("refuses EHLO with trailing spaces only", () => {
    strictEqual(only(session().onLine("EHLO   ")), "501 5.5.4 EHLO needs a domain");
  });
  await t.step("refuses HELO without a domain", () => {
    strictEqual(only(session().onLine("HELO")), "501 5.5.4 HELO needs a domain");
  });
  await t.step("EHLOx is no EHLO", () => {
    strictEqual(only(session().onLine("EHLOclient")), "500 5.5.2 command not recognized");
  });
  await t.step("EHLO ends a transaction in progress", () => {
    const s = session();
    run(s, [MAIL, RCPT, "EHLO c"]);
    strictEqual(s.envelope, undefined);
    strictEqual(only(s.onLine(RCPT)), "503 5.5.1 need MAIL first");
  });
  await t.step("HELO ends a transaction in progress", () => {
    const s = session();
    run(s, [MAIL, "HELO c"]);
    strictEqual(s.envelope, undefined);
  });
});

/** [name, MAIL line, declared size] */
const MAIL_ACCEPT: [string, string, number | undefined][] = [
  ["a plain sender", MAIL, undefined],
  ["without EHLO first (sendmail -bs clients)", "MAIL FROM:<a@x.example>", undefined],
  ["the null sender", "MAIL FROM:<>", undefined],
  ["a space after the colon", "MAIL FROM: <a@x.example>", undefined],
  ["lower case", "mail from:<a@x.example>", undefined],
  ["trailing spaces", "MAIL FROM:<a@x.example>   ", undefined],
  ["a local name", "MAIL FROM:<www-data>", undefined],
  ["a quoted local part", 'MAIL FROM:<"a b"@x.example>', undefined],
  ["SIZE=", "MAIL FROM:<a@x.example> SIZE=1234", 1234],
  ["SIZE=0", "MAIL FROM:<a@x.example> SIZE=0", 0],
  ["SIZE= the limit exactly", "MAIL FROM:<a@x.example> SIZE=1000000", 1_000_000],
  ["size= in lower case", "MAIL FROM:<a@x.example> size=5", 5],
  ["BODY=8BITMIME", "MAIL FROM:<a@x.example> BODY=8BITMIME", undefined],
  ["BODY=7BIT", "MAIL FROM:<a@x.example> BODY=7BIT", undefined],
  ["body=8bitmime in lower case", "MAIL FROM:<a@x.example> body=8bitmime", undefined],
  ["SIZE and BODY (Symfony Mailer)", "MAIL FROM:<a@x.example> BODY=8BITMIME SIZE=99", 99],
];

/** [attack or mistake, MAIL line, reply] */
const MAIL_REFUSE: [string, string, string][] = [
  ["no angle brackets", "MAIL FROM:a@x.example", "501 5.5.4 syntax: MAIL FROM:<address>"],
  ["an unclosed bracket", "MAIL FROM:<a@x.example", "501 5.5.4 syntax: MAIL FROM:<address>"],
  ["nested brackets", "MAIL FROM:<<a@x.example>>", "501 5.5.4 syntax: MAIL FROM:<address>"],
  ["MAIL TO:", "MAIL TO:<a@x.example>", "501 5.5.4 syntax: MAIL FROM:<address>"],
  [
    "two spaces after the colon",
    "MAIL FROM:  <a@x.example>",
    "501 5.5.4 syntax: MAIL FROM:<address>",
  ],
  [
    "two spaces before a parameter",
    "MAIL FROM:<a@x.example>  SIZE=1",
    "501 5.5.4 syntax: MAIL FROM:<address>",
  ],
  [
    "SIZE= without a value",
    "MAIL FROM:<a@x.example> SIZE=",
    "501 5.5.4 syntax: MAIL FROM:<address>",
  ],
  [
    "a sender starting with a dash (sendmail option)",
    "MAIL FROM:<-oQ/tmp@x.example>",
    "501 5.1.7 bad sender address",
  ],
  ["a sender with a space", "MAIL FROM:<a b@x.example>", "501 5.1.7 bad sender address"],
  ["a sender with an empty local part", "MAIL FROM:<@x.example>", "501 5.1.7 bad sender address"],
  [
    "a sender over 320 characters",
    `MAIL FROM:<${"a".repeat(300)}@${"b".repeat(30)}.example>`,
    "501 5.1.7 bad sender address",
  ],
  ["SIZE without a value", "MAIL FROM:<a@x.example> SIZE", "501 5.5.4 bad SIZE"],
  ["SIZE not a number", "MAIL FROM:<a@x.example> SIZE=abc", "501 5.5.4 bad SIZE"],
  ["SIZE=1=2 (the whole value is read)", "MAIL FROM:<a@x.example> SIZE=1=2", "501 5.5.4 bad SIZE"],
  ["SIZE negative", "MAIL FROM:<a@x.example> SIZE=-1", "501 5.5.4 bad SIZE"],
  ["SIZE of 16 digits", `MAIL FROM:<a@x.example> SIZE=${"1".repeat(16)}`, "501 5.5.4 bad SIZE"],
  [
    "SIZE one byte over the limit",
    "MAIL FROM:<a@x.example> SIZE=1000001",
    "552 5.3.4 message too big",
  ],
  [
    "SIZE of 15 digits",
    `MAIL FROM:<a@x.example> SIZE=${"9".repeat(15)}`,
    "552 5.3.4 message too big",
  ],
  [
    "BODY=BINARYMIME (needs CHUNKING)",
    "MAIL FROM:<a@x.example> BODY=BINARYMIME",
    "501 5.5.4 bad BODY",
  ],
  ["BODY without a value", "MAIL FROM:<a@x.example> BODY", "501 5.5.4 bad BODY"],
  ["BODY=8BITMIMEX", "MAIL FROM:<a@x.example> BODY=8BITMIMEX", "501 5.5.4 bad BODY"],
  [
    "SMTPUTF8 (not offered)",
    "MAIL FROM:<a@x.example> SMTPUTF8",
    "555 5.5.4 unsupported MAIL parameter",
  ],
  [
    "AUTH=<> (not offered)",
    "MAIL FROM:<a@x.example> AUTH=<>",
    "555 5.5.4 unsupported MAIL parameter",
  ],
  [
    "RET=HDRS (DSN not offered)",
    "MAIL FROM:<a@x.example> RET=HDRS",
    "555 5.5.4 unsupported MAIL parameter",
  ],
  [
    "a valid SIZE before an unknown parameter",
    "MAIL FROM:<a@x.example> SIZE=1 X=1",
    "555 5.5.4 unsupported MAIL parameter",
  ],
];

Deno.test("SmtpSession accepts MAIL FROM with SIZE and BODY", async (t) => {
  for (const [name, line, size] of MAIL_ACCEPT) {
    await t.step(name, () => {
      const s = session();
      strictEqual(only(s.onLine(line)), "250 2.1.0 Ok");
      strictEqual(s.envelope?.declaredSize, size);
      deepStrictEqual(s.envelope?.recipients, []);
    });
  }
  await t.step("the sender is kept as written, the null sender as ''", () => {
    const s = session();
    s.onLine('MAIL FROM:<"A b"@X.example>');
    strictEqual(s.envelope?.sender, '"A b"@X.example');
    s.reset();
    s.onLine("MAIL FROM:<>");
    strictEqual(s.envelope?.sender, "");
  });
});

Deno.test("SmtpSession refuses a bad MAIL FROM and starts no transaction", async (t) => {
  for (const [name, line, reply] of MAIL_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      const s = session();
      strictEqual(only(s.onLine(line)), reply);
      strictEqual(s.envelope, undefined);
    });
  }
  await t.step("refuses a second MAIL in one transaction", () => {
    const s = session();
    s.onLine(MAIL);
    strictEqual(only(s.onLine("MAIL FROM:<c@x.example>")), "503 5.5.1 nested MAIL command");
    strictEqual(s.envelope?.sender, "ann@x.example");
  });
  await t.step("positive control: MAIL again after RSET", () => {
    const s = session();
    run(s, [MAIL, "RSET"]);
    strictEqual(only(s.onLine("MAIL FROM:<c@x.example>")), "250 2.1.0 Ok");
  });
});

/** [attack or mistake, RCPT line, reply] */
const RCPT_REFUSE: [string, string, string][] = [
  ["the null recipient", "RCPT TO:<>", "501 5.5.4 syntax: RCPT TO:<address>"],
  ["no angle brackets", "RCPT TO:bob@y.example", "501 5.5.4 syntax: RCPT TO:<address>"],
  ["RCPT FROM:", "RCPT FROM:<bob@y.example>", "501 5.5.4 syntax: RCPT TO:<address>"],
  [
    "a recipient starting with a dash",
    "RCPT TO:<-oQ/tmp@y.example>",
    "501 5.1.3 bad recipient address",
  ],
  ["a recipient with a space", "RCPT TO:<b b@y.example>", "501 5.1.3 bad recipient address"],
  [
    "a program recipient (|cmd)",
    "RCPT TO:<|/usr/bin/id>",
    "550 5.1.3 program, file and include recipients are not allowed",
  ],
  [
    "a file recipient (/path)",
    "RCPT TO:</tmp/x>",
    "550 5.1.3 program, file and include recipients are not allowed",
  ],
  [
    "NOTIFY= (DSN not offered)",
    "RCPT TO:<bob@y.example> NOTIFY=NEVER",
    "555 5.5.4 unsupported RCPT parameter",
  ],
  [
    "ORCPT= (DSN not offered)",
    "RCPT TO:<bob@y.example> ORCPT=rfc822;b@y",
    "555 5.5.4 unsupported RCPT parameter",
  ],
];

Deno.test("SmtpSession collects RCPT TO up to maxRecipients", async (t) => {
  await t.step("RCPT before MAIL", () => {
    strictEqual(only(session().onLine(RCPT)), "503 5.5.1 need MAIL first");
  });
  await t.step("one recipient", () => {
    const s = session();
    s.onLine(MAIL);
    strictEqual(only(s.onLine(RCPT)), "250 2.1.5 Ok");
    deepStrictEqual(s.envelope?.recipients, ["bob@y.example"]);
  });
  await t.step("lower case, a space after the colon, a local name", () => {
    const s = session();
    run(s, [MAIL, "rcpt to: <root>"]);
    deepStrictEqual(s.envelope?.recipients, ["root"]);
  });
  await t.step("exactly maxRecipients, then 452 and the envelope unchanged", () => {
    const s = session();
    s.onLine(MAIL);
    for (const r of ["a@y.example", "b@y.example", "c@y.example"]) {
      strictEqual(only(s.onLine(`RCPT TO:<${r}>`)), "250 2.1.5 Ok");
    }
    strictEqual(only(s.onLine("RCPT TO:<d@y.example>")), "452 4.5.3 too many recipients");
    deepStrictEqual(s.envelope?.recipients, ["a@y.example", "b@y.example", "c@y.example"]);
    strictEqual(s.onLine("DATA").kind, "data");
  });
  for (const [name, line, reply] of RCPT_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      const s = session();
      s.onLine(MAIL);
      strictEqual(only(s.onLine(line)), reply);
      deepStrictEqual(s.envelope?.recipients, []);
    });
  }
});

Deno.test("SmtpSession asks for the message on DATA only with a sender and a recipient", async (t) => {
  await t.step("DATA after MAIL and RCPT", () => {
    const s = session();
    deepStrictEqual(run(s, ["EHLO c", MAIL, RCPT, "DATA"]), {
      kind: "data",
      lines: ["354 End data with <CR><LF>.<CR><LF>"],
    });
    deepStrictEqual(s.envelope, {
      sender: "ann@x.example",
      recipients: ["bob@y.example"],
      declaredSize: undefined,
    });
  });
  await t.step("data in lower case", () => {
    strictEqual(run(session(), [MAIL, RCPT, "data"]).kind, "data");
  });
  await t.step("refuses DATA before MAIL", () => {
    strictEqual(only(session().onLine("DATA")), "503 5.5.1 need MAIL first");
  });
  await t.step("refuses DATA without a recipient", () => {
    strictEqual(only(run(session(), [MAIL, "DATA"])), "554 5.5.1 no valid recipients");
  });
  await t.step("refuses DATA after every RCPT was refused", () => {
    strictEqual(
      only(run(session(), [MAIL, "RCPT TO:<-x@y.example>", "DATA"])),
      "554 5.5.1 no valid recipients",
    );
  });
  await t.step("refuses DATA with an argument", () => {
    strictEqual(only(run(session(), [MAIL, RCPT, "DATA x"])), "501 5.5.4 DATA takes no argument");
  });
  await t.step("reset() ends the transaction: the next one starts with MAIL", () => {
    const s = session();
    run(s, [MAIL, RCPT, "DATA"]);
    s.reset();
    strictEqual(s.envelope, undefined);
    strictEqual(only(s.onLine(RCPT)), "503 5.5.1 need MAIL first");
    strictEqual(only(s.onLine("MAIL FROM:<c@x.example>")), "250 2.1.0 Ok");
  });
  await t.step("RSET drops the envelope", () => {
    const s = session();
    strictEqual(only(run(s, [MAIL, RCPT, "RSET"])), "250 2.0.0 Ok");
    strictEqual(s.envelope, undefined);
    strictEqual(only(s.onLine("DATA")), "503 5.5.1 need MAIL first");
  });
});

/** [name, command, action] */
const OTHER: [string, string, SmtpAction][] = [
  ["NOOP", "NOOP", { kind: "reply", lines: ["250 2.0.0 Ok"] }],
  ["NOOP with an argument", "NOOP hello", { kind: "reply", lines: ["250 2.0.0 Ok"] }],
  ["HELP", "HELP", {
    kind: "reply",
    lines: ["214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP"],
  }],
  ["QUIT", "QUIT", { kind: "quit", lines: ["221 2.0.0 Bye"] }],
  ["quit in lower case", "quit", { kind: "quit", lines: ["221 2.0.0 Bye"] }],
  ["refuses VRFY (no user enumeration)", "VRFY root", {
    kind: "reply",
    lines: ["502 5.5.1 VRFY not available"],
  }],
  ["refuses vrfy in lower case", "vrfy root", {
    kind: "reply",
    lines: ["502 5.5.1 VRFY not available"],
  }],
  ["refuses EXPN (no list expansion)", "EXPN staff", {
    kind: "reply",
    lines: ["502 5.5.1 EXPN not available"],
  }],
  ["refuses STARTTLS", "STARTTLS", {
    kind: "reply",
    lines: ["502 5.5.1 STARTTLS not implemented"],
  }],
  ["refuses AUTH", "AUTH PLAIN AGFAAGI=", {
    kind: "reply",
    lines: ["502 5.5.1 AUTH not implemented"],
  }],
  ["refuses BDAT", "BDAT 10 LAST", { kind: "reply", lines: ["502 5.5.1 BDAT not implemented"] }],
  ["refuses ETRN", "ETRN x.example", { kind: "reply", lines: ["502 5.5.1 ETRN not implemented"] }],
  ["refuses an unknown verb", "XYZZY", {
    kind: "reply",
    lines: ["500 5.5.2 command not recognized"],
  }],
  ["refuses an HTTP request line (cross-protocol)", "GET / HTTP/1.1", {
    kind: "reply",
    lines: ["500 5.5.2 command not recognized"],
  }],
  ["refuses the empty line", "", { kind: "reply", lines: ["500 5.5.2 command not recognized"] }],
  ["refuses a leading space", " NOOP", {
    kind: "reply",
    lines: ["500 5.5.2 command not recognized"],
  }],
];

Deno.test("SmtpSession answers the other verbs and refuses VRFY, EXPN and the unknown", async (t) => {
  for (const [name, command, action] of OTHER) {
    await t.step(name, () => deepStrictEqual(session().onLine(command), action));
  }
  await t.step("a refused verb leaves the transaction as it was", () => {
    const s = session();
    run(s, [MAIL, RCPT, "VRFY bob", "EXPN staff", "XYZZY", "NOOP"]);
    deepStrictEqual(s.envelope?.recipients, ["bob@y.example"]);
    strictEqual(s.onLine("DATA").kind, "data");
  });
});

/** [attack, line] */
const LINE_REFUSE: [string, string, string][] = [
  [
    "a line one over MAX_COMMAND_LINE",
    `NOOP ${"x".repeat(MAX_COMMAND_LINE - 4)}`,
    "500 5.5.2 line too long",
  ],
  ["a 1 MB line", `MAIL FROM:<${"a".repeat(1 << 20)}@x.example>`, "500 5.5.2 line too long"],
  ["a TAB", "NOOP\tx", "500 5.5.2 control character in command"],
  ["a stray CR (CR CR LF from the client)", `${MAIL}\r`, "500 5.5.2 control character in command"],
  ["a NUL in an address", "MAIL FROM:<a\0@x.example>", "500 5.5.2 control character in command"],
  ["an ESC", "NOOP \x1b[2J", "500 5.5.2 control character in command"],
  [
    "a bidi override in a recipient",
    "RCPT TO:<a\u202e@y.example>",
    "500 5.5.2 control character in command",
  ],
  [
    "a zero-width space in a sender",
    "MAIL FROM:<a\u200b@x.example>",
    "500 5.5.2 control character in command",
  ],
  ["U+2028 line separator", "NOOP a\u2028QUIT", "500 5.5.2 control character in command"],
  ["DEL", "NOOP \x7f", "500 5.5.2 control character in command"],
];

Deno.test("SmtpSession refuses overlong lines and control characters", async (t) => {
  for (const [name, line, reply] of LINE_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      const s = session();
      strictEqual(only(s.onLine(line)), reply);
      strictEqual(s.envelope, undefined);
    });
  }
  await t.step("positive control: a line of exactly MAX_COMMAND_LINE", () => {
    const line = `NOOP ${"x".repeat(MAX_COMMAND_LINE - 5)}`;
    strictEqual(line.length, MAX_COMMAND_LINE);
    strictEqual(only(session().onLine(line)), "250 2.0.0 Ok");
  });
  await t.step("positive control: non-ASCII letters in an address", () => {
    strictEqual(only(session().onLine("MAIL FROM:<jörg@bücher.example>")), "250 2.1.0 Ok");
  });
  await t.step("a refused line inside a transaction keeps it", () => {
    const s = session();
    run(s, [MAIL, "RCPT TO:<a\u202e@y.example>", RCPT]);
    deepStrictEqual(s.envelope?.recipients, ["bob@y.example"]);
  });
});

Deno.test("SmtpSession closes after MAX_COMMANDS commands", async (t) => {
  await t.step("command MAX_COMMANDS is still answered; the next one closes", () => {
    const s = session();
    for (let i = 1; i < MAX_COMMANDS; i++) s.onLine("NOOP");
    deepStrictEqual(s.onLine("NOOP"), { kind: "reply", lines: ["250 2.0.0 Ok"] });
    deepStrictEqual(s.onLine("NOOP"), {
      kind: "quit",
      lines: ["421 4.7.0 too many commands, closing"],
    });
  });
  await t.step("refused lines count too", () => {
    const s = session();
    for (let i = 0; i < MAX_COMMANDS; i++) s.onLine("XYZZY\t");
    strictEqual(s.onLine("QUIT").lines[0], "421 4.7.0 too many commands, closing");
  });
});

Deno.test("SmtpSession only ever answers with well-formed reply lines (property)", () => {
  const verb = fc.constantFrom(
    "EHLO c",
    "HELO c",
    MAIL,
    "MAIL FROM:<>",
    "MAIL FROM:<a@x.example> SIZE=5",
    RCPT,
    "RCPT TO:<c@y.example>",
    "DATA",
    "RSET",
    "NOOP",
    "VRFY x",
    "QUIT",
  );
  const noise = fc.string({ unit: "binary", maxLength: 40 });
  fc.assert(
    fc.property(fc.array(fc.oneof(verb, noise), { maxLength: 30 }), (commands) => {
      const s = session();
      for (const c of commands) {
        const action = s.onLine(c);
        ok(action.lines.length >= 1);
        for (const l of action.lines) {
          ok(/^[2-5][0-9]{2}[ -][ -~]*$/.test(l), JSON.stringify(l));
        }
        if (action.kind === "data") {
          ok(s.envelope && s.envelope.recipients.length > 0);
          s.reset();
        }
        const e = s.envelope;
        if (e) ok(e.recipients.length <= OPTIONS.maxRecipients);
      }
    }),
    { seed: 0x5375, numRuns: 2000 },
  );
});

/** [name, raw DATA line, the body line or undefined for the end] */
const UNSTUFF: [string, string, string | undefined][] = [
  ["CRLF stripped", "abc\r\n", "abc"],
  ["LF stripped", "abc\n", "abc"],
  ["a line without its end (at EOF)", "abc", "abc"],
  ["an empty line", "\r\n", ""],
  ["the terminator .CRLF", ".\r\n", undefined],
  ["the terminator .LF", ".\n", undefined],
  ["the terminator without a line end", ".", undefined],
  ["a stuffed dot", "..\r\n", "."],
  ["a stuffed dot before text", "..abc\n", ".abc"],
  ["only the first dot removed", "...\n", ".."],
  ["an unstuffed leading dot is removed too", ".abc\n", "abc"],
  ["a dot after a space is text", " .\r\n", " ."],
  ["a dot later in the line is text", "a.\r\n", "a."],
  ["a CR inside the line stays", "a\rb\n", "a\rb"],
  ["a lone CR at the end is taken as the line end", "abc\r", "abc"],
  ["CR CR LF keeps one CR", "abc\r\r\n", "abc\r"],
  ["a line of LF only", "\n", ""],
];

Deno.test("unstuffLine() undoes SMTP dot-stuffing and finds the terminator", async (t) => {
  const encoder = new TextEncoder();
  for (const [name, raw, body] of UNSTUFF) {
    await t.step(name, () => {
      const out = unstuffLine(encoder.encode(raw));
      deepStrictEqual(out, body === undefined ? undefined : encoder.encode(body));
    });
  }
  await t.step("bytes that are not UTF-8 pass unchanged", () => {
    deepStrictEqual(
      unstuffLine(new Uint8Array([0x2e, 0x2e, 0xff, 0xfe, 0x0d, 0x0a])),
      new Uint8Array([0x2e, 0xff, 0xfe]),
    );
  });
  await t.step("the empty input is an empty line, not the end", () => {
    deepStrictEqual(unstuffLine(new Uint8Array(0)), new Uint8Array(0));
  });
});
