/**
 * How sshsendmail talks to the relay: the ssh argv, the quoted remote
 * command, and what an ssh failure means (for Postfix and for nullmailer).
 *
 * @module
 */

import type { ClientSettings } from "./client_config.ts";
import { EX_TEMPFAIL, isSysexit } from "../shared/exit_codes.ts";
import type { SendmailRequest } from "../shared/sendmail_args.ts";
import { encodeCommand } from "../shared/request_codec.ts";
import { NULLMAILER_FROM_SYSEXIT } from "./exit_policy.ts";
import type { BatchReply } from "../shared/batch.ts";

/**
 * The ssh argv for one relay. The channel is made safe and 8-bit clean: no
 * tty, no escape character, no agent or X11 forwarding, no prompts, a
 * connect timeout and keepalives. The remote command is one string of
 * quoted words; `--` keeps the host from ever being read as an option.
 */
export function sshArgv(
  sshPath: string,
  settings: ClientSettings,
  host: string,
  remote: string,
  controlPath?: string,
): string[] {
  const argv = [
    sshPath,
    "-T",
    "-e",
    "none",
    "-a",
    "-x",
    "-o",
    "BatchMode=yes",
    "-o",
    `ConnectTimeout=${settings.connectTimeout}`,
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=4",
    "-o",
    "ClearAllForwardings=yes",
  ];
  // ssh takes the first value of an option: an ssh_option LogLevel (e.g.
  // DEBUG3, to see what ssh does) replaces the quiet default.
  if (!settings.sshOptions.some((o) => /^loglevel=/i.test(o))) argv.push("-o", "LogLevel=ERROR");
  if (settings.port !== undefined) argv.push("-p", String(settings.port));
  if (settings.user !== undefined) argv.push("-l", settings.user);
  if (settings.identity !== undefined) {
    argv.push("-i", settings.identity, "-o", "IdentitiesOnly=yes");
  }
  if (settings.knownHosts !== undefined) {
    argv.push("-o", `UserKnownHostsFile=${settings.knownHosts}`);
  }
  if (controlPath !== undefined) {
    argv.push(
      "-o",
      "ControlMaster=auto",
      "-o",
      `ControlPath=${controlPath}`,
      "-o",
      "ControlPersist=60",
    );
  }
  for (const o of settings.sshOptions) argv.push("-o", o);
  argv.push("--", host, remote);
  return argv;
}

/**
 * The remote command for an upstream 1.1.4 relay (`integrity = no`):
 * `rsendmail -oi [-f S] [-t] -- RCPT…`, every word quoted for both the
 * relay's tokenizer and a POSIX shell. (Our relay gets its requests as
 * batch frames, with their size, SHA-256 and id.)
 */
export function remoteCommand(settings: ClientSettings, req: SendmailRequest): string {
  return encodeCommand(settings.relayCommand, req);
}

/** Why a send did not succeed, and what each caller makes of it. */
export interface Failure {
  /** One line for the caller (starts with an enhanced status code). */
  line: string;
  /** Exit code for Postfix pipe(8) and plain sendmail callers. */
  sysexit: number;
  /** Exit code for nullmailer (bit 32 = permanent). */
  nullmailer: number;
  /** True when the relay was never reached: try the next relay. */
  connectPhase: boolean;
}

/** ssh's own failures, recognised by its stderr. */
const SSH_FAILURES: ReadonlyArray<{
  pattern: RegExp;
  status: string;
  text: string;
  nullmailer: number;
}> = [
  {
    pattern:
      /Could not resolve hostname|Name or service not known|Temporary failure in name resolution/i,
    status: "4.4.3",
    text: "cannot resolve the relay's host name",
    nullmailer: 2,
  },
  {
    pattern: /Connection refused/i,
    status: "4.4.1",
    text: "connection refused by the relay",
    nullmailer: 7,
  },
  {
    pattern: /timed out/i,
    status: "4.4.1",
    text: "connection to the relay timed out",
    nullmailer: 8,
  },
  {
    pattern: /No route to host|Network is unreachable/i,
    status: "4.4.1",
    text: "relay unreachable",
    nullmailer: 9,
  },
  {
    pattern:
      /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key .* not known/i,
    status: "4.7.0",
    text: "relay host key verification failed (check known_hosts)",
    nullmailer: 10,
  },
  {
    pattern: /Permission denied|Too many authentication failures|no such identity|Load key .*: /i,
    status: "4.7.0",
    text: "authentication refused by the relay (check the key and authorized_keys)",
    nullmailer: 20,
  },
];
/** A relay's public line: `5.5.4 rsendmail: …`. */
const STATUS_LINE_REGEXP = /^[245]\.\d{1,3}\.\d{1,3} \S.*$/;
const CONNECTION_CLOSED_REGEXP = /Connection (closed|reset)|Broken pipe|lost connection/i;

/** Peer text made safe to show: no control, format (bidi) or line-separator character. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e\u00a0-\uffff]/g, "?").replace(/[\p{Cf}\p{Zl}\p{Zp}]/gu, "?")
    .slice(0, 300);
}

/**
 * Classifies ssh's exit code and stderr. `undefined` means success.
 *
 * ssh exits 255 for its own failures (never a bounce: EX_TEMPFAIL), 127 when
 * the relay lacks the program, and otherwise with the relay's own code, which
 * passes through (a non-sysexits code becomes EX_TEMPFAIL: Postfix would
 * bounce it).
 */
export function classifyExit(
  code: number,
  stderr: string,
  program: string,
): Failure | undefined {
  if (code === 0) return undefined;
  const lines = stderr.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  if (code === 255) {
    for (const f of SSH_FAILURES) {
      if (lines.some((l) => f.pattern.test(l))) {
        return {
          line: `${f.status} ${program}: ${f.text}`,
          sysexit: EX_TEMPFAIL,
          nullmailer: f.nullmailer,
          connectPhase: true,
        };
      }
    }
    const closed = lines.some((l) => CONNECTION_CLOSED_REGEXP.test(l));
    return {
      line: `4.4.2 ${program}: ${
        closed
          ? "connection to the relay lost"
          : `ssh failed${lines[0] ? `: ${printable(lines[0])}` : ""}`
      }`,
      sysexit: EX_TEMPFAIL,
      nullmailer: 10,
      connectPhase: false,
    };
  }
  if (code === 127 || code === 126) {
    return {
      line: `4.3.5 ${program}: relay program not found or not executable on the relay`,
      sysexit: EX_TEMPFAIL,
      nullmailer: 15,
      connectPhase: false,
    };
  }
  const relayLine = lines.find((l) => STATUS_LINE_REGEXP.test(l));
  const sysexit = isSysexit(code) ? code : EX_TEMPFAIL;
  return {
    line: relayLine
      ? printable(relayLine)
      : `${sysexit === EX_TEMPFAIL ? "4.3.0" : "5.3.0"} ${program}: relay failed (exit ${code})`,
    sysexit,
    nullmailer: NULLMAILER_FROM_SYSEXIT[sysexit] ?? 16,
    connectPhase: false,
  };
}

/**
 * The relay's batch reply to one message as the same failure its exit code
 * and status line would give on a single send; `undefined` when delivered
 * (or already delivered).
 *
 * @example
 * ```ts
 * import { equal } from "node:assert/strict";
 * import { classifyExit, failureOfReply } from "./ssh_command.ts";
 * const reply = { id: "m1", code: 67, status: "5.1.1", text: "rsendmail: no such user" };
 * equal(
 *   JSON.stringify(failureOfReply(reply)),
 *   JSON.stringify(classifyExit(67, "5.1.1 rsendmail: no such user\n", "sshsendmail")),
 * );
 * equal(failureOfReply({ ...reply, code: 0, status: "2.0.0", text: "delivered" }), undefined);
 * // A session-level answer ("-"): the relay took nothing, the mail waits.
 * equal(failureOfReply({ ...reply, id: "-", code: 76, status: "5.5.2" })?.sysexit, 75);
 * ```
 */
export function failureOfReply(reply: BatchReply): Failure | undefined {
  if (reply.code === 0) return undefined;
  if (reply.id === "-") {
    // The session broke before the relay took the frame (our frame arrived
    // damaged, or a session limit): nothing was delivered, the mail waits.
    return {
      line: printable(`${reply.status.replace(/^5/, "4")} ${reply.text}`),
      sysexit: EX_TEMPFAIL,
      nullmailer: 16,
      connectPhase: false,
    };
  }
  const sysexit = isSysexit(reply.code) ? reply.code : EX_TEMPFAIL;
  return {
    line: printable(`${reply.status} ${reply.text}`),
    sysexit,
    nullmailer: NULLMAILER_FROM_SYSEXIT[sysexit] ?? 16,
    connectPhase: false,
  };
}
