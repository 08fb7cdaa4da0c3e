import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { invokedPathOf, type Mode, resolveMode } from "../../lib/client/mode.ts";

/** [how it was invoked, argv, mode] */
const MODES: [string, string[], Mode][] = [
  ["/usr/sbin/newaliases", ["-v"], { kind: "newaliases" }],
  ["/usr/bin/mailq", ["-v"], { kind: "mail", mta: "sendmail", argv: ["--list", "-v"] }],
  ["/usr/sbin/sendmail", ["-t", "-i"], { kind: "mail", mta: "sendmail", argv: ["-t", "-i"] }],
  ["/usr/sbin/sshsendmail", ["setup", "--host", "r@h"], {
    kind: "setup",
    argv: ["--host", "r@h"],
  }],
  ["/usr/sbin/sshsendmail", ["--host", "r@h", "--", "a@b"], {
    kind: "mail",
    mta: "postfix",
    argv: ["--host", "r@h", "--", "a@b"],
  }],
  ["/usr/sbin/sshsendmail", ["--host=r@h", "a@b"], {
    kind: "mail",
    mta: "postfix",
    argv: ["--host=r@h", "a@b"],
  }],
  ["/usr/lib/nullmailer/sshsendmail", [], { kind: "mail", mta: "nullmailer", argv: [] }],
  // Not a Postfix pipe: --hosts is not --host (parseClientArgs refuses it later).
  ["/usr/sbin/sshsendmail", ["--hosts", "r@h"], {
    kind: "mail",
    mta: "sendmail",
    argv: ["--hosts", "r@h"],
  }],
  // setup only as the first word.
  ["/usr/sbin/sendmail", ["--", "setup"], { kind: "mail", mta: "sendmail", argv: ["--", "setup"] }],
];

Deno.test("resolveMode() decides the mode once from the invoked name, path and first words", async (t) => {
  for (const [path, argv, mode] of MODES) {
    await t.step(`${path} ${argv.join(" ")}`, () => deepStrictEqual(resolveMode(path, argv), mode));
  }
});

Deno.test("invokedPathOf() reads the invoked path from the main module's URL", async (t) => {
  const cases: [string, string][] = [
    ["file:///usr/sbin/sendmail", "/usr/sbin/sendmail"],
    ["file:///usr/lib/nullmailer/sshsendmail", "/usr/lib/nullmailer/sshsendmail"],
    ["file:///opt/my%20dir/mailq", "/opt/my dir/mailq"],
    ["/usr/bin/mailq", "/usr/bin/mailq"],
  ];
  for (const [main, path] of cases) {
    await t.step(main, () => strictEqual(invokedPathOf(main), path));
  }
});
