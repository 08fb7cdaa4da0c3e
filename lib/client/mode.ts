/**
 * Which mode sshsendmail runs in, decided once, from how it was invoked:
 * the name it was called by (`newaliases`, `mailq`, `sendmail`…), where it
 * lies (nullmailer runs its protocol modules from its own directory with
 * no arguments), and its first words (`setup`; `--host` makes a Postfix
 * pipe). Pure.
 *
 * @module
 */

import type { Mta } from "./split_client_argv.ts";

/** What the edge does next. */
export type Mode =
  /** `newaliases`: nothing to rebuild; exit 0 silently. */
  | { kind: "newaliases" }
  /** `sshsendmail setup …`: the admin's set-up (its own options). */
  | { kind: "setup"; argv: string[] }
  /** Everything else: parse these words for this caller (parseClientArgs). */
  | { kind: "mail"; mta: Mta; argv: string[] };

/**
 * Resolves the mode from the invoked path and the arguments.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { resolveMode } from "./mode.ts";
 * deepStrictEqual(resolveMode("/usr/bin/mailq", []), { kind: "mail", mta: "sendmail", argv: ["--list"] });
 * deepStrictEqual(resolveMode("/usr/lib/nullmailer/sshsendmail", []), { kind: "mail", mta: "nullmailer", argv: [] });
 * deepStrictEqual(resolveMode("/usr/sbin/sshsendmail", ["--host", "r@h", "a@b"]).kind, "mail");
 * ```
 */
export function resolveMode(path: string, argv: readonly string[]): Mode {
  const name = path.slice(path.lastIndexOf("/") + 1);
  if (name === "newaliases") return { kind: "newaliases" };
  if (argv[0] === "setup") return { kind: "setup", argv: argv.slice(1) };
  const mta: Mta = /\/nullmailer\//.test(path)
    ? "nullmailer"
    : argv.some((a) => a === "--host" || a.startsWith("--host="))
    ? "postfix"
    : "sendmail";
  return { kind: "mail", mta, argv: name === "mailq" ? ["--list", ...argv] : [...argv] };
}

/**
 * The path the program was invoked as, from its main module's specifier
 * (a `file:` URL when run from a file; a symlink keeps its own name).
 *
 * @example Usage
 * ```ts
 * import { equal } from "node:assert/strict";
 * import { invokedPathOf } from "./mode.ts";
 * equal(invokedPathOf("file:///usr/lib/nullmailer/sshsendmail"), "/usr/lib/nullmailer/sshsendmail");
 * ```
 */
export function invokedPathOf(mainModule: string): string {
  return mainModule.startsWith("file://")
    ? decodeURIComponent(new URL(mainModule).pathname)
    : mainModule;
}
