/**
 * rsendmail: the relay side. Runs as an SSH forced command, accepts only
 * "send this message" requests (one, or a batch of them), and hands each
 * message to the real sendmail with an argv it rebuilds itself. See
 * rsendmail(8) in README.md.
 *
 * This is an edge module: it alone reads Deno.args, the environment, stdin
 * and stdout, and calls Deno.exit.
 *
 * @module
 */

import {
  formatReply,
  frameWords,
  isBatchRequest,
  MAX_FRAME_HEADER,
  MAX_FRAMES,
} from "./lib/shared/batch.ts";
import { type DeliveryRecord, openDeliveryRecord } from "./lib/relay/dedup_io.ts";
import {
  DataError,
  MailError,
  PolicyError,
  TempError,
  toMailError,
  UsageError,
} from "./lib/shared/errors.ts";
import { headerSenders } from "./lib/relay/header_senders.ts";
import { type Limits, openLimits } from "./lib/relay/limits_io.ts";
import { countHeaderRecipients } from "./lib/relay/header_recipients.ts";
import {
  EX_DATAERR,
  EX_OK,
  EX_PROTOCOL,
  EX_TEMPFAIL,
  EX_USAGE,
  fromSendmailStatus,
  isTemporary,
} from "./lib/shared/exit_codes.ts";
import { drain, FramedReader } from "./lib/shared/framed_reader.ts";
import { LOGGER_PATH, SERVER_ENV } from "./lib/shared/layout.ts";
import { formatLogLine, type LogFields } from "./lib/shared/log_line.ts";
import {
  type ByteReader,
  runWithSpool,
  type Spooled,
  spoolMessage,
} from "./lib/shared/pipeline_io.ts";
import {
  adminError,
  checkPolicy,
  DEFAULT_CONFIG,
  isSenderAllowed,
  LOG_LEVELS,
  parseAdminArgs,
  type RelayConfig,
} from "./lib/shared/relay_config.ts";
import {
  parseSendmailArgs,
  type SendmailRequest,
  SIZE_REGEXP,
  toSendmailArgv,
} from "./lib/shared/sendmail_args.ts";
import { createSyslog } from "./lib/relay/syslog_io.ts";
import { hasControl, tokenizeWords } from "./lib/shared/words.ts";

const PROGRAM = "rsendmail";
/** The release, shared with sshsendmail. */
export const VERSION = "0.2.0";
const USAGE =
  `usage: rsendmail [--sendmail PATH] [--allow-sender ADDR|@DOMAIN]... [--max-size BYTES]
                 [--max-recipients N] [--label NAME] [--require-integrity]
                 [--log-level LEVEL] [--idle-timeout S] [--sendmail-timeout S]
                 [--state-dir DIR] [--dedup-days N] [--syslog-socket PATH]
                 [--max-messages N/PERIOD] [--max-sessions N] [--allow-header-sender]
                 [--message-timeout S] [--session-timeout S] [--min-rate BYTES]
Runs as an SSH forced command: restrict,command="rsendmail --label NAME ..." KEY
The request comes from SSH_ORIGINAL_COMMAND and may only send mail.
See rsendmail(8).
`;
const DAY_MS = 86_400_000;
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
 * (REQ = SSH_ORIGINAL_COMMAND, PEER = SSH_CONNECTION). The launcher sets
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
    return envOf("REQ");
  } catch (err) {
    if (err instanceof Deno.errors.InvalidData) {
      throw new UsageError("request is not valid UTF-8", "5.5.2");
    }
    throw err;
  }
}

/** Reads the message, verifies it, runs sendmail. Throws a MailError unless delivered. */
async function deliver(
  config: RelayConfig,
  req: SendmailRequest,
  input: ByteReader,
  fields: LogFields,
): Promise<Spooled> {
  const spool = await spoolMessage(input, {
    dir: config.spoolDir,
    maxSize: config.maxSize,
    idleTimeoutMs: config.idleTimeoutMs,
    declaredSize: req.size,
    deadlineMs: config.messageTimeoutMs,
    minRate: config.minRate,
  });
  try {
    fields.size = spool.size;
    fields.sha256 = spool.sha256.slice(0, 12);
    if (req.size !== undefined && spool.size !== req.size) {
      throw new MailError("message truncated in transit", {
        exitCode: EX_TEMPFAIL,
        status: "4.4.2",
      });
    }
    if (req.sha256 !== undefined && spool.sha256 !== req.sha256) {
      throw new MailError("message does not match its SHA-256", {
        exitCode: EX_DATAERR,
        status: "5.6.0",
      });
    }
    if (req.extractRecipients) await checkHeaderRecipients(spool, req, config);
    if (config.allowHeaderSender) await checkHeaderSenders(spool, config);
    const undo = await reserveMessage(config);
    const result = await runWithSpool(toSendmailArgv(config.sendmail, req), spool, {
      timeoutMs: config.sendmailTimeoutMs,
    });
    if (result.code === EX_OK) return spool;
    await undo?.();
    fields.sendmail = result.timedOut ? "timeout" : result.signal ?? result.code;
    if (result.stderr) fields.stderr = result.stderr.trim();
    if (result.code === undefined) {
      throw new MailError(result.timedOut ? "sendmail timed out" : "sendmail was killed", {
        exitCode: EX_TEMPFAIL,
        status: "4.3.0",
      });
    }
    const code = fromSendmailStatus(result.code);
    throw new MailError(`sendmail failed (exit ${result.code})`, {
      exitCode: code,
      status: isTemporary(code) ? "4.3.0" : "5.3.0",
    });
  } finally {
    spool.file.close();
  }
}

/** How much of a -t message's head is read to count its header recipients. */
const HEAD_LIMIT = 1 << 20;

/** The first HEAD_LIMIT bytes of the spooled message. */
async function readHeadBytes(spool: Spooled): Promise<Uint8Array> {
  const head = new Uint8Array(Math.min(HEAD_LIMIT, spool.size));
  await spool.file.seek(0, Deno.SeekMode.Start);
  let got = 0;
  while (got < head.length) {
    const n = await spool.file.read(head.subarray(got));
    if (n === null) break;
    got += n;
  }
  return head.subarray(0, got);
}

/** The first HEAD_LIMIT bytes of the spooled message, as UTF-8 text. */
async function readHead(spool: Spooled): Promise<string> {
  return new TextDecoder().decode(await readHeadBytes(spool));
}

/** One character per byte (windows-1252 maps every byte): line lengths stay byte counts. */
const BYTES_AS_TEXT = new TextDecoder("latin1");

/**
 * With -t, Postfix's sendmail takes recipients from To/Cc/Bcc (or their
 * Resent- forms): the key's --max-recipients counts those too, before
 * sendmail runs, never fewer than Postfix extracts however the header is
 * spelt (lib/relay/header_recipients.ts; measured against Postfix by
 * tests/e2e/header_count_test.ts). Over the limit: 5.5.3, as for the
 * command line.
 *
 * A header section the count cannot be sure of is refused with 5.6.0
 * (exit 65): one that does not end within the first HEAD_LIMIT bytes
 * (Postfix would read on), one holding a NUL byte, or a From_ line as long
 * as Postfix's 2048-byte line record. Permanent, because sending the same
 * bytes again cannot succeed (a 4.x.x would keep the satellite retrying
 * for days); not "too many recipients", because that is not what was found.
 * No legitimate message has any of these.
 */
async function checkHeaderRecipients(
  spool: Spooled,
  req: SendmailRequest,
  config: RelayConfig,
): Promise<void> {
  const head = await readHeadBytes(spool);
  const text = BYTES_AS_TEXT.decode(head);
  const found = countHeaderRecipients(text, { complete: head.length === spool.size });
  if (found.kind === "uncountable") throw new DataError(found.reason, "5.6.0");
  if (req.recipients.length + found.count > config.maxRecipients) {
    throw new DataError("too many recipients", "5.5.3");
  }
}

/** The key's limits (`--max-sessions`, `--max-messages`), when it has any. */
let limits: Limits | undefined;

/** Opens the limits and counts this session in; the returned function ends it. */
async function enterSession(config: RelayConfig): Promise<() => Promise<void>> {
  if (config.maxSessions === 0 && config.maxMessages === undefined) return async () => {};
  limits = await openLimits(config.stateDir, config.label);
  if (!limits) throw new TempError("relay state directory unusable", "4.3.0");
  if (config.maxSessions === 0) return async () => {};
  const session = await limits.enterSession(config.maxSessions);
  if (session === "busy") {
    throw new MailError("too many concurrent sessions for this key", {
      exitCode: EX_TEMPFAIL,
      status: "4.7.0",
    });
  }
  return session.end;
}

/** Reserves the message in the key's rate window; the undo gives it back. */
async function reserveMessage(config: RelayConfig): Promise<(() => Promise<void>) | undefined> {
  if (config.maxMessages === undefined || !limits) return undefined;
  const undo = await limits.reserveMessage(config.maxMessages);
  if (undo === "limited") {
    throw new MailError("message rate limit reached for this key", {
      exitCode: EX_TEMPFAIL,
      status: "4.7.0",
    });
  }
  return undo;
}

/**
 * `--allow-header-sender`: every address in From: and Sender: must match
 * the key's --allow-sender list too (the message is spooled already, so
 * the check costs reading its head).
 */
async function checkHeaderSenders(spool: Spooled, config: RelayConfig): Promise<void> {
  const text = await readHead(spool);
  if (spool.size > HEAD_LIMIT && !/\r?\n\r?\n/.test(text)) {
    throw new DataError("header section too long", "5.6.0");
  }
  for (const address of headerSenders(text)) {
    if (!isSenderAllowed(address, config.allowSenders)) {
      throw new PolicyError("header sender not allowed for this key", "5.7.1");
    }
  }
}

function describe(req: SendmailRequest, fields: LogFields): void {
  fields.sender = req.sender === undefined ? undefined : `<${req.sender}>`;
  fields.rcpts = req.recipients.length;
  if (req.extractRecipients) fields.t = true;
  if (req.id !== undefined) fields.id = req.id;
}

/** True when the record says this exact message was delivered already. */
async function isDuplicate(
  record: DeliveryRecord | undefined,
  req: SendmailRequest,
): Promise<boolean> {
  return record !== undefined && req.id !== undefined && req.sha256 !== undefined &&
    await record.has(req.id, req.sha256);
}

/**
 * One request, whichever way it came (alone on stdin, or a batch frame):
 * policy, the id's delivery lock, the duplicate check, delivery, the
 * record. Returns "duplicate" when the relay had delivered it already.
 */
async function handleRequest(
  config: RelayConfig,
  req: SendmailRequest,
  input: ByteReader,
  fields: LogFields,
  record: DeliveryRecord | undefined,
): Promise<"delivered" | "duplicate"> {
  describe(req, fields);
  checkPolicy(req, config);
  const release = record && req.id ? await record.claim(req.id) : undefined;
  try {
    if (await isDuplicate(record, req)) {
      fields.event = "duplicate";
      return "duplicate";
    }
    const spool = await deliver(config, req, input, fields);
    if (req.id !== undefined) await record?.add(req.id, spool.sha256);
    return "delivered";
  } finally {
    await release?.();
  }
}

/** One message on stdin. */
async function single(config: RelayConfig, words: string[], fields: LogFields): Promise<void> {
  const req = parseSendmailArgs(words);
  const record = req.id === undefined
    ? undefined
    : await openDeliveryRecord(config.stateDir, config.label, config.dedupDays * DAY_MS);
  await handleRequest(config, req, Deno.stdin, fields, record);
}

/**
 * Batch mode: frames of `MSG <words>` + N bytes, each answered on stdout.
 * A frame refused by grammar or policy is skipped by its declared size and
 * the batch goes on; a frame that cannot be delimited ends it.
 */
async function batch(
  config: RelayConfig,
  base: LogFields,
  log: (level: "info" | "warning" | "err", fields: LogFields) => Promise<void>,
): Promise<number> {
  const input = new FramedReader(Deno.stdin);
  const out = Deno.stdout;
  const encoder = new TextEncoder();
  const record = await openDeliveryRecord(
    config.stateDir,
    config.label,
    config.dedupDays * DAY_MS,
  );
  await record?.prune(Date.now());
  const reply = (id: string, err: MailError | undefined, text = "delivered") =>
    out.write(encoder.encode(`${
      formatReply({
        id,
        code: err?.exitCode ?? EX_OK,
        status: err?.status ?? "2.0.0",
        text: err ? `${PROGRAM}: ${err.message}` : text,
      })
    }\n`));
  const sessionStarted = performance.now();
  // A deadline, not an idle time: a peer sending a frame now and then cannot
  // hold the session for ever. The client reconnects for what is left.
  const overDeadline = () => performance.now() - sessionStarted > config.sessionTimeoutMs;
  const timeUp = () =>
    reply(
      "-",
      new MailError("session time limit reached", { exitCode: EX_TEMPFAIL, status: "4.4.2" }),
    );
  for (let n = 0; n < MAX_FRAMES; n++) {
    if (overDeadline()) {
      await timeUp();
      return EX_TEMPFAIL;
    }
    let line: string | null;
    try {
      const left = config.sessionTimeoutMs - (performance.now() - sessionStarted);
      line = await withIdle(
        input.readLine(MAX_FRAME_HEADER),
        Math.max(1, Math.min(config.idleTimeoutMs, left)),
      );
    } catch (err) {
      if (overDeadline()) {
        await timeUp();
        return EX_TEMPFAIL;
      }
      const error = err instanceof MailError
        ? err
        : new MailError("malformed batch frame", { exitCode: EX_PROTOCOL, status: "5.5.2" });
      await reply("-", error);
      return error.exitCode;
    }
    if (line === null || line === "END") return EX_OK;
    if (overDeadline()) {
      await timeUp();
      return EX_TEMPFAIL;
    }
    const started = performance.now();
    const fields: LogFields = { event: "sent", ...base, batch: n + 1 };
    let words: string[];
    let size: number;
    try {
      words = tokenizeWords(frameWords(line));
      const sizeWord = words.find((w) => SIZE_REGEXP.test(w));
      if (sizeWord === undefined) throw new UsageError("batch frame without --size", "5.5.2");
      size = Number(sizeWord.slice("--size=".length));
    } catch (err) {
      const error = toMailError(err);
      await log("warning", { ...fields, event: "refused", reason: error.message });
      await reply("-", error);
      return EX_PROTOCOL;
    }
    let id = words.find((w) => w.startsWith("--id="))?.slice(5).replace(/[^A-Za-z0-9._-]/g, "?") ||
      "-";
    let error: MailError | undefined;
    // The label names this key in the relay's log: the satellite logs it too.
    let text = config.label ? `delivered, label ${config.label}` : "delivered";
    const body = input.limited(size);
    try {
      const req = parseSendmailArgs([PROGRAM, ...words]);
      id = req.id ?? "-";
      describe(req, fields);
      if (req.id === undefined || req.sha256 === undefined) {
        throw new UsageError("batch frame without --id or --sha256", "5.5.2");
      }
      if (await handleRequest(config, req, body, fields, record) === "duplicate") {
        text = config.label ? `already delivered, label ${config.label}` : "already delivered";
      }
    } catch (err) {
      error = toMailError(err);
    }
    // Whatever happened, the next frame starts after this one's bytes.
    await withIdle(drain(body), config.idleTimeoutMs).catch(() => {});
    const level = error === undefined ? "info" : isTemporary(error.exitCode) ? "err" : "warning";
    await log(level, {
      ...fields,
      ...(error && {
        event: isTemporary(error.exitCode) ? "deferred" : "refused",
        reason: error.message,
        detail: error.detail || undefined,
      }),
      exit: error?.exitCode ?? EX_OK,
      ms: elapsed(started),
    });
    await reply(id, error, text);
    if (body.left > 0) return error?.exitCode ?? EX_TEMPFAIL; // input ended inside a frame
  }
  await reply("-", new UsageError("too many frames in one batch", "5.5.3"));
  return EX_USAGE;
}

/** Races `promise` against an idle timeout. */
async function withIdle<T>(promise: Promise<T>, ms: number): Promise<T> {
  const signal = AbortSignal.timeout(ms);
  const idle = new Promise<never>((_, reject) =>
    signal.addEventListener(
      "abort",
      () =>
        reject(
          new MailError("timed out waiting for the next message", {
            exitCode: EX_TEMPFAIL,
            status: "4.4.2",
          }),
        ),
    )
  );
  return await Promise.race([promise, idle]);
}

/**
 * `--help` and `--version` answer only a local admin: never a peer (whose
 * session sets SSH_CONNECTION), so no help text ever reaches the network.
 */
async function localInfo(): Promise<boolean> {
  const arg = Deno.args.length === 1 ? Deno.args[0] : undefined;
  if (arg !== "--help" && arg !== "--version") return false;
  if (envOf("PEER") !== undefined) return false;
  if (envOf("REQ") !== undefined) return false;
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
    fields.client = envOf("PEER")?.split(" ")[0];
    const words = requestWords(admin.rest, originalCommand());
    const endSession = await enterSession(config);
    try {
      return await serve(config, words, fields, started);
    } finally {
      await endSession();
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
  words: string[],
  fields: LogFields,
  started: number,
): Promise<number> {
  {
    if (isBatchRequest(words)) {
      const { event: _, ...base } = fields;
      // One logger(1) for every BATCH_LOG_LINES frames instead of one per frame.
      const pending: { level: "info" | "warning" | "err"; line: string }[] = [];
      const flushLogs = () => sink(config).logMany(pending.splice(0));
      try {
        return await batch(config, base, async (level, f) => {
          pending.push({ level, line: formatLogLine(f) });
          if (pending.length >= BATCH_LOG_LINES) await flushLogs();
        });
      } finally {
        await flushLogs();
      }
    }
    await single(config, words, fields);
    await log(config, "info", { ...fields, exit: EX_OK, ms: elapsed(started) });
    return EX_OK;
  }
}

function elapsed(since: number): number {
  return Math.round(performance.now() - since);
}

function sink(config: RelayConfig) {
  return createSyslog(
    { logger: LOGGER_PATH, socket: config.syslogSocket, tag: PROGRAM, pid: Deno.pid },
    (l) => LOG_LEVELS[l] <= LOG_LEVELS[config.logLevel],
  );
}

function log(config: RelayConfig, level: "info" | "warning" | "err", fields: LogFields) {
  return sink(config).log(level, formatLogLine(fields));
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
