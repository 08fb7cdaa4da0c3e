/**
 * rsendmail: the relay side. Runs as an SSH forced command, accepts only
 * "send this message" requests, and hands each message to the real sendmail
 * with an argv it rebuilds itself. See rsendmail(8) in README.md.
 *
 * This is an edge module: it alone reads Deno.args, the environment and
 * stdin, and calls Deno.exit.
 *
 * @module
 */

import { MailError, toMailError, UsageError } from "./lib/errors.ts";
import { EX_OK, EX_TEMPFAIL, fromSendmailStatus, isTemporary } from "./lib/exit_codes.ts";
import { LOGGER_PATH } from "./lib/layout.ts";
import { formatLogLine, type LogFields } from "./lib/log_line.ts";
import { runWithSpool, spoolMessage } from "./lib/pipeline.ts";
import {
  checkPolicy,
  ConfigError,
  DEFAULT_CONFIG,
  LOG_LEVELS,
  parseAdminArgs,
  type RelayConfig,
} from "./lib/relay_config.ts";
import { parseSendmailArgs, type SendmailRequest, toSendmailArgv } from "./lib/sendmail_args.ts";
import { hasControl, tokenizeWords } from "./lib/words.ts";
import { createSyslog } from "./lib/syslog.ts";

const PROGRAM = "rsendmail";

/** Finds the request words: SSH_ORIGINAL_COMMAND, else argv after the admin options. */
function requestWords(rest: string[], original: string | undefined): string[] {
  if (original !== undefined) {
    if (rest.length > 0) {
      throw new ConfigError("forced command holds words that are not admin options");
    }
    if (original.trim() === "") throw new UsageError("no request: this key only sends mail", "5.5.1");
    return tokenizeWords(original);
  }
  if (rest.length === 0) throw new UsageError("no request: this key only sends mail", "5.5.1");
  if (rest.some(hasControl)) throw new UsageError("control character in request", "5.5.2");
  return [PROGRAM, ...rest];
}

async function deliver(
  config: RelayConfig,
  req: SendmailRequest,
  fields: LogFields,
): Promise<number> {
  const spool = await spoolMessage(Deno.stdin, {
    dir: config.spoolDir,
    maxSize: config.maxSize,
    idleTimeoutMs: config.idleTimeoutMs,
    declaredSize: req.size,
  });
  fields.size = spool.size;
  fields.sha256 = spool.sha256.slice(0, 12);
  if (req.size !== undefined && spool.size !== req.size) {
    throw new MailError(EX_TEMPFAIL, "4.4.2", "message truncated in transit");
  }
  if (req.sha256 !== undefined && spool.sha256 !== req.sha256) {
    throw new MailError(65, "5.6.0", "message does not match its SHA-256");
  }
  const result = await runWithSpool(toSendmailArgv(config.sendmail, req), spool, {
    timeoutMs: config.sendmailTimeoutMs,
  });
  if (result.code === EX_OK) return EX_OK;
  fields.sendmail = result.timedOut ? "timeout" : result.signal ?? result.code;
  if (result.stderr) fields.stderr = result.stderr.trim();
  if (result.code === undefined) {
    throw new MailError(
      EX_TEMPFAIL,
      "4.3.0",
      result.timedOut ? "sendmail timed out" : "sendmail was killed",
    );
  }
  const code = fromSendmailStatus(result.code);
  throw new MailError(
    code,
    isTemporary(code) ? "4.3.0" : "5.3.0",
    `sendmail failed (exit ${result.code})`,
  );
}

async function main(): Promise<number> {
  const started = performance.now();
  let config: RelayConfig = DEFAULT_CONFIG;
  const fields: LogFields = {};
  try {
    const admin = parseAdminArgs(Deno.args);
    config = admin.config;
    fields.label = config.label || undefined;
    fields.client = Deno.env.get("SSH_CONNECTION")?.split(" ")[0];
    const req = parseSendmailArgs(
      requestWords(admin.rest, Deno.env.get("SSH_ORIGINAL_COMMAND")),
    );
    fields.sender = req.sender === undefined ? undefined : `<${req.sender}>`;
    fields.rcpts = req.recipients.length;
    if (req.extractRecipients) fields.t = true;
    checkPolicy(req, config);
    await deliver(config, req, fields);
    await log(config, "info", { event: "sent", ...fields, exit: EX_OK, ms: elapsed(started) });
    return EX_OK;
  } catch (err) {
    const error = toMailError(err);
    await log(config, isTemporary(error.exitCode) ? "err" : "warning", {
      event: isTemporary(error.exitCode) ? "deferred" : "refused",
      ...fields,
      exit: error.exitCode,
      reason: error.message,
      detail: error.detail || undefined,
      ms: elapsed(started),
    });
    await Deno.stderr.write(new TextEncoder().encode(`${error.publicLine(PROGRAM)}\n`));
    return error.exitCode;
  }
}

function elapsed(since: number): number {
  return Math.round(performance.now() - since);
}

function log(config: RelayConfig, level: "info" | "warning" | "err", fields: LogFields) {
  const sink = createSyslog(
    { logger: LOGGER_PATH, socket: config.syslogSocket, tag: PROGRAM, pid: Deno.pid },
    (level) => LOG_LEVELS[level] <= LOG_LEVELS[config.logLevel],
  );
  return sink.log(level, formatLogLine(fields));
}

if (import.meta.main) {
  // A stray rejection must still end in one line and a deferral, never a stack.
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    Deno.exit(EX_TEMPFAIL);
  });
  Deno.exit(await main());
}
