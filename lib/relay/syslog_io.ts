/**
 * The relay's syslog sink: one line per request, facility mail, written by
 * util-linux logger(1) (Essential in Debian, so always there). Effectful
 * edge module.
 *
 * Why logger and not a datagram from Deno: Deno grants no access to a path
 * under /dev (such as /dev/log) short of --allow-all, and its datagram API
 * can only send from a socket bound to a fixed, granted path that any local
 * user could squat. logger costs one more --allow-run entry and ~2 ms.
 *
 * No socket, a syslogd that stops reading, or any other error means no log
 * and no noise: logging never fails or delays a delivery past 250 ms.
 *
 * A line is handed over, not waited for: `log` returns once logger(1) runs
 * with the line in its argv, `logMany` once the lines are written into its
 * stdin, so the relay may exit at once (logger, a child of its own, sends
 * them and ends; while the relay lives, it is killed after 250 ms).
 *
 * @module
 */

import { LOG_LEVELS, type LogLevel } from "../shared/relay_config.ts";

/** syslog facility mail. */
const FACILITY_MAIL = 2;

/** How long logger may take, e.g. on a full syslog socket. */
const LOGGER_TIMEOUT_MS = 250;
/** logger's maximum message size (its default, 1 KiB, would cut fields). */
const MAX_LINE = 4096;

/** Where log lines go. */
export interface LogSink {
  /**
   * Hands one line at `level` (if the sink's threshold lets it through) to
   * logger(1); resolves once logger runs with it, without waiting for it.
   */
  log(level: LogLevel, line: string): Promise<void>;
  /**
   * Hands many lines to one logger(1) process (batch mode); resolves once
   * they are in its stdin, and also waits for it to end unless `detach`.
   */
  logMany(
    entries: ReadonlyArray<{ level: LogLevel; line: string }>,
    options?: { detach?: boolean },
  ): Promise<void>;
  /**
   * Starts logger(1) now, for one line written later (the relay's one
   * message: logger starts while sendmail runs, so the line costs no
   * process start after it), when a line at `expected` would pass the
   * threshold; undefined, and no process, when it would not (a line at
   * another level then goes by `log`). The returned `log` writes the line
   * (if the threshold lets it through) into logger's stdin and closes it;
   * a second call, or none, logs nothing more.
   */
  early(expected: LogLevel): { log(level: LogLevel, line: string): Promise<void> } | undefined;
}

/** Options of the logger sink. */
export interface SyslogOptions {
  /** Absolute path of logger(1). */
  logger: string;
  /** The syslog socket, e.g. /dev/log. */
  socket: string;
  tag: string;
  pid: number;
}

/**
 * The logger argv for one line: the line is one argument after `--`, so no
 * peer text can become an option, and it was sanitised (no CR/LF) before.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { loggerArgv } from "./syslog_io.ts";
 * deepStrictEqual(
 *   loggerArgv({ logger: "/usr/bin/logger", socket: "/dev/log", tag: "rsendmail", pid: 7 }, "info", "event=sent"),
 *   ["/usr/bin/logger", "--id=7", "-t", "rsendmail", "-p", "mail.info", "-u", "/dev/log",
 *    "--socket-errors=off", "-S", "4096", "--", "event=sent"],
 * );
 * ```
 */
export function loggerArgv(options: SyslogOptions, level: LogLevel, line: string): string[] {
  return [
    options.logger,
    `--id=${options.pid}`,
    "-t",
    options.tag,
    "-p",
    `mail.${level}`,
    "-u",
    options.socket,
    "--socket-errors=off",
    "-S",
    String(MAX_LINE),
    "--",
    line,
  ];
}

/** Creates a sink that hands each line to logger(1), below `threshold` only. */
export function createSyslog(
  options: SyslogOptions,
  threshold: (level: LogLevel) => boolean,
): LogSink {
  return {
    log(level, line) {
      if (!threshold(level)) return Promise.resolve();
      const [program, ...args] = loggerArgv(options, level, line);
      try {
        // Spawned means exec'd: the line is in logger's argv. Its status is
        // not awaited (Deno reaps the child); the signal kills a hung one.
        new Deno.Command(program!, {
          args,
          clearEnv: true,
          env: { LANG: "C" },
          stdin: "null",
          stdout: "null",
          stderr: "null",
          signal: AbortSignal.timeout(LOGGER_TIMEOUT_MS),
        }).spawn();
      } catch {
        // No logger, not permitted: no log.
      }
      return Promise.resolve();
    },
    early(expected) {
      if (!threshold(expected)) return undefined;
      let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
      try {
        writer = spawnPrefixed(options).stdin.getWriter();
      } catch {
        // No logger, not permitted: no log.
      }
      return {
        async log(level, line) {
          const w = writer;
          writer = undefined;
          if (!w) return;
          try {
            if (threshold(level)) await w.write(new TextEncoder().encode(prefixed(level, line)));
            await w.close();
          } catch {
            // logger is gone: no log, never a failed delivery.
          }
        },
      };
    },
    async logMany(entries, how = {}) {
      const wanted = entries.filter((e) => threshold(e.level));
      if (wanted.length === 0) return;
      // One process for the lot: each stdin line carries its own <PRI>.
      try {
        const child = spawnPrefixed(options, AbortSignal.timeout(LOGGER_TIMEOUT_MS * 4));
        const text = wanted.map((e) => prefixed(e.level, e.line)).join("");
        const writer = child.stdin.getWriter();
        await writer.write(new TextEncoder().encode(text)).catch(() => {});
        await writer.close().catch(() => {});
        if (!how.detach) await child.status;
      } catch {
        // As for one line: no log, never a failed delivery.
      }
    },
  };
}

/** A stdin line for `logger --prio-prefix`: its own facility and severity first. */
function prefixed(level: LogLevel, line: string): string {
  return `<${FACILITY_MAIL * 8 + LOG_LEVELS[level]}>${line}\n`;
}

/** Starts logger(1) reading `<PRI>`-prefixed lines from its stdin. */
function spawnPrefixed(options: SyslogOptions, signal?: AbortSignal): Deno.ChildProcess {
  const [program, ...args] = loggerArgv(options, "info", "").slice(0, -2);
  return new Deno.Command(program!, {
    args: [...args, "--prio-prefix"],
    clearEnv: true,
    env: { LANG: "C" },
    stdin: "piped",
    stdout: "null",
    stderr: "null",
    ...(signal === undefined ? {} : { signal }),
  }).spawn();
}
