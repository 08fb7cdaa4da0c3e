import { deepStrictEqual, equal, notEqual, ok } from "node:assert/strict";
import { parseArgs } from "node:util";
import fc from "npm:fast-check@4.10.2";
import { plainOwnValues } from "../../lib/client/plain_own_values.ts";
import { OWN_OPTIONS, splitClientArgv } from "../../lib/client/split_client_argv.ts";
import { PIPE_ARGV } from "./_pipe_argv.ts";

/** node:util's strict parse of own words, as client_args.ts runs it; "refused" when it throws. */
function reference(own: string[]): unknown {
  try {
    return parseArgs({ args: own, options: OWN_OPTIONS, strict: true, allowPositionals: false })
      .values;
  } catch {
    return "refused";
  }
}

const NAMES = Object.keys(OWN_OPTIONS);

/** Words a command line may hold: own options in every form, sendmail words, odd values. */
const word = fc.oneof(
  fc.constantFrom(...NAMES.map((n) => `--${n}`)),
  fc.constantFrom(...NAMES.map((n) => `--${n}=x`)),
  fc.constantFrom(
    "--",
    "-",
    "-f",
    "-oi",
    "-t",
    "-q",
    "-bs",
    "--no-reuse",
    "--__proto__",
    "--constructor",
    "--toString",
    "--hasOwnProperty",
    "---host",
    "--HOST",
    "--host=",
    "",
    "a=b",
    "relay.example",
    "user@relay.example",
    "${queue_id}",
  ),
  fc.string({ maxLength: 6 }),
  fc.string({ maxLength: 4 }).map((s) => `-${s}`),
  fc.string({ maxLength: 4 }).map((s) => `--${s}`),
);

/** Command lines of own options in plain forms only, repeats and all: the fast path's own ground. */
const plainLine = fc.array(
  fc.tuple(fc.constantFrom(...NAMES.slice(0, 8), "reuse", "queue-id"), fc.string({ maxLength: 4 }))
    .map(([name, value]) =>
      OWN_OPTIONS[name as keyof typeof OWN_OPTIONS].type === "boolean"
        ? [`--${name}`]
        : [`--${name}`, value]
    ),
  { maxLength: 6 },
).map((pairs) => pairs.flat());

Deno.test("plainOwnValues() gives parseArgs's values, or declines: never a different answer", () => {
  let plain = 0;
  fc.assert(
    fc.property(fc.oneof(fc.array(word, { maxLength: 10 }), plainLine), (argv) => {
      for (const mta of ["sendmail", "postfix", "nullmailer"] as const) {
        const own = splitClientArgv(argv, mta).own;
        const mine = plainOwnValues(own);
        if (mine === undefined) continue;
        plain++;
        // Accepted here means accepted there, with the same values (and no prototype).
        deepStrictEqual(mine, reference(own));
      }
    }),
    { numRuns: 20_000 },
  );
  // The generator reaches the plain forms often enough to test them.
  ok(plain >= 5_000, `only ${plain} plain command lines`);
});

Deno.test("plainOwnValues() serves the command lines the documented callers pass", async (t) => {
  const cases: [string, string[]][] = [
    ["README's Postfix pipe", [...PIPE_ARGV]],
    ["a pipe with a port and two relays", [
      "--host",
      "a.example",
      "--host",
      "b.example",
      "--port",
      "2222",
      "--queue-id",
      "4Xk",
      "-f",
      "",
      "--",
      "x@example.net",
    ]],
    ["an MTA and a config named", ["--mta", "nullmailer", "--config", "/etc/x.conf"]],
    ["the service", ["--serve"]],
    ["a flush of every queue", ["--flush", "--all"]],
  ];
  for (const [name, argv] of cases) {
    await t.step(name, () => {
      const own = splitClientArgv(argv, "sendmail").own;
      const mine = plainOwnValues(own);
      notEqual(mine, undefined);
      deepStrictEqual(mine, reference(own));
    });
  }
});

Deno.test("plainOwnValues() leaves every other form to parseArgs", async (t) => {
  const cases: [string, string[]][] = [
    ["an inline value", ["--port=2222"]],
    ["an unknown option", ["--hots", "relay.example"]],
    ["a negated boolean", ["--no-reuse"]],
    ["a prototype name", ["--__proto__", "x"]],
    ["a missing value", ["--port"]],
    ["an option-like value", ["--host", "-oProxyCommand=x"]],
    ["an option as a value", ["--identity", "--known-hosts"]],
    ["a boolean given a value", ["--reuse=yes"]],
  ];
  for (const [name, own] of cases) {
    await t.step(name, () => equal(plainOwnValues(own), undefined));
  }
});
