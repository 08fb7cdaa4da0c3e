/**
 * The one place where a failure becomes what sshsendmail prints and exits
 * with: a thrown error (an admin's command hears plain words; a mailer
 * hears its exit policy, {@link heardBy}) or a send's failure (ssh's or
 * the relay's), or an SMTP reply to the relay's answer (`-bs`). Pure.
 *
 * @module
 */

import { OWN_OPTION_ERROR } from "./client_args.ts";
import type { Mta } from "./split_client_argv.ts";
import { ConfigError } from "./client_config.ts";
import { type FailureFact, type FailureKind, heardBy } from "./exit_policy.ts";
import { printable } from "./mailq.ts";
import { type Failure, failureOfReply } from "./ssh_command.ts";
import {
  DataError,
  type MailError,
  PolicyError,
  toMailError,
  UsageError,
} from "../shared/errors.ts";
import { isTemporary } from "../shared/exit_codes.ts";
import type { BatchReply } from "../shared/batch.ts";

/** What the process prints on stderr (one line, without its LF) and exits with. */
export interface ExitReport {
  code: number;
  line: string;
}

/** Who hears a thrown error, and how. */
export interface ErrorReportOptions {
  /** The caller as known so far (the mode's, then the parsed `--mta`). */
  caller: Mta;
  /** An admin's command (setup, mailq, --serve …): plain words, no DSN code. */
  admin: boolean;
  /** stdin: whether it is a terminal is asked only for a bad option of ours. */
  stdin: { isTerminal(): boolean };
  program: string;
}

/**
 * The kind of a thrown error, for the exit policy.
 *
 * @example Usage
 * ```ts
 * import { equal } from "node:assert/strict";
 * import { kindOf } from "./failure_report.ts";
 * import { DataError } from "../shared/errors.ts";
 * equal(kindOf(new DataError("bad address", "5.1.3")), "data");
 * ```
 */
export function kindOf(error: MailError): FailureKind {
  if (error instanceof ConfigError) return "config";
  if (error instanceof UsageError) return "usage";
  if (error instanceof DataError) return "data";
  if (error instanceof PolicyError) return "policy";
  return "temporary";
}

/** A send's failure (ssh's or the relay's) as a fact for the exit policy. */
export function factOf(failure: Failure): FailureFact {
  return {
    kind: isTemporary(failure.sysexit) ? "temporary" : "relay",
    sysexit: failure.sysexit,
    nullmailer: failure.nullmailer,
    line: failure.line,
  };
}

/**
 * What a caller hears of a failed send.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { reportFailure } from "./failure_report.ts";
 * const failure = { line: "5.1.1 rsendmail: no such user", sysexit: 67, nullmailer: 34, connectPhase: false };
 * deepStrictEqual(reportFailure("postfix", failure), { code: 67, line: failure.line });
 * ```
 */
export function reportFailure(caller: Mta, failure: Failure): ExitReport {
  return reportFact(caller, factOf(failure));
}

function reportFact(caller: Mta, fact: FailureFact): ExitReport {
  const heard = heardBy(caller, fact);
  return { code: heard.code, line: heard.line };
}

/**
 * What the process prints and exits with for anything thrown.
 *
 * Typed at a terminal, a bad option of ours is a usage error (64); on a
 * pipe it is a broken pipe line or wrapper (Postfix cannot be told from a
 * misspelt --host): the mail must wait, never bounce.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { reportError } from "./failure_report.ts";
 * import { UsageError } from "../shared/errors.ts";
 * const o = { caller: "sendmail" as const, admin: true, stdin: { isTerminal: () => true }, program: "sshsendmail" };
 * deepStrictEqual(reportError(new UsageError("--init-spool is for root"), o), {
 *   code: 64,
 *   line: "sshsendmail: --init-spool is for root",
 * });
 * ```
 */
export function reportError(err: unknown, o: ErrorReportOptions): ExitReport {
  let error = toMailError(err);
  if (error instanceof UsageError && error.detail === OWN_OPTION_ERROR && !o.stdin.isTerminal()) {
    error = new ConfigError(error.message);
  }
  if (o.admin) {
    return { code: error.exitCode, line: `${o.program}: ${printable(error.message, 500)}` };
  }
  return reportFact(o.caller, {
    kind: kindOf(error),
    sysexit: error.exitCode,
    line: error.publicLine(o.program),
  });
}

/**
 * The SMTP reply (`-bs`, direct) to the relay's answer to one message:
 * its own reply in a batch, or ssh's failure.
 *
 * @example Usage
 * ```ts
 * import { equal } from "node:assert/strict";
 * import { smtpReplyOf } from "./failure_report.ts";
 * const answer = { id: "m1", code: 67, status: "5.1.1", text: "rsendmail: no such user" };
 * equal(smtpReplyOf(answer, "m1"), "550 5.1.1 rsendmail: no such user");
 * ```
 */
export function smtpReplyOf(answer: BatchReply | Failure, id: string): string {
  // A reply reads as the command line reads it (failureOfReply): a frame the
  // relay did not take ("-") waits, whatever its status says.
  const failure = "code" in answer ? failureOfReply(answer) : answer;
  if (failure === undefined) return `250 2.0.0 Ok: sent as ${id}`;
  const heard = heardBy("smtp", factOf(failure));
  return `${heard.code} ${heard.line}`;
}
