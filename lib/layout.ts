/**
 * Fixed paths of the installed programs. The Deno permission flags in
 * scripts/permissions.ts are built from these same constants, so what the
 * code spawns and what the sandbox grants can never drift apart.
 *
 * @module
 */

/** The relay's real sendmail. */
export const SENDMAIL_PATH = "/usr/sbin/sendmail";
/** Where the relay spools a message before handing it to sendmail. */
export const SPOOL_DIR = "/tmp";
/** Where the relay keeps its duplicate record (survives a reboot, unlike /tmp). */
export const STATE_DIR = "/var/tmp";
/** The syslog socket. */
export const SYSLOG_SOCKET = "/dev/log";
/** util-linux logger(1), which writes the relay's syslog lines. */
export const LOGGER_PATH = "/usr/bin/logger";
/** The ssh client the satellite runs. */
export const SSH_PATH = "/usr/bin/ssh";
/** Parent of the satellite's per-user offline queues (1777, like /tmp). */
export const QUEUE_ROOT = "/var/spool/sshsendmail";
/** What `sshsendmail setup` writes: the key directory and the config file. */
export const CLIENT_ETC = ["/etc/sshsendmail", "/etc/sshsendmail.conf"] as const;
/** Streams nullmailer's fd 3 (Deno cannot open inherited descriptors). */
export const CAT_PATH = "/bin/cat";
/** Environment variables the relay reads. */
export const SERVER_ENV = ["SSH_ORIGINAL_COMMAND", "SSH_CONNECTION"] as const;
