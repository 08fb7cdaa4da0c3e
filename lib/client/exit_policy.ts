/**
 * How each caller of sshsendmail hears an outcome, as data: the exit code
 * (or SMTP reply), whether it is temporary, and the status line it gets.
 * One table per caller, one function that applies it. Pure.
 *
 * - Postfix pipe(8): only 71 and 75 defer; it takes the DSN class from the
 *   status code at the start of the output, so a deferral always says
 *   `4.x.x`; every fault that is not a malformed address defers.
 * - nullmailer 2.x: bit 32 of the exit code means permanent; sysexits codes
 *   are all temporary to it, so they are mapped to its own codes.
 * - standalone sendmail: sysexits, as the error carries them.
 * - SMTP (`-bs`): a reply code after the final dot.
 *
 * @module
 */

import { isTemporary } from "../shared/exit_codes.ts";

/** Who called sshsendmail. */
export type Caller = "postfix" | "nullmailer" | "sendmail" | "smtp";

/** What went wrong, by kind (what the caller's table is keyed by). */
export type FailureKind =
  | "usage" // a word the grammar refuses (ours or sendmail's)
  | "data" // a malformed address, a message too big
  | "policy" // the relay's key may not do this
  | "config" // this machine's configuration
  | "temporary" // the relay or the network, for now
  | "relay"; // the relay's own verdict, with its sysexits code

/** A failure as the code found it. */
export interface FailureFact {
  kind: FailureKind;
  /** The sysexits code it carries (the relay's, or the error's). */
  sysexit: number;
  /** nullmailer's code when the code knows a finer one (ssh's failures). */
  nullmailer?: number | undefined;
  /** `x.y.z program: text`. */
  line: string;
}

/** What the caller hears. */
export interface Heard {
  code: number;
  temporary: boolean;
  line: string;
}

/** nullmailer's codes for a sysexits code (lib/errcodes.h; bit 32 = permanent). */
export const NULLMAILER_FROM_SYSEXIT: Readonly<Record<number, number>> = {
  64: 34,
  65: 34,
  66: 12,
  67: 34,
  68: 33,
  69: 35,
  70: 35,
  71: 16,
  72: 15,
  73: 14,
  74: 14,
  75: 16,
  76: 11,
  77: 34,
  78: 18,
};

/** nullmailer's code for a local fault of each kind (none of them is the relay's refusal). */
const NULLMAILER_LOCAL: Readonly<Record<FailureKind, number | undefined>> = {
  usage: 1,
  data: 34,
  policy: 34,
  config: 18,
  temporary: 16,
  relay: undefined,
};

/** The Postfix pipe's rule: which kinds may bounce (only a malformed address, or the relay's refusal). */
const POSTFIX_BOUNCES: ReadonlySet<FailureKind> = new Set(["data", "relay"]);

/** `5.` → `4.` for a deferral, so that the DSN class matches the exit code. */
function deferLine(line: string): string {
  return line.replace(/^5\./, "4.");
}

/**
 * What `caller` hears of a failure.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { heardBy } from "./exit_policy.ts";
 * const fact = { kind: "usage" as const, sysexit: 64, line: "5.5.4 sshsendmail: bad option" };
 * deepStrictEqual(heardBy("sendmail", fact), { code: 64, temporary: false, line: fact.line });
 * deepStrictEqual(heardBy("postfix", fact), { code: 75, temporary: true, line: "4.3.5 sshsendmail: bad option" });
 * deepStrictEqual(heardBy("nullmailer", fact).code, 1);
 * ```
 */
export function heardBy(caller: Caller, f: FailureFact): Heard {
  switch (caller) {
    case "nullmailer": {
      // ssh's failures carry a finer code (7 refused, 8 timed out …).
      const code = f.nullmailer ?? NULLMAILER_LOCAL[f.kind] ?? NULLMAILER_FROM_SYSEXIT[f.sysexit] ??
        16;
      return { code, temporary: (code & 32) === 0, line: f.line };
    }
    case "postfix": {
      if (POSTFIX_BOUNCES.has(f.kind) && !isTemporary(f.sysexit)) {
        return { code: f.sysexit, temporary: false, line: f.line };
      }
      // A pipe line sshsendmail cannot parse is master.cf's fault: a config error.
      const line = f.kind === "usage" ? f.line.replace(/^\d\.\d+\.\d+/, "4.3.5") : f.line;
      const code = f.sysexit === 71 ? 71 : 75;
      return { code, temporary: true, line: deferLine(line) };
    }
    case "smtp": {
      if (isTemporary(f.sysexit)) return { code: 451, temporary: true, line: deferLine(f.line) };
      return { code: /^5\.[17]\./.test(f.line) ? 550 : 554, temporary: false, line: f.line };
    }
    case "sendmail": {
      const temporary = isTemporary(f.sysexit);
      return { code: f.sysexit, temporary, line: temporary ? deferLine(f.line) : f.line };
    }
  }
}
