import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  hasFromHeader,
  type LocalPolicy,
  localUser,
  missingHeaders,
  parseAliases,
  qualify,
  rewriteRecipients,
} from "../../lib/client/local_mail.ts";
import { isDeliveryTarget, isEnvelopeAddress } from "../../lib/shared/address.ts";

/** A satellite `sat.example` (short name `sat`) with the given aliases file and adminaddr. */
function policy(aliases = "", adminaddr: string[] = []): LocalPolicy {
  return {
    adminaddr,
    aliases: parseAliases(aliases),
    domain: "sat.example",
    localDomains: ["localhost", "localhost.localdomain", "sat", "sat.example"],
  };
}

/** [name, aliases text, expected entries] */
const ALIASES: [string, string, Record<string, string[]>][] = [
  ["one entry", "root: ops@example.net\n", { root: ["ops@example.net"] }],
  ["several targets", "root: a@x.example, b@y.example,c@z.example", {
    root: ["a@x.example", "b@y.example", "c@z.example"],
  }],
  ["a continuation line (spaces)", "root: a@x.example,\n  b@x.example\n", {
    root: ["a@x.example", "b@x.example"],
  }],
  ["a continuation line (tab)", "root: a@x.example,\n\tb@x.example\n", {
    root: ["a@x.example", "b@x.example"],
  }],
  [
    "several continuation lines",
    "root: a@x.example,\n b@x.example,\n c@x.example\nbob: d@x.example",
    {
      root: ["a@x.example", "b@x.example", "c@x.example"],
      bob: ["d@x.example"],
    },
  ],
  [
    "a comment line between an entry and its continuation",
    "root: a@x.example,\n# note\n  b@x.example",
    {
      root: ["a@x.example", "b@x.example"],
    },
  ],
  [
    "comment lines, indented comment lines and blank lines",
    "# head\n\n   # indented\n \t \nroot: a@x.example\n#end",
    {
      root: ["a@x.example"],
    },
  ],
  ["CRLF line ends", "root: a@x.example,\r\n  b@x.example\r\nbob: c@x.example\r\n", {
    root: ["a@x.example", "b@x.example"],
    bob: ["c@x.example"],
  }],
  ["the name lower-cased and trimmed", "  Root : a@x.example", { root: ["a@x.example"] }],
  ["a local name as a target", "postmaster: root\nroot: ops@x.example", {
    postmaster: ["root"],
    root: ["ops@x.example"],
  }],
  ["the last entry for a name wins", "root: a@x.example\nroot: b@x.example", {
    root: ["b@x.example"],
  }],
  ["a line without a colon is skipped", "just words\nroot: a@x.example", { root: ["a@x.example"] }],
  ["a line with an empty name is skipped", ": a@x.example\nroot: b@x.example", {
    root: ["b@x.example"],
  }],
  ["empty targets between commas are dropped", "root: ,a@x.example,, ,", { root: ["a@x.example"] }],
  // No alias at all: root then goes where an unlisted name goes (never nowhere).
  ["an entry without targets", "root:", {}],
  ["an entry whose every target is dropped", "root: |/usr/bin/x, /var/log/mail", {}],
  ["the empty file", "", {}],
];

/** [attack or dialect, target]: each dropped from `root: <target>, ok@x.example`. */
const DROPPED_TARGETS: [string, string][] = [
  ["a pipe", "|/usr/bin/procmail"],
  ["a pipe after spaces", "   |/usr/bin/procmail"],
  ["a quoted pipe with arguments (aliases(5) form)", '"|/usr/bin/procmail -a x"'],
  ["a file", "/var/mail/root"],
  ["a quoted file", '"/var/log/mail copy"'],
  ["/dev/null", "/dev/null"],
  [":include:", ":include:/etc/mail/list"],
  [":INCLUDE: upper case", ":INCLUDE:/etc/mail/list"],
  ["a quoted :include:", '":include:/etc/mail/list"'],
  ["a target starting with a dash (sendmail option)", "-oQ/tmp"],
  ["a target with a space", "a b@x.example"],
  ["a '#' is no comment after a target: the target is dropped, not cut", "a@x.example # ops"],
  ["a control character", "a\x1b@x.example"],
];

Deno.test("parseAliases() reads /etc/aliases syntax", async (t) => {
  for (const [name, text, expected] of ALIASES) {
    await t.step(name, () => {
      deepStrictEqual(Object.fromEntries(parseAliases(text)), expected);
    });
  }
});

Deno.test("parseAliases() drops pipes, files, :include: and non-addresses", async (t) => {
  for (const [name, target] of DROPPED_TARGETS) {
    await t.step(`drops ${name}`, () => {
      deepStrictEqual(parseAliases(`root: ${target}, ok@x.example`).get("root"), ["ok@x.example"]);
    });
  }
  await t.step("positive control: a '|' or '/' inside an address is kept", () => {
    deepStrictEqual(parseAliases("root: ops|alerts@x.example, a/b@x.example").get("root"), [
      "ops|alerts@x.example",
      "a/b@x.example",
    ]);
  });
  await t.step("positive control: a quoted local part is kept", () => {
    deepStrictEqual(parseAliases('root: "john doe"@x.example').get("root"), [
      '"john doe"@x.example',
    ]);
  });
});

Deno.test("parseAliases() never throws and yields only deliverable addresses (property)", () => {
  const target = fc.oneof(
    fc.constantFrom(
      "ops@x.example",
      "root",
      "|/bin/sh",
      '"|/bin/sh -c id"',
      "/etc/passwd",
      '" /tmp/x"',
      ":include:/x",
      '":INCLUDE:/x"@y',
      "-oQ/tmp",
      '"a b"@x.example',
      "",
    ),
    fc.string({
      unit: fc.constantFrom("a", "@", '"', "|", "/", ":", " ", "-", "\\"),
      maxLength: 8,
    }),
  );
  const entry = fc.tuple(
    fc.constantFrom("root", "Bob", " x", "#c", ""),
    fc.array(target, { maxLength: 4 }),
    fc.constantFrom(",", ",\n  ", ",\r\n\t", "\n", " "),
  ).map(([name, targets, sep]) => `${name}: ${targets.join(sep)}`);
  const text = fc.oneof(
    fc.array(entry, { maxLength: 5 }).map((lines) => lines.join("\n")),
    fc.string({
      unit: fc.constantFrom(
        "a",
        "b",
        "@",
        ":",
        ",",
        " ",
        "\t",
        "\n",
        "\r",
        "#",
        "|",
        "/",
        '"',
        "-",
      ),
      maxLength: 80,
    }),
  );
  fc.assert(
    fc.property(text, (t) => {
      for (const [name, targets] of parseAliases(t)) {
        strictEqual(name, name.toLowerCase());
        ok(!name.includes("\n"));
        for (const target of targets) {
          ok(isEnvelopeAddress(target), JSON.stringify(target));
          ok(!isDeliveryTarget(target), JSON.stringify(target));
        }
      }
    }),
    { seed: 0xa11a5, numRuns: 3000 },
  );
});

/** [address, local user or undefined] */
const LOCAL_USER: [string, string | undefined][] = [
  ["root", "root"],
  ["Root", "root"],
  ["root@localhost", "root"],
  ["ROOT@LOCALHOST", "root"],
  ["root@localhost.", "root"],
  ["root@localhost.localdomain", "root"],
  ["root@sat", "root"],
  ["root@sat.example", "root"],
  ["root@Sat.Example.", "root"],
  ["root@sat.example.net", undefined],
  ["root@example", undefined],
  ["root@other.example", undefined],
  ["a@b@localhost", "a@b"],
  ['"a@b"@localhost', '"a@b"'],
];

Deno.test("localUser() names a user of this machine, else undefined", async (t) => {
  for (const [address, user] of LOCAL_USER) {
    await t.step(`${address} → ${user}`, () => {
      strictEqual(localUser(address, policy()), user);
    });
  }
});

/** A chain of `n` aliases u0 → u1 → … → u(n-1) → end@x.example. */
function chain(n: number): string {
  return Array.from(
    { length: n },
    (_, i) => `u${i}: ${i === n - 1 ? "end@x.example" : `u${i + 1}`}`,
  )
    .join("\n");
}

/** [name, recipients, aliases, adminaddr, expected] */
const REWRITE: [string, string[], string, string[], string[]][] = [
  ["a remote recipient stays", ["a@b.example"], "", ["ops@x.example"], ["a@b.example"]],
  ["a bare name goes to adminaddr", ["root"], "", ["ops@x.example"], ["ops@x.example"]],
  ["name@localhost goes to adminaddr", ["cron@localhost"], "", ["ops@x.example"], [
    "ops@x.example",
  ]],
  ["name@<mail domain> goes to adminaddr", ["bob@sat.example"], "", ["ops@x.example"], [
    "ops@x.example",
  ]],
  ["every adminaddr gets local mail", ["root"], "", ["o1@x.example", "o2@x.example"], [
    "o1@x.example",
    "o2@x.example",
  ]],
  ["without adminaddr a local name stays as written", ["root", "Bob@localhost"], "", [], [
    "root",
    "Bob@localhost",
  ]],
  ["an alias to a remote address", ["root"], "root: ops@y.example", ["ops@x.example"], [
    "ops@y.example",
  ]],
  ["an alias looked up case-insensitively", ["ROOT@LocalHost"], "root: ops@y.example", [], [
    "ops@y.example",
  ]],
  ["an alias to several targets", ["root"], "root: a@y.example, b@y.example", [], [
    "a@y.example",
    "b@y.example",
  ]],
  [
    "aliases expand recursively",
    ["postmaster"],
    "postmaster: root\nroot: admins\nadmins: a@y.example, b@y.example",
    [],
    [
      "a@y.example",
      "b@y.example",
    ],
  ],
  [
    "an alias to a local name without an alias goes to adminaddr",
    ["postmaster"],
    "postmaster: bob",
    [
      "ops@x.example",
    ],
    ["ops@x.example"],
  ],
  [
    "an alias to a remote name of the same local part stays remote",
    ["root"],
    "root: root@y.example",
    [
      "ops@x.example",
    ],
    ["root@y.example"],
  ],
  [
    "duplicates dropped, first place kept",
    ["a@y.example", "root", "a@y.example", "b@y.example"],
    "root: b@y.example, a@y.example",
    [],
    [
      "a@y.example",
      "b@y.example",
    ],
  ],
  ["two names for one adminaddr give one copy", ["root", "bob", "cron@localhost"], "", [
    "ops@x.example",
  ], ["ops@x.example"]],
  [
    "a self-alias (keep a local copy) without adminaddr keeps the name",
    ["root"],
    "root: root, ops@y.example",
    [],
    [
      "root",
      "ops@y.example",
    ],
  ],
  ["a self-alias's local copy goes to every adminaddr", ["root"], "root: root, ops@y.example", [
    "o1@x.example",
    "o2@x.example",
  ], ["o1@x.example", "o2@x.example", "ops@y.example"]],
  ["a self-alias written name@localhost", ["root"], "root: root@localhost", ["o1@x.example"], [
    "o1@x.example",
  ]],
  ["8 alias lookups reach the end of the chain", ["u0"], chain(8), ["ops@x.example"], [
    "end@x.example",
  ]],
  ["9 alias lookups stop at depth 8: adminaddr", ["u0"], chain(9), ["ops@x.example"], [
    "ops@x.example",
  ]],
  ["9 alias lookups stop at depth 8: the name reached, without adminaddr", ["u0"], chain(9), [], [
    "u8",
  ]],
  ["a two-name loop ends: adminaddr", ["a"], "a: b\nb: a", ["ops@x.example"], ["ops@x.example"]],
  ["a two-name loop ends: the name reached, without adminaddr", ["a"], "a: b\nb: a", [], ["a"]],
  ["a loop through name@localhost ends", ["a"], "a: b@localhost\nb: a@sat.example", [
    "ops@x.example",
  ], ["ops@x.example"]],
  [
    "a loop with a remote member keeps it once (the deepest name first)",
    ["a"],
    "a: b, r@y.example\nb: a",
    [
      "ops@x.example",
    ],
    ["ops@x.example", "r@y.example"],
  ],
  ["no recipients", [], "root: ops@y.example", ["ops@x.example"], []],
  // Once lost: an alias whose every target was a pipe or a file left no recipient at all.
  ["an alias to a pipe only goes to adminaddr, not nowhere", ["root"], "root: |/usr/bin/x", [
    "ops@x.example",
  ], ["ops@x.example"]],
  ["an alias to a file only keeps the name, without adminaddr", ["root"], "root: /var/log/x", [], [
    "root",
  ]],
  [
    "a diamond (two paths to one name) gives its address once",
    ["a"],
    "a: b, c\nb: d\nc: d\nd: e@y.example",
    [],
    [
      "e@y.example",
    ],
  ],
];

Deno.test("rewriteRecipients() applies aliases, then adminaddr, to local recipients", async (t) => {
  for (const [name, recipients, aliases, adminaddr, expected] of REWRITE) {
    await t.step(name, () => {
      deepStrictEqual(rewriteRecipients(recipients, policy(aliases, adminaddr)), expected);
    });
  }
});

Deno.test("rewriteRecipients() looks each name up once: 6 names each aliased to all 6", () => {
  // Once (targets per name)^depth lookups (6^8, 1.7 million here): a tangle
  // in /etc/aliases stalled every send.
  const names = Array.from({ length: 6 }, (_, i) => `n${i}`);
  const text = names.map((n) => `${n}: ${[...names, `${n}@y.example`].join(", ")}`).join("\n");
  const p = policy(text, ["ops@x.example"]);
  let lookups = 0;
  const aliases = p.aliases;
  p.aliases = new (class extends Map<string, string[]> {
    override get(key: string) {
      lookups++;
      return aliases.get(key);
    }
  })(aliases);
  const out = rewriteRecipients(["n0"], p);
  deepStrictEqual(new Set(out), new Set(["ops@x.example", ...names.map((n) => `${n}@y.example`)]));
  deepStrictEqual(out.length, 7);
  ok(lookups <= 6 * 7 + 1, `${lookups} lookups`);
});

Deno.test("rewriteRecipients() drops a quoted pipe alias instead of handing it to the relay", () => {
  // `root: "|cmd"` once reached the relay as a recipient, which refuses the
  // whole message (program recipients are not allowed).
  const out = rewriteRecipients(
    ["root", "a@y.example"],
    policy('root: "|/usr/bin/x -y", ops@y.example'),
  );
  deepStrictEqual(out, ["ops@y.example", "a@y.example"]);
  ok(!out.some(isDeliveryTarget));
});

/** [address, domain, qualified] */
const QUALIFY: [string, string, string][] = [
  ["bob", "sat.example", "bob@sat.example"],
  ["bob@other.example", "sat.example", "bob@other.example"],
  ["bob@localhost", "sat.example", "bob@localhost"],
  ["", "sat.example", ""],
];

Deno.test("qualify() adds the mail domain to a bare name only", async (t) => {
  for (const [address, domain, qualified] of QUALIFY) {
    await t.step(`${JSON.stringify(address)} → ${JSON.stringify(qualified)}`, () => {
      strictEqual(qualify(address, domain), qualified);
    });
  }
});

/** [name, head, has a From: field] */
const HAS_FROM: [string, string, boolean][] = [
  ["From: first", "From: a@x.example\nSubject: s\n\nbody\n", true],
  ["From: later in the header", "Subject: s\nFrom: a@x.example\n\nbody\n", true],
  ["lower case", "from: a@x.example\n\n", true],
  ["upper case", "FROM: a@x.example\n\n", true],
  ["CRLF", "Subject: s\r\nFrom: a@x.example\r\n\r\nbody\r\n", true],
  ["no empty line: all of it is header", "Subject: s\nFrom: a@x.example", true],
  ["obsolete space before the colon", "From : a@x.example\n\n", true],
  ["no From:", "Subject: s\nTo: b@y.example\n\nbody\n", false],
  ["From: only in the body", "Subject: s\n\nFrom: a@x.example\n", false],
  ["From: only in a CRLF body", "Subject: s\r\n\r\nFrom: a@x.example\r\n", false],
  ["an empty header section, From: in the body", "\nFrom: a@x.example\n", false],
  ["an empty CRLF header section, From: in the body", "\r\nFrom: a@x.example\r\n", false],
  ["X-From: is another field", "X-From: a@x.example\n\n", false],
  ["Resent-From: is another field", "Resent-From: a@x.example\n\n", false],
  ["From-Me: is another field", "From-Me: a@x.example\n\n", false],
  ["an mbox 'From ' line is no field", "From a@x.example Mon Jan 1 00:00:00 2026\n\n", false],
  ["a folded line mentioning From:", "Subject: s\n From: a@x.example\n\n", false],
  ["the empty message", "", false],
];

Deno.test("hasFromHeader() looks for From: in the header section only", async (t) => {
  for (const [name, head, expected] of HAS_FROM) {
    await t.step(name, () => strictEqual(hasFromHeader(head), expected));
  }
});

const NOW = new Date(Date.UTC(2026, 11, 1, 7, 30, 5));
const DATE_LINE = "Date: Tue, 01 Dec 2026 07:30:05 +0000\n";
const ID_LINE = "Message-ID: <m0123@sat.example>\n";

/** [name, head, lines to add] */
const MISSING: [string, string, string][] = [
  ["both missing", "Subject: s\n\nbody\n", DATE_LINE + ID_LINE],
  ["both present", "Date: x\nMessage-ID: <y@z>\n\nbody\n", ""],
  ["field names in any case", "DATE: x\nmessage-id: <y@z>\n\n", ""],
  ["obsolete space before the colon", "Date : x\nMessage-Id\t: <y@z>\n\n", ""],
  ["Date: present only", "Date: x\n\n", ID_LINE],
  ["Message-ID: present only", "Message-ID: <y@z>\n\n", DATE_LINE],
  ["CRLF header section", "Date: x\r\nSubject: s\r\n\r\nbody\r\n", ID_LINE],
  [
    "fields in the body do not count",
    "Subject: s\n\nDate: x\nMessage-ID: <y@z>\n",
    DATE_LINE + ID_LINE,
  ],
  ["fields in a CRLF body do not count", "Subject: s\r\n\r\nDate: x\r\n", DATE_LINE + ID_LINE],
  ["an empty header section", "\nDate: x\nMessage-ID: <y@z>\n", DATE_LINE + ID_LINE],
  ["an empty CRLF header section", "\r\nDate: x\r\n", DATE_LINE + ID_LINE],
  ["no empty line: all of it is header", "Date: x", ID_LINE],
  ["Resent-Date: is another field", "Resent-Date: x\n\n", DATE_LINE + ID_LINE],
  ["X-Message-ID: is another field", "X-Message-ID: <y@z>\nDate: x\n\n", ID_LINE],
  ["Date in a folded line is no field", "Subject: s\n Date: x\n\n", DATE_LINE + ID_LINE],
  ["the empty message", "", DATE_LINE + ID_LINE],
];

Deno.test("missingHeaders() adds Date: and Message-ID: when the header section lacks them", async (t) => {
  for (const [name, head, expected] of MISSING) {
    await t.step(
      name,
      () => strictEqual(missingHeaders(head, NOW, "m0123", "sat.example"), expected),
    );
  }
  await t.step("the date is RFC 5322 with a numeric zone, never GMT", () => {
    const line = missingHeaders("\n", new Date(0), "i", "d").split("\n")[0]!;
    strictEqual(line, "Date: Thu, 01 Jan 1970 00:00:00 +0000");
  });
});
