/**
 * sshsendmail's name and the limits its mode handlers share. Pure.
 *
 * @module
 */

/** The name in every line sshsendmail prints. */
export const PROGRAM = "sshsendmail";
/** Local spool limit: the relay enforces the real size limit. */
export const LOCAL_MAX_SIZE = 2 ** 40;
/** How long a local writer may stay silent. */
export const LOCAL_IDLE_MS = 3_600_000;
/** SIZE advertised in -bs mode (the relay's own limit decides in the end). */
export const SMTP_MAX_SIZE = 52_428_800;
/** ssh's connection-sharing socket, private to the user (ssh expands %d and %C). */
export const CONTROL_PATH = "%d/.ssh/sshsendmail-%C";
/** Where setup keeps the satellite's key and known_hosts (root's directory, 0755). */
export const SETUP_DIR = "/etc/sshsendmail";
