import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { DataError, PolicyError } from "../../lib/shared/errors.ts";
import { EX_DATAERR, EX_NOPERM, EX_TEMPFAIL } from "../../lib/shared/exit_codes.ts";
import {
  checkPolicy,
  ConfigError,
  DEFAULT_CONFIG,
  isSenderAllowed,
  parseAdminArgs,
  type RelayConfig,
} from "../../lib/shared/relay_config.ts";
import { parseSendmailArgs, type SendmailRequest } from "../../lib/shared/sendmail_args.ts";
import { assertRefused } from "./_assert.ts";

const SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

function config(fields: Partial<RelayConfig>): RelayConfig {
  return { ...DEFAULT_CONFIG, allowSenders: [], ...fields };
}

/** [name, argv, expected config fields, expected rest] */
const ACCEPT: [string, string[], Partial<RelayConfig>, string[]][] = [
  ["no admin options", [], {}, []],
  ["--sendmail PATH", ["--sendmail", "/usr/lib/sendmail"], { sendmail: "/usr/lib/sendmail" }, []],
  ["--sendmail=PATH", ["--sendmail=/usr/lib/sendmail"], { sendmail: "/usr/lib/sendmail" }, []],
  [
    "--allow-sender, both forms, lower-cased",
    [
      "--allow-sender",
      "A@B.Example",
      "--allow-sender=@Example.NET",
    ],
    { allowSenders: ["a@b.example", "@example.net"] },
    [],
  ],
  ["--max-size N", ["--max-size", "100"], { maxSize: 100 }, []],
  ["--max-recipients=N", ["--max-recipients=5"], { maxRecipients: 5 }, []],
  ["--label", ["--label", "key-1.host@x+y_z"], { label: "key-1.host@x+y_z" }, []],
  ["--log-level debug", ["--log-level", "debug"], { logLevel: "debug" }, []],
  ["--loglevel (upstream's spelling) debug", ["--loglevel", "debug"], { logLevel: "debug" }, []],
  ["--loglevel=warn", ["--loglevel=warn"], { logLevel: "warning" }, []],
  ["--log-level=ERROR", ["--log-level=ERROR"], { logLevel: "err" }, []],
  [
    "--syslog-socket=PATH",
    ["--syslog-socket=/tmp/log.sock"],
    { syslogSocket: "/tmp/log.sock" },
    [],
  ],
  ["--spool-dir PATH", ["--spool-dir", "/var/spool/rsendmail"], {
    spoolDir: "/var/spool/rsendmail",
  }, []],
  ["--idle-timeout in seconds", ["--idle-timeout", "5"], { idleTimeoutMs: 5000 }, []],
  ["--sendmail-timeout=S", ["--sendmail-timeout=7"], { sendmailTimeoutMs: 7000 }, []],
  ["--require-integrity", ["--require-integrity"], { requireIntegrity: true }, []],
  ["a value that looks like an option", ["--label", "--x"], { label: "--x" }, []],
  ["stops at --", ["--label", "k", "--", "sendmail", "-f", "a@b.example"], { label: "k" }, [
    "sendmail",
    "-f",
    "a@b.example",
  ]],
  ["an admin option after -- belongs to the request", ["--", "--label", "x"], {}, ["--label", "x"]],
  [
    "stops at the first request word",
    ["--label", "k", "sendmail", "--label", "y"],
    { label: "k" },
    [
      "sendmail",
      "--label",
      "y",
    ],
  ],
  ["stops at a sendmail option", ["--max-size=9", "-f", "a@b.example"], { maxSize: 9 }, [
    "-f",
    "a@b.example",
  ]],
];

Deno.test("parseAdminArgs() reads --name value and --name=value up to the request", async (t) => {
  for (const [name, argv, fields, rest] of ACCEPT) {
    await t.step(name, () => {
      deepStrictEqual(parseAdminArgs(argv), { config: config(fields), rest });
    });
  }
});

Deno.test("parseAdminArgs() never shares or mutates the default config", () => {
  const a = parseAdminArgs(["--allow-sender", "a@b.example"]);
  const b = parseAdminArgs([]);
  deepStrictEqual(b.config.allowSenders, []);
  deepStrictEqual(DEFAULT_CONFIG.allowSenders, []);
  ok(a.config.allowSenders !== DEFAULT_CONFIG.allowSenders);
});

/** [mistake, argv, positive control] */
const REFUSE: [string, string[], string[]][] = [
  ["--sendmail relative (PATH lookup)", ["--sendmail", "sendmail"], [
    "--sendmail",
    "/usr/sbin/sendmail",
  ]],
  ["--sendmail= empty", ["--sendmail="], ["--sendmail=/usr/sbin/sendmail"]],
  ["--sendmail without a value", ["--sendmail"], ["--sendmail", "/usr/sbin/sendmail"]],
  ["--label without a value", ["--label"], ["--label", "k"]],
  ["--max-size 0", ["--max-size", "0"], ["--max-size", "1"]],
  ["--max-size -1", ["--max-size=-1"], ["--max-size=1"]],
  ["--max-size 1e3", ["--max-size", "1e3"], ["--max-size", "1000"]],
  ["--max-size 0x10", ["--max-size", "0x10"], ["--max-size", "16"]],
  ["--max-size abc", ["--max-size=abc"], ["--max-size=10"]],
  ["--max-size with 13 digits", ["--max-size", "1234567890123"], ["--max-size", "123456789012"]],
  ["--max-recipients empty", ["--max-recipients="], ["--max-recipients=1"]],
  ["--label with a space", ["--label", "a b"], ["--label", "a_b"]],
  ["--label with a newline (log forging)", ["--label", "a\nb"], ["--label", "ab"]],
  ["--label empty", ["--label="], ["--label=a"]],
  ["--label over 64 characters", ["--label", "a".repeat(65)], ["--label", "a".repeat(64)]],
  ["--log-level verbose", ["--log-level", "verbose"], ["--log-level", "info"]],
  ["--loglevel=__proto__", ["--loglevel=__proto__"], ["--loglevel=notice"]],
  ["--log-level=toString", ["--log-level=toString"], ["--log-level=err"]],
  ["--allow-sender an option", ["--allow-sender", "-X/tmp/log"], [
    "--allow-sender",
    "x@tmp.example",
  ]],
  ["--allow-sender a bare @", ["--allow-sender=@"], ["--allow-sender=@x.example"]],
  ["--allow-sender with a space", ["--allow-sender", "a b@x.example"], [
    "--allow-sender",
    "a.b@x.example",
  ]],
  ["--syslog-socket relative", ["--syslog-socket", "log"], ["--syslog-socket", "/dev/log"]],
  ["--spool-dir relative", ["--spool-dir=tmp"], ["--spool-dir=/tmp"]],
  ["--idle-timeout 0", ["--idle-timeout", "0"], ["--idle-timeout", "1"]],
  ["--sendmail-timeout x", ["--sendmail-timeout=x"], ["--sendmail-timeout=60"]],
  ["--parallel 0", ["--parallel", "0"], ["--parallel", "1"]],
  ["--parallel 17", ["--parallel", "17"], ["--parallel", "16"]],
  ["--parallel x", ["--parallel=x"], ["--parallel=4"]],
  ["--parallel -1", ["--parallel=-1"], ["--parallel=2"]],
];

Deno.test("parseAdminArgs() reads --parallel (default 4)", () => {
  strictEqual(parseAdminArgs([]).config.parallel, 4);
  strictEqual(parseAdminArgs(["--parallel", "1"]).config.parallel, 1);
  strictEqual(parseAdminArgs(["--parallel=16"]).config.parallel, 16);
});

Deno.test("parseAdminArgs() refuses bad values with ConfigError (EX_TEMPFAIL: mail is deferred)", async (t) => {
  for (const [name, argv, control] of REFUSE) {
    await t.step(`refuses ${name}`, () => {
      assertRefused(() => parseAdminArgs(argv), ConfigError, {
        exitCode: EX_TEMPFAIL,
        status: "4.3.5",
      });
      deepStrictEqual(parseAdminArgs(control).rest, []);
    });
  }
});

/** [name, sender, allow list as parseAdminArgs stores it, allowed] */
const SENDERS: [string, string, string[], boolean][] = [
  ["an empty list allows anyone", "x@y.example", [], true],
  ["an exact address", "a@b.example", ["a@b.example"], true],
  ["an exact address, sender in another case", "A@B.Example", ["a@b.example"], true],
  ["another local part at the same domain", "c@b.example", ["a@b.example"], false],
  ["a @domain entry", "anyone@b.example", ["@b.example"], true],
  ["a @domain entry, domain in another case", "anyone@B.EXAMPLE", ["@b.example"], true],
  ["a subdomain is not the domain", "a@sub.b.example", ["@b.example"], false],
  ["a domain with the entry as prefix", "a@b.example.evil", ["@b.example"], false],
  ["a domain with the entry as suffix", "a@evilb.example", ["@b.example"], false],
  ["an @ hidden in a quoted local part", '"a@b.example"@evil.example', ["@b.example"], false],
  [
    "an address hidden in a quoted local part",
    '"a@b.example"@evil.example',
    ["a@b.example"],
    false,
  ],
  ["a bare name against a @domain entry", "root", ["@b.example"], false],
  ["a bare name listed exactly", "root", ["root"], true],
  ["a trailing dot is not the same domain (fails closed)", "a@b.example.", ["@b.example"], false],
  ["one of several entries", "a@c.example", ["x@y.example", "@c.example"], true],
];

Deno.test("isSenderAllowed() matches exact addresses and @domain entries without case", async (t) => {
  for (const [name, sender, allow, expected] of SENDERS) {
    await t.step(name, () => strictEqual(isSenderAllowed(sender, allow), expected));
  }
});

Deno.test("isSenderAllowed() compares against the lower-cased list parseAdminArgs() builds", () => {
  const { config } = parseAdminArgs([
    "--allow-sender",
    "Alice@Example.COM",
    "--allow-sender=@Corp.Example",
  ]);
  ok(isSenderAllowed("alice@example.com", config.allowSenders));
  ok(isSenderAllowed("ALICE@EXAMPLE.COM", config.allowSenders));
  ok(isSenderAllowed("bob@corp.example", config.allowSenders));
  ok(!isSenderAllowed("bob@example.com", config.allowSenders));
});

function req(fields: Partial<SendmailRequest>): SendmailRequest {
  return { ...parseSendmailArgs(["sendmail", "root"]), ...fields };
}

const STRICT = config({
  allowSenders: ["a@b.example", "@c.example"],
  requireIntegrity: true,
  maxRecipients: 2,
  maxSize: 1000,
});
const INTEGRITY = { size: 10, sha256: SHA };

/** [name, request, expected error class, exit code, status] */
const POLICY_REFUSE: [
  string,
  SendmailRequest,
  typeof PolicyError | typeof DataError,
  number,
  string,
][] = [
  [
    "a sender off the list",
    req({ sender: "x@evil.example", ...INTEGRITY }),
    PolicyError,
    EX_NOPERM,
    "5.7.1",
  ],
  [
    "a sender at a subdomain",
    req({ sender: "x@sub.c.example", ...INTEGRITY }),
    PolicyError,
    EX_NOPERM,
    "5.7.1",
  ],
  [
    "no integrity data when required",
    req({ sender: "a@b.example" }),
    PolicyError,
    EX_NOPERM,
    "5.7.0",
  ],
  ["a size without a hash", req({ size: 10 }), PolicyError, EX_NOPERM, "5.7.0"],
  ["a hash without a size", req({ sha256: SHA }), PolicyError, EX_NOPERM, "5.7.0"],
  [
    "too many recipients",
    req({ recipients: ["a", "b", "c"], ...INTEGRITY }),
    DataError,
    EX_DATAERR,
    "5.5.3",
  ],
  [
    "a declared size over the limit",
    req({ size: 1001, sha256: SHA }),
    DataError,
    EX_DATAERR,
    "5.3.4",
  ],
  [
    "a bad sender is refused before missing integrity",
    req({ sender: "x@evil.example" }),
    PolicyError,
    EX_NOPERM,
    "5.7.1",
  ],
];

/** [name, request] */
const POLICY_ACCEPT: [string, SendmailRequest][] = [
  ["an exact listed sender", req({ sender: "a@b.example", ...INTEGRITY })],
  ["a sender in a listed domain", req({ sender: "x@C.Example", ...INTEGRITY })],
  ["the null sender (bounces)", req({ sender: "", ...INTEGRITY })],
  ["no -f (the relay account)", req({ ...INTEGRITY })],
  ["exactly maxRecipients", req({ recipients: ["a", "b"], ...INTEGRITY })],
  ["a declared size equal to the limit", req({ size: 1000, sha256: SHA })],
  [
    "-t with no command-line recipients",
    req({ recipients: [], extractRecipients: true, ...INTEGRITY }),
  ],
];

Deno.test("checkPolicy() refuses with 77 (policy) or 65 (data)", async (t) => {
  for (const [name, request, errorClass, exitCode, status] of POLICY_REFUSE) {
    await t.step(`refuses ${name}`, () => {
      assertRefused(() => checkPolicy(request, STRICT), errorClass, { exitCode, status });
    });
  }
});

Deno.test("checkPolicy() accepts the positive controls beside its refusals", async (t) => {
  for (const [name, request] of POLICY_ACCEPT) {
    await t.step(name, () => checkPolicy(request, STRICT));
  }
  await t.step("anything under the defaults", () => {
    checkPolicy(req({ sender: "x@anywhere.example" }), config({}));
  });
});
