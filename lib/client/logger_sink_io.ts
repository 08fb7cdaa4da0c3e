/**
 * The satellite service's log sink: one long-lived logger(1) reading lines
 * with a `<PRI>` prefix on its stdin, writing them to /dev/log; stderr when
 * logger cannot be started or dies. Effectful edge module.
 *
 * @module
 */

import { formatLogLine } from "../shared/log_line.ts";
import { mailPriority, type ServiceLog } from "./service_context.ts";

/** A log sink through one long-lived logger(1) reading lines with a `<PRI>` prefix. */
export function loggerSink(loggerPath: string, tag: string, pid: number): {
  log: ServiceLog;
  close(): Promise<void>;
} {
  let child: Deno.ChildProcess | undefined;
  let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  let broken = false;
  const encoder = new TextEncoder();
  const fallback = (line: string) => {
    try {
      Deno.stderr.writeSync(encoder.encode(`${tag}: ${line}\n`));
    } catch { /* nowhere to log */ }
  };
  const start = () => {
    try {
      child = spawnLogger(loggerPath, tag, pid);
      writer = child.stdin.getWriter();
      child.status.then(() => {
        broken = true;
      });
    } catch {
      broken = true;
    }
  };
  let chain = Promise.resolve();
  return {
    log(severity, fields) {
      const line = formatLogLine(fields);
      if (!child && !broken) start();
      if (broken || !writer) {
        fallback(line);
        return;
      }
      const w = writer;
      chain = chain.then(() =>
        w.write(encoder.encode(`<${mailPriority(severity)}>${line}\n`)).catch(() => {
          broken = true;
          fallback(line);
        })
      );
    },
    async close() {
      await chain;
      await writer?.close().catch(() => {});
      if (child) await child.status;
    },
  };
}

/** logger(1) reading `<PRI>`-prefixed lines on its stdin, to /dev/log. */
function spawnLogger(loggerPath: string, tag: string, pid: number): Deno.ChildProcess {
  return new Deno.Command(loggerPath, {
    args: [
      `--id=${pid}`,
      "-t",
      tag,
      "--prio-prefix",
      "-u",
      "/dev/log",
      "--socket-errors=off",
      "-S",
      "4096",
    ],
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", LANG: "C" },
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
}
