/**
 * The sysexits(3) codes both programs speak, and the tables that map other
 * programs' exits onto them.
 *
 * @module
 */

/** Successful termination. */
export const EX_OK = 0;
/** Command line usage error: the request does not match the grammar. */
export const EX_USAGE = 64;
/** Data format error: bad address, message over the size limit. */
export const EX_DATAERR = 65;
/** Cannot open input. */
export const EX_NOINPUT = 66;
/** Addressee unknown. */
export const EX_NOUSER = 67;
/** Host name unknown. */
export const EX_NOHOST = 68;
/** Service unavailable. */
export const EX_UNAVAILABLE = 69;
/** Internal software error. */
export const EX_SOFTWARE = 70;
/** System error (cannot fork, …): soft in Postfix. */
export const EX_OSERR = 71;
/** Critical OS file missing. */
export const EX_OSFILE = 72;
/** Cannot create output file. */
export const EX_CANTCREAT = 73;
/** Input/output error. */
export const EX_IOERR = 74;
/** Temporary failure: the caller should retry later. */
export const EX_TEMPFAIL = 75;
/** Remote error in protocol. */
export const EX_PROTOCOL = 76;
/** Permission denied by policy. */
export const EX_NOPERM = 77;
/** Configuration error. */
export const EX_CONFIG = 78;

/** Every sysexits value, including 0. */
export const SYSEXITS: ReadonlySet<number> = new Set([
  0,
  ...Array.from({ length: 15 }, (_, i) => 64 + i),
]);

/** True when `code` is a sysexits value (0 or 64–78). */
export function isSysexit(code: number): boolean {
  return SYSEXITS.has(code);
}

/**
 * True when Postfix's pipe(8) defers (retries) on this exit code rather than
 * bouncing: only EX_OSERR and EX_TEMPFAIL (postfix/src/global/sys_exits.c).
 */
export function isTemporary(code: number): boolean {
  return code === EX_OSERR || code === EX_TEMPFAIL;
}

/**
 * Maps the exit status of the relay's sendmail onto the code the relay passes
 * back: sysexits codes pass through, anything else (1, 2, 127, …) becomes
 * EX_TEMPFAIL, because Postfix bounces unknown codes and a bounce loses mail
 * that a retry could have delivered.
 */
export function fromSendmailStatus(code: number): number {
  return isSysexit(code) ? code : EX_TEMPFAIL;
}
