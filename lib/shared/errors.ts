/**
 * Errors that carry their sysexits code and a one-line public message with an
 * RFC 3463 enhanced status code. The edge (server.ts, client.ts) catches them
 * once, prints `publicMessage`, logs `detail`, and exits with `exitCode`.
 *
 * @module
 */

import { EX_DATAERR, EX_NOPERM, EX_TEMPFAIL, EX_USAGE } from "./exit_codes.ts";

/** What a {@link MailError} carries besides its public message. */
export interface MailErrorOptions {
  /** The sysexits code the program exits with. */
  exitCode: number;
  /** RFC 3463 enhanced status code, e.g. `5.5.4`. */
  status: string;
  /** Extra detail for the log only. */
  detail?: string | undefined;
}

/** Base class: every error the programs report on purpose. */
export class MailError extends Error {
  /** The sysexits code the program exits with. */
  readonly exitCode: number;
  /** RFC 3463 enhanced status code, e.g. `5.5.4`. */
  readonly status: string;
  /** Extra detail for the log only: may hold peer input, never shown to the peer. */
  readonly detail: string;

  /**
   * @param message public text: fixed wording, never raw peer input.
   * @param options the sysexits code, the enhanced status code, and a
   * log-only detail.
   */
  constructor(message: string, options: MailErrorOptions) {
    super(message);
    this.name = "MailError";
    this.exitCode = options.exitCode;
    this.status = options.status;
    this.detail = options.detail ?? "";
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
    super(message, { exitCode: EX_USAGE, status, detail });
    this.name = "UsageError";
  }
}

/** Bad data: address syntax, size, integrity (EX_DATAERR). */
export class DataError extends MailError {
  /** @param message public text. @param status enhanced code. */
  constructor(message: string, status = "5.6.0", detail = "") {
    super(message, { exitCode: EX_DATAERR, status, detail });
    this.name = "DataError";
  }
}

/** A policy of the key forbids the request (EX_NOPERM). */
export class PolicyError extends MailError {
  /** @param message public text. @param status enhanced code. */
  constructor(message: string, status = "5.7.1", detail = "") {
    super(message, { exitCode: EX_NOPERM, status, detail });
    this.name = "PolicyError";
  }
}

/** Try again later: timeouts, signals, transport faults (EX_TEMPFAIL). */
export class TempError extends MailError {
  /** @param message public text. @param status enhanced code. */
  constructor(message: string, status = "4.3.0", detail = "") {
    super(message, { exitCode: EX_TEMPFAIL, status, detail });
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
  return new MailError("internal error", {
    exitCode: EX_TEMPFAIL,
    status: "4.3.0",
    detail: detail,
  });
}

/**
 * A fault in a program's own configuration (the forced command's admin
 * options, the satellite's config file): the mail is deferred, loudly
 * (EX_TEMPFAIL, 4.3.5). The message is public: it names the setting and
 * never holds a secret or peer input.
 */
export class ConfigError extends MailError {
  /**
   * @param message public text naming the setting.
   * @param detail log-only detail.
   */
  constructor(message: string, detail = "") {
    super(message, { exitCode: EX_TEMPFAIL, status: "4.3.5", detail });
    this.name = "ConfigError";
  }
}
