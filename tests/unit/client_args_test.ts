import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { parseArgs } from "node:util";
import { needsParseArgs, parseClientArgs as parseWith } from "../../lib/client/client_args.ts";
import {
  type ClientCommand,
  type Mta,
  splitClientArgv,
} from "../../lib/client/split_client_argv.ts";

/** The client's parse with node:util's parseArgs at hand (client.ts loads it for own options). */
const parseClientArgs = (argv: readonly string[], mta: Mta) =>
  parseWith(splitClientArgv(argv, mta), parseArgs);
import { DataError, UsageError } from "../../lib/shared/errors.ts";
import { EX_DATAERR, EX_USAGE } from "../../lib/shared/exit_codes.ts";
import { assertRefused, type MailErrorClass } from "./_assert.ts";
import { PIPE_ARGV } from "./_pipe_argv.ts";

/** [name, argv, caller, command, verbose] */
const COMMANDS: [string, string[], Mta, ClientCommand, boolean][] = [
  ["-q (sendmail's queue run)", ["-q"], "sendmail", "flush", false],
  ["-q30m (the interval is the service's business)", ["-q30m"], "sendmail", "flush", false],
  ["-q1h", ["-q1h"], "sendmail", "flush", false],
  ["-q15 (no unit)", ["-q15"], "sendmail", "flush", false],
  ["-q5s", ["-q5s"], "sendmail", "flush", false],
  ["-q1d", ["-q1d"], "sendmail", "flush", false],
  ["-q2w", ["-q2w"], "sendmail", "flush", false],
  ["-q from a Postfix pipe line", ["--host", "relay.example", "-q"], "postfix", "flush", false],
  ["-v -q", ["-v", "-q"], "sendmail", "flush", true],
  ["-q -v", ["-q", "-v"], "sendmail", "flush", true],
  ["--flush", ["--flush"], "sendmail", "flush", false],
  ["--flush --due (old timers)", ["--flush", "--due"], "sendmail", "flush", false],
  ["-bp (mailq)", ["-bp"], "sendmail", "list", false],
  ["-bp -v", ["-bp", "-v"], "sendmail", "list", true],
  ["--list", ["--list"], "sendmail", "list", false],
  ["-q wins over -bp", ["-bp", "-q"], "sendmail", "flush", false],
  ["-q wins over -bs", ["-bs", "-q"], "sendmail", "flush", false],
  ["--serve", ["--serve"], "sendmail", "serve", false],
  ["--serve wins over -q", ["--serve", "-q"], "sendmail", "serve", false],
  ["--migrate", ["--migrate"], "sendmail", "migrate", false],
  ["--init-spool", ["--init-spool"], "sendmail", "init-spool", false],
  ["--init-spool -v", ["--init-spool", "-v"], "sendmail", "init-spool", true],
  ["--remove ID", ["--remove", `m${"0".repeat(32)}`], "sendmail", "remove", false],
  ["a recipient is a send", ["a@b.example"], "sendmail", "send", false],
  ["-v with a recipient is a verbose send", ["-v", "a@b.example"], "sendmail", "send", true],
  ["-bs", ["-bs"], "sendmail", "smtp", false],
];

Deno.test("parseClientArgs() maps -q, -bp and the service options to commands", async (t) => {
  for (const [name, argv, caller, command, verbose] of COMMANDS) {
    await t.step(name, () => {
      const args = parseClientArgs(argv, caller);
      strictEqual(args.command, command);
      strictEqual(args.verbose, verbose);
      if (command !== "send" && command !== "smtp") strictEqual(args.request, undefined);
    });
  }
});

Deno.test("parseClientArgs() reads --config beside the service commands", async (t) => {
  for (const command of ["serve", "migrate", "init-spool", "flush", "list"] as const) {
    await t.step(`--${command} --config FILE`, () => {
      const args = parseClientArgs([`--${command}`, "--config", "/etc/x.conf"], "sendmail");
      strictEqual(args.command, command);
      strictEqual(args.configFile, "/etc/x.conf");
      strictEqual(args.configured, false);
    });
  }
});

Deno.test("parseClientArgs() keeps -q's words out of a message's request", async (t) => {
  await t.step("-q with other sendmail flags", () => {
    const args = parseClientArgs(["-q", "-oi"], "sendmail");
    strictEqual(args.command, "flush");
    strictEqual(args.request, undefined);
  });
  await t.step("a send without -q has its request", () => {
    const args = parseClientArgs(["-oi", "--", "a@b.example"], "sendmail");
    strictEqual(args.command, "send");
    deepStrictEqual(args.request?.recipients, ["a@b.example"]);
    strictEqual(args.verbose, false);
  });
});

/** [attack, argv, caller, error class, exit code, status] */
const REFUSE: [string, string[], Mta, MailErrorClass, number, string][] = [
  [
    "-q after -- is a recipient-looking word (starts with a dash)",
    [
      "--",
      "-q",
    ],
    "sendmail",
    DataError,
    EX_DATAERR,
    "5.1.3",
  ],
  [
    "-bp after -- is a recipient-looking word",
    ["-oi", "--", "-bp"],
    "sendmail",
    DataError,
    EX_DATAERR,
    "5.1.3",
  ],
  [
    "-q30m after a recipient and --",
    [
      "--",
      "a@b.example",
      "-q30m",
    ],
    "sendmail",
    DataError,
    EX_DATAERR,
    "5.1.3",
  ],
  [
    "-f -q: -q is -f's value, not a queue run",
    [
      "-f",
      "-q",
      "a@b.example",
    ],
    "sendmail",
    DataError,
    EX_DATAERR,
    "5.1.7",
  ],
  [
    "-F -q: -q is -F's value",
    ["-F", "-q", "a@b.example"],
    "sendmail",
    UsageError,
    EX_USAGE,
    "5.5.4",
  ],
  ["-qf (a queue run by file, not supported)", ["-qf"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
  ["-q1x (an unknown unit)", ["-q1x"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
  ["-q-1", ["-q-1"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
  ["-bpx is not -bp", ["-bpx"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
  ["nullmailer mode: -q is not a queue run", ["-q"], "nullmailer", UsageError, EX_USAGE, "5.5.4"],
  ["nullmailer mode: -q30m", ["-q30m"], "nullmailer", UsageError, EX_USAGE, "5.5.4"],
  ["nullmailer mode: -bp is not mailq", ["-bp"], "nullmailer", UsageError, EX_USAGE, "5.5.4"],
  ["nullmailer mode: -bs", ["-bs"], "nullmailer", UsageError, EX_USAGE, "5.5.4"],
  // -bs is an SMTP session on stdin: its envelope comes from MAIL FROM and RCPT TO.
  ["-bs with a recipient", ["-bs", "a@b.example"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
  ["-bs with -t", ["-bs", "-t"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
  ["--mta qmail (not one of ours)", ["--mta", "qmail"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
  [
    "nullmailer 1.x (recipients on the command line)",
    ["a@b.example"],
    "nullmailer",
    UsageError,
    EX_USAGE,
    "5.5.4",
  ],
  // Unknown or malformed long options are usage errors (64, 5.5.4), as sendmail's.
  ["--serve with a value", ["--serve=yes"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
  [
    "--init-spools is not --init-spool",
    ["--init-spools"],
    "sendmail",
    UsageError,
    EX_USAGE,
    "5.5.4",
  ],
  ["--migrat is not --migrate", ["--migrat"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
  ["--bogus", ["--bogus"], "sendmail", UsageError, EX_USAGE, "5.5.4"],
];

Deno.test("parseClientArgs() refuses -q in the wrong place or the wrong mode", async (t) => {
  for (const [name, argv, caller, errorClass, exitCode, status] of REFUSE) {
    await t.step(`refuses ${name}`, () => {
      assertRefused(() => parseClientArgs(argv, caller), errorClass, { exitCode, status });
    });
  }
});

Deno.test("parseClientArgs() accepts the positive controls beside its refusals", async (t) => {
  await t.step("a recipient after -- that does not start with a dash", () => {
    deepStrictEqual(parseClientArgs(["--", "q@b.example"], "sendmail").request?.recipients, [
      "q@b.example",
    ]);
  });
  await t.step("-f with an address, then -q", () => {
    strictEqual(parseClientArgs(["-f", "a@b.example", "-q"], "sendmail").command, "flush");
  });
  await t.step("nullmailer mode without arguments is a send", () => {
    const args = parseClientArgs([], "nullmailer");
    strictEqual(args.command, "send");
    strictEqual(args.mta, "nullmailer");
    strictEqual(args.request, undefined);
  });
  await t.step("-bs with -i (Laravel) is an SMTP session", () => {
    strictEqual(parseClientArgs(["-bs", "-i"], "sendmail").command, "smtp");
  });
  await t.step("--mta postfix", () => {
    strictEqual(
      parseClientArgs(["--mta", "postfix", "--", "a@b.example"], "sendmail").mta,
      "postfix",
    );
  });
  await t.step("nullmailer mode with --serve", () => {
    strictEqual(parseClientArgs(["--serve"], "nullmailer").command, "serve");
  });
});

Deno.test("parseClientArgs() refuses recipients after -q and -bp (as Postfix does), beside flags that pass", async (t) => {
  const refused: string[][] = [["-q", "a@b"], ["-q", "--", "x@y"], ["-bp", "root"], [
    "-q",
    "-X/tmp/log",
  ]];
  for (const argv of refused) {
    await t.step(`refuses ${argv.join(" ")}`, () => {
      assertRefused(() => parseClientArgs(argv, "sendmail"), UsageError, { exitCode: EX_USAGE });
    });
  }
  await t.step("positive control: -q -v and -bp -oi pass", () => {
    strictEqual(parseClientArgs(["-q", "-v"], "sendmail").command, "flush");
    strictEqual(parseClientArgs(["-bp", "-oi"], "sendmail").command, "list");
  });
});

Deno.test("needsParseArgs(): node:util is loaded only for own options in unusual forms", async (t) => {
  const cases: [string, string[], Mta, boolean][] = [
    ["a cron or mutt send", ["-oi", "-f", "a@b.example", "--", "c@d.example"], "sendmail", false],
    ["-t from PHP", ["-t", "-i"], "sendmail", false],
    ["-q and -bp", ["-q"], "sendmail", false],
    ["a value that looks like an option (-f --x)", ["-f", "--x", "--", "c@d"], "sendmail", false],
    ["a recipient after -- that starts with --", ["--", "--host"], "sendmail", false],
    ["README's Postfix pipe line", [...PIPE_ARGV], "sendmail", false],
    ["--serve", ["--serve"], "sendmail", false],
    ["--port=2222 (an inline value)", ["--port=2222", "--", "c@d.example"], "sendmail", true],
    ["--host -x (an option-like value)", ["--host", "-x"], "sendmail", true],
    ["an unknown --bogus (refused by parseArgs)", ["--bogus"], "sendmail", true],
  ];
  for (const [name, argv, mta, needs] of cases) {
    await t.step(`${name}: ${needs ? "node:util" : "none"}`, () => {
      strictEqual(needsParseArgs(splitClientArgv(argv, mta)), needs);
    });
  }
});

Deno.test("parseClientArgs() without node:util: plain own options parse as parseArgs would; other forms without it are a fault of the caller", () => {
  const argv = [
    "--host",
    "relay",
    "--port",
    "2222",
    "-oi",
    "-f",
    "a@b.example",
    "--",
    "c@d.example",
  ];
  const args = parseWith(splitClientArgv(argv, "sendmail"));
  deepStrictEqual(args, parseClientArgs(argv, "sendmail"));
  strictEqual(args.command, "send");
  deepStrictEqual(args.request?.recipients, ["c@d.example"]);
  strictEqual(args.request?.sender, "a@b.example");
  throws(() => parseWith(splitClientArgv(["--port=2222"], "sendmail")), /need node:util/);
});
