/**
 * Fixed paths of the installed programs. The Deno permission flags in
 * scripts/permissions.ts are built from these same constants, so what the
 * code spawns and what the sandbox grants can never drift apart.
 *
 * @module
 */

/** The relay's program name: its syslog tag and the name in its error lines. */
export const RELAY_PROGRAM = "rsendmail";
/** The relay's real sendmail. */
export const SENDMAIL_PATH = "/usr/sbin/sendmail";
/** Where the relay spools a message before handing it to sendmail. */
export const SPOOL_DIR = "/tmp";
/**
 * A message under this many bytes is held in memory (and hashed by Web
 * Crypto's native digest) by the relay and a client sending directly; a
 * larger one goes to an unlinked file in {@link SPOOL_DIR}.
 */
export const MEMORY_SPOOL_MAX = 4 * 1024 * 1024;
/** Where the relay keeps its duplicate record (survives a reboot, unlike /tmp). */
export const STATE_DIR = "/var/tmp";
/** The syslog socket. */
export const SYSLOG_SOCKET = "/dev/log";
/** util-linux logger(1), which writes the relay's syslog lines. */
export const LOGGER_PATH = "/usr/bin/logger";
/** The ssh client the satellite runs. */
export const SSH_PATH = "/usr/bin/ssh";
/**
 * The satellite service's spool: owned by its account (0755), holding the
 * drop directory every local user writes into (1733) and the private queue.
 * Before the service, it held per-user queues (`<uid>/`, the parent 1777).
 */
export const SPOOL_ROOT = "/var/spool/sshsendmail";
/** The satellite service's account (owns the key, the queue, the spool). */
export const SERVICE_USER = "sshsendmail";
/** What `sshsendmail setup` writes: the key directory and the config file. */
export const CLIENT_ETC = ["/etc/sshsendmail", "/etc/sshsendmail.conf"] as const;
/** Streams nullmailer's fd 3 (Deno cannot open inherited descriptors). */
export const CAT_PATH = "/bin/cat";
/** Environment variables sshd gives the relay: the request and the client's address. */
export const SSHD_ENV = ["SSH_ORIGINAL_COMMAND", "SSH_CONNECTION"] as const;
/**
 * What the relay reads instead: its launcher (`env -S -i`, in the bundle's
 * first line) starts Deno with a clean environment holding only these, so
 * no DENO_* (DENO_V8_FLAGS …), LD_* or other variable an sshd's AcceptEnv
 * lets through can steer the runtime. One-letter names (R the request, P
 * the peer): the first line holds at most 255 bytes, and the relay's
 * tuning flag needs the room (scripts/permissions.ts).
 */
export const SERVER_ENV = { R: "SSH_ORIGINAL_COMMAND", P: "SSH_CONNECTION" } as const;
