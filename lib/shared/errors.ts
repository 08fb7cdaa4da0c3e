/**
 * Errors that carry their sysexits code and a one-line public message with an
 * RFC 3463 enhanced status code. The edge (server.ts, client.ts) catches them
 * once, prints `publicMessage`, logs `detail`, and exits with `exitCode`.
 *
 * @module
 */

import { EX_DATAERR, EX_NOPERM, EX_TEMPFAIL, EX_USAGE } from "./exit_codes.ts";

/** Base class: every error the programs report on purpose. */
export class MailError extends Error {
  /** The sysexits code the program exits with. */
  readonly exitCode: number;
  /** RFC 3463 enhanced status code, e.g. `5.5.4`. */
  readonly status: string;
  /** Extra detail for the log only: may hold peer input, never shown to the peer. */
  readonly detail: string;

  /**
   * @param exitCode sysexits code.
   * @param status enhanced status code.
   * @param message public text: fixed wording, never raw peer input.
   * @param detail log-only detail.
   */
  constructor(
    exitCode: number,
    status: string,
    message: string,
    detail = "",
  ) {
    super(message);
    this.name = "MailError";
    this.exitCode = exitCode;
    this.status = status;
    this.detail = detail;
  }

  /** The one line the peer sees, e.g. `5.5.4 rsendmail: option -bp is not allowed`. */
  publicLine(program: string): string {
    return `${this.status} ${program}: ${this.message}`;
  }
}

/** The request does not match the grammar (EX_USAGE). */
export class UsageError extends MailError {
  /** @param message public text. @param status enhanced code (default 5.5.4). */
  constructor(message: string, status = "5.5.4", detail = "") {
    super(EX_USAGE, status, message, detail);
    this.name = "UsageError";
  }
}

/** Bad data: address syntax, size, integrity (EX_DATAERR). */
export class DataError extends MailError {
  /** @param message public text. @param status enhanced code. */
  constructor(message: string, status = "5.6.0", detail = "") {
    super(EX_DATAERR, status, message, detail);
    this.name = "DataError";
  }
}

/** A policy of the key forbids the request (EX_NOPERM). */
export class PolicyError extends MailError {
  /** @param message public text. @param status enhanced code. */
  constructor(message: string, status = "5.7.1", detail = "") {
    super(EX_NOPERM, status, message, detail);
    this.name = "PolicyError";
  }
}

/** Try again later: timeouts, signals, transport faults (EX_TEMPFAIL). */
export class TempError extends MailError {
  /** @param message public text. @param status enhanced code. */
  constructor(message: string, status = "4.3.0", detail = "") {
    super(EX_TEMPFAIL, status, message, detail);
    this.name = "TempError";
  }
}

/**
 * Turns anything thrown into a MailError. Unknown errors are bugs: they keep
 * their stack in `detail` for the log and show the peer a fixed text only.
 * They exit EX_TEMPFAIL, not EX_SOFTWARE, so that a bug defers mail instead of
 * bouncing it.
 */
export function toMailError(err: unknown): MailError {
  if (err instanceof MailError) return err;
  const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return new MailError(EX_TEMPFAIL, "4.3.0", "internal error", detail);
}
