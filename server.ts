/**
 * rsendmail: the relay side. Runs as an SSH forced command, accepts only
 * "send this message" requests (one, or a batch of them), and hands each
 * message to the real sendmail with an argv it rebuilds itself. See
 * rsendmail(8) in README.md.
 *
 * This is an edge module: it alone reads Deno.args and the environment and
 * calls Deno.exit. One request is admitted and sent by
 * lib/relay/session_io.ts; a batch is read and answered by
 * lib/relay/batch_io.ts.
 *
 * @module
 */

import { isBatchRequest } from "./lib/shared/batch.ts";
import { MailError, TempError, toMailError, UsageError } from "./lib/shared/errors.ts";
import { type Limits, openLimits } from "./lib/relay/limits_io.ts";
import { EX_OK, EX_TEMPFAIL, isTemporary } from "./lib/shared/exit_codes.ts";
import { LOGGER_PATH, RELAY_PROGRAM, SERVER_ENV } from "./lib/shared/layout.ts";
import { batch } from "./lib/relay/batch_io.ts";
import { admit, elapsed, openRecord } from "./lib/relay/session_io.ts";
import { formatLogLine, type LogFields } from "./lib/shared/log_line.ts";
import {
  adminError,
  DEFAULT_CONFIG,
  LOG_LEVELS,
  type LogLevel,
  parseAdminArgs,
  type RelayConfig,
} from "./lib/shared/relay_config.ts";
import { parseSendmailArgs } from "./lib/shared/sendmail_args.ts";
import { createSyslog } from "./lib/relay/syslog_io.ts";
import { hasControl, tokenizeWords } from "./lib/shared/words.ts";

const PROGRAM = RELAY_PROGRAM;
/** The release, shared with sshsendmail. */
export const VERSION = "0.2.0";
const USAGE =
  `usage: rsendmail [--sendmail PATH] [--allow-sender ADDR|@DOMAIN]... [--max-size BYTES]
                 [--max-recipients N] [--label NAME] [--require-integrity]
                 [--log-level LEVEL] [--idle-timeout S] [--sendmail-timeout S]
                 [--state-dir DIR] [--dedup-days N] [--syslog-socket PATH]
                 [--max-messages N/PERIOD] [--max-sessions N] [--allow-header-sender]
                 [--message-timeout S] [--session-timeout S] [--min-rate BYTES]
                 [--parallel N]
Runs as an SSH forced command: restrict,command="rsendmail --label NAME ..." KEY
The request comes from SSH_ORIGINAL_COMMAND and may only send mail.
See rsendmail(8).
`;
/** Batch mode writes its log lines in groups of this many. */
const BATCH_LOG_LINES = 100;

/** Finds the request words: SSH_ORIGINAL_COMMAND, else argv after the admin options. */
function requestWords(rest: string[], original: string | undefined): string[] {
  if (original !== undefined) {
    if (rest.length > 0) {
      throw adminError("forced command holds words that are not admin options");
    }
    if (original.trim() === "") {
      throw new UsageError("no request: this key only sends mail", "5.5.1");
    }
    return tokenizeWords(original);
  }
  if (rest.length === 0) throw new UsageError("no request: this key only sends mail", "5.5.1");
  if (rest.some(hasControl)) throw new UsageError("control character in request", "5.5.2");
  return [PROGRAM, ...rest];
}

/**
 * One of sshd's variables, under the name the launcher gave it
 * (R = SSH_ORIGINAL_COMMAND, P = SSH_CONNECTION). The launcher sets
 * both, empty when sshd set none: empty is unset.
 */
function envOf(name: keyof typeof SERVER_ENV): string | undefined {
  const value = Deno.env.get(name);
  return value === "" ? undefined : value;
}

/**
 * SSH_ORIGINAL_COMMAND holds the peer's raw bytes; Deno refuses to decode
 * one that is not UTF-8 (InvalidData). That is the peer's malformed
 * request (64), not a relay fault to retry (75).
 */
function originalCommand(): string | undefined {
  try {
    return envOf("R");
  } catch (err) {
    if (err instanceof Deno.errors.InvalidData) {
      throw new UsageError("request is not valid UTF-8", "5.5.2");
    }
    throw err;
  }
}

/**
 * Opens the key's limits (`--max-sessions`, `--max-messages`), when it has
 * any, and counts this session in; `end` ends it.
 */
async function enterSession(
  config: RelayConfig,
): Promise<{ limits: Limits | undefined; end: () => Promise<void> }> {
  const none = async () => {};
  if (config.maxSessions === 0 && config.maxMessages === undefined) {
    return { limits: undefined, end: none };
  }
  const limits = await openLimits(config.stateDir, config.label);
  if (!limits) throw new TempError("relay state directory unusable", "4.3.0");
  if (config.maxSessions === 0) return { limits, end: none };
  const session = await limits.enterSession(config.maxSessions);
  if (session === "busy") {
    throw new MailError("too many concurrent sessions for this key", {
      exitCode: EX_TEMPFAIL,
      status: "4.7.0",
    });
  }
  return { limits, end: session.end };
}

/** One message on stdin. */
async function single(
  config: RelayConfig,
  limits: Limits | undefined,
  words: string[],
  fields: LogFields,
): Promise<void> {
  const req = parseSendmailArgs(words);
  const record = req.id === undefined ? undefined : await openRecord(config);
  // logger(1) starts while sendmail works on the message (not before it has
  // it all): the line after it costs no process start. A level that drops
  // the "sent" line (`--log-level warning`) starts none.
  const onSendmail = () => earlyLog = sink(config).early("info");
  const session = { config, record, shortLived: true, onSendmail, limits };
  const admitted = await admit(session, req, Deno.stdin, fields);
  if (admitted.kind === "ready") await admitted.finish();
}

/**
 * `--help` and `--version` answer only a local admin: never a peer (whose
 * session sets SSH_CONNECTION), so no help text ever reaches the network.
 */
async function localInfo(): Promise<boolean> {
  const arg = Deno.args.length === 1 ? Deno.args[0] : undefined;
  if (arg !== "--help" && arg !== "--version") return false;
  if (envOf("P") !== undefined) return false;
  if (envOf("R") !== undefined) return false;
  await Deno.stdout.write(
    new TextEncoder().encode(arg === "--help" ? USAGE : `${PROGRAM} ${VERSION}\n`),
  );
  return true;
}

async function main(): Promise<number> {
  if (await localInfo()) return EX_OK;
  const started = performance.now();
  let config: RelayConfig = DEFAULT_CONFIG;
  const fields: LogFields = { event: "sent" };
  try {
    const admin = parseAdminArgs(Deno.args);
    config = admin.config;
    fields.label = config.label || undefined;
    fields.client = envOf("P")?.split(" ")[0];
    const words = requestWords(admin.rest, originalCommand());
    const entered = await enterSession(config);
    try {
      return await serve(config, entered.limits, words, fields, started);
    } finally {
      await entered.end();
    }
  } catch (err) {
    const error = toMailError(err);
    await log(config, isTemporary(error.exitCode) ? "err" : "warning", {
      ...fields,
      event: isTemporary(error.exitCode) ? "deferred" : "refused",
      exit: error.exitCode,
      reason: error.message,
      detail: error.detail || undefined,
      ms: elapsed(started),
    });
    await Deno.stderr.write(new TextEncoder().encode(`${error.publicLine(PROGRAM)}\n`));
    return error.exitCode;
  }
}

/** One session: a batch, or one message. */
async function serve(
  config: RelayConfig,
  limits: Limits | undefined,
  words: string[],
  fields: LogFields,
  started: number,
): Promise<number> {
  {
    if (isBatchRequest(words)) {
      const { event: _, ...base } = fields;
      // One logger(1) for every BATCH_LOG_LINES frames instead of one per frame.
      const pending: { level: "info" | "warning" | "err"; line: string }[] = [];
      const flushLogs = (detach = false) => sink(config).logMany(pending.splice(0), { detach });
      try {
        return await batch(config, base, async (level, f) => {
          pending.push({ level, line: formatLogLine(f) });
          if (pending.length >= BATCH_LOG_LINES) await flushLogs();
        }, limits);
      } finally {
        // The last lines are in logger's stdin: the relay need not wait for it.
        await flushLogs(true);
      }
    }
    await single(config, limits, words, fields);
    await log(config, "info", { ...fields, exit: EX_OK, ms: elapsed(started) });
    return EX_OK;
  }
}

function sink(config: RelayConfig) {
  return createSyslog(
    { logger: LOGGER_PATH, socket: config.syslogSocket, tag: PROGRAM, pid: Deno.pid },
    (l) => LOG_LEVELS[l] <= LOG_LEVELS[config.logLevel],
  );
}

/** A logger(1) started ahead for the single message's one line (see {@link single}). */
let earlyLog: { log(level: LogLevel, line: string): Promise<void> } | undefined;

function log(config: RelayConfig, level: "info" | "warning" | "err", fields: LogFields) {
  return (earlyLog ?? sink(config)).log(level, formatLogLine(fields));
}

if (import.meta.main) {
  // A stray rejection must still end in one line and a deferral, never a stack.
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    Deno.stderr.writeSync(new TextEncoder().encode(`4.3.0 ${PROGRAM}: internal error\n`));
    Deno.exit(EX_TEMPFAIL);
  });
  Deno.exit(await main());
}
