/**
 * A syslog sink writing RFC 3164 datagrams to a local socket (/dev/log),
 * facility mail. Effectful edge module.
 *
 * Permission cost: `--unstable-net` and `--allow-net=unix:SOCKET,unix:BIND`
 * (Deno can send a datagram only from a bound socket, so the relay binds a
 * fixed path under the spool directory, sends, and unlinks it). No socket, or
 * any error, means no log and no noise: logging never fails a delivery.
 *
 * @module
 */

import { LOG_LEVELS, type LogLevel } from "./relay_config.ts";

const MONTHS = [
  "Jan", "Feb", "Mar", "Apr", "May", "Jun",
  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
/** How long a log line may wait on a full syslog socket. */
const SEND_TIMEOUT_MS = 250;
/** syslog facility mail. */
const FACILITY_MAIL = 2;

/** Where log lines go. */
export interface LogSink {
  /** Sends one line at `level` (if the sink's threshold lets it through). */
  log(level: LogLevel, line: string): Promise<void>;
}

/** Formats an RFC 3164 datagram as the local syslog socket expects it. */
export function formatSyslog(
  level: LogLevel,
  tag: string,
  pid: number,
  line: string,
  now: Date,
): string {
  const pri = FACILITY_MAIL * 8 + LOG_LEVELS[level];
  const day = String(now.getDate()).padStart(2, " ");
  const time = now.toTimeString().slice(0, 8);
  return `<${pri}>${MONTHS[now.getMonth()]} ${day} ${time} ${tag}[${pid}]: ${line}`;
}

/** How often to retry a bind that another relay's bind beat. */
const BIND_ATTEMPTS = 8;

/**
 * Binds `path`, which every concurrent relay binds too (the permission
 * names one fixed path): when another relay bound it between our unlink and
 * our bind (AddrInUse), unlink and try again. The loser's log line was lost
 * otherwise (measured: 1 in 4 with 40 concurrent relays). Unlinking a path
 * another relay has bound does not stop that relay from sending.
 */
async function bindShared(path: string): Promise<Deno.DatagramConn> {
  for (let attempt = 1;; attempt++) {
    try {
      await Deno.remove(path);
    } catch { /* not there: the usual case */ }
    try {
      return Deno.listenDatagram({ path, transport: "unixpacket" });
    } catch (err) {
      if (!(err instanceof Deno.errors.AddrInUse) || attempt >= BIND_ATTEMPTS) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 4));
    }
  }
}

/** Options of the datagram sink. */
export interface SyslogOptions {
  socket: string;
  bind: string;
  tag: string;
  threshold: LogLevel;
}

/** Creates a sink that sends each line as a datagram to `socket`. */
export function createSyslog(options: SyslogOptions): LogSink {
  return {
    async log(level, line) {
      if (LOG_LEVELS[level] > LOG_LEVELS[options.threshold]) return;
      const data = new TextEncoder().encode(
        formatSyslog(level, options.tag, Deno.pid, line, new Date()),
      );
      let conn: Deno.DatagramConn | undefined;
      try {
        conn = await bindShared(options.bind);
        // A syslogd that stops reading must not hold up the relay.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          conn.send(data, { path: options.socket, transport: "unixpacket" }),
          new Promise((resolve) => (timer = setTimeout(resolve, SEND_TIMEOUT_MS))),
        ]);
        clearTimeout(timer);
      } catch {
        // No syslog, a full socket buffer or a foreign bind path: no log.
      } finally {
        conn?.close();
        try {
          await Deno.remove(options.bind);
        } catch { /* already gone */ }
      }
    },
  };
}
