/**
 * The one place the Deno permission flags of both programs are kept (short
 * spellings: -R read, -W write, -E env, -S sys; a shebang holds at
 * most 255 bytes). `deno
 * task build` writes them into each bundle's shebang, `deno task compile`
 * passes them to `deno compile`, and the tests read them from here.
 *
 * @module
 */

import {
  CAT_PATH,
  CLIENT_ETC,
  LOGGER_PATH,
  SENDMAIL_PATH,
  SERVER_ENV,
  SPOOL_DIR,
  SPOOL_ROOT,
  SSH_PATH,
  STATE_DIR,
} from "../lib/shared/layout.ts";

/**
 * rsendmail: run only the relay's sendmail and logger(1) (Deno grants no
 * /dev/log short of --allow-all), read and write only the spool directory,
 * read only the two SSH variables, no network at all.
 */
export const SERVER_FLAGS: readonly string[] = [
  `--allow-run=${SENDMAIL_PATH},${LOGGER_PATH}`,
  `-R=${SPOOL_DIR},${STATE_DIR}`,
  `-W=${SPOOL_DIR},${STATE_DIR}`,
  `-E=${Object.keys(SERVER_ENV).join(",")}`,
  "-S=uid",
];

/**
 * sshsendmail: run only ssh (cat, for nullmailer's fd 3; logger(1), for the
 * service's syslog lines); write only its temporary spool, the service's
 * spool, and what `setup` writes under /etc.
 */
export const CLIENT_FLAGS: readonly string[] = [
  `--allow-run=${SSH_PATH},${CAT_PATH},${LOGGER_PATH}`,
  "-R",
  `-W=${[SPOOL_DIR, SPOOL_ROOT, ...CLIENT_ETC].join(",")}`,
  "-E",
  "-S=hostname,uid",
];

/**
 * The relay's launcher, before Deno in its first line: `env -S` clears the
 * environment (`-i`) and passes sshd's two variables under the names the
 * relay reads (`${…}` is expanded by env, the value never split or
 * interpreted).
 */
export const SERVER_LAUNCH: readonly string[] = [
  "-i",
  ...Object.entries(SERVER_ENV).map(([name, from]) => `${name}=\${${from}}`),
];

/**
 * Run flags that tune and never change what a program may do: the relay's
 * V8 heap kept small for a long batch session. Without it the young
 * generation grows to V8's default maximum: VmRSS +84% over 5 000 frames,
 * +9.5% with it, at the same throughput (issue 15, docs/benchmarks.md §6).
 * `deno task build` leaves it out, with a warning, where the shebang would
 * not fit (a deep checkout); packages and `deno compile` always carry it.
 */
export const SERVER_TUNING: readonly string[] = ["--v8-flags=--optimize-for-size"];

/** The two programs: entry point, output name, launcher words, tuning, permission flags. */
export const PROGRAMS = [
  {
    entry: "server.ts",
    name: "rsendmail",
    launch: SERVER_LAUNCH,
    tuning: SERVER_TUNING,
    flags: SERVER_FLAGS,
  },
  { entry: "client.ts", name: "sshsendmail", launch: [], tuning: [], flags: CLIENT_FLAGS },
] as const;

/** `deno run` flags every bundle carries besides its permissions (its shebang omits `run`). */
export const RUN_FLAGS: readonly string[] = ["-q", "--no-config", "--ext=js"];
