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

import { formatReply, isBatchRequest, MAX_FRAME_HEADER, MAX_FRAMES } from "./lib/shared/batch.ts";
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
  type LogLevel,
  parseAdminArgs,
  type RelayConfig,
} from "./lib/shared/relay_config.ts";
import {
  parseSendmailArgs,
  type SendmailRequest,
  toSendmailArgv,
} from "./lib/shared/sendmail_args.ts";
import { type DecodedFrame, decodeFrame } from "./lib/shared/request_codec.ts";
import { OrderedPool } from "./lib/relay/ordered_pool.ts";
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
                 [--parallel N]
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

/**
 * What a session knows besides the request: the admin's config, the
 * duplicate record, and whether the process ends after one message (its
 * timers then cost nothing to start but are never cleared).
 */
interface Session {
  config: RelayConfig;
  record: DeliveryRecord | undefined;
  shortLived: boolean;
  /** Called once sendmail has the whole message and runs on it. */
  onSendmail?: () => void;
}

/**
 * Reads the message into the spool and verifies it: declared size and
 * SHA-256, then the header checks. Nothing reaches sendmail before this
 * returns. Throws a MailError (the spool closed) unless the message is fit.
 */
async function prepare(
  session: Session,
  req: SendmailRequest,
  input: ByteReader,
  fields: LogFields,
): Promise<Spooled> {
  const { config } = session;
  const spool = await spoolMessage(input, {
    dir: config.spoolDir,
    maxSize: config.maxSize,
    idleTimeoutMs: config.idleTimeoutMs,
    declaredSize: req.size,
    deadlineMs: config.messageTimeoutMs,
    minRate: config.minRate,
    shortLived: session.shortLived,
    inMemory: true,
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
    return spool;
  } catch (err) {
    spool.file.close();
    throw err;
  }
}

/** Runs sendmail on a prepared spool (and closes it). Throws a MailError unless delivered. */
async function send(
  session: Session,
  req: SendmailRequest,
  spool: Spooled,
  fields: LogFields,
): Promise<void> {
  const { config } = session;
  try {
    const undo = await reserveMessage(config);
    const result = await runWithSpool(toSendmailArgv(config.sendmail, req), spool, {
      timeoutMs: config.sendmailTimeoutMs,
      shortLived: session.shortLived,
      ...(session.onSendmail && { onFed: session.onSendmail }),
    });
    if (result.code === EX_OK) return;
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

/** A request past its checks: a duplicate, or a verified message that `finish` sends. */
type Admitted =
  | { kind: "duplicate" }
  | { kind: "ready"; finish(): Promise<void> };

/**
 * One request, whichever way it came (alone on stdin, or a batch frame), up
 * to sendmail: policy, the id's delivery lock, the duplicate check, the
 * spool and its verification. A ready request holds the id's lock until
 * `finish` (sendmail, then the record) is done, so no other frame or
 * session can deliver the same id meanwhile.
 */
async function admit(
  session: Session,
  req: SendmailRequest,
  input: ByteReader,
  fields: LogFields,
): Promise<Admitted> {
  const { record } = session;
  describe(req, fields);
  checkPolicy(req, session.config);
  const release = record && req.id ? await record.claim(req.id) : undefined;
  let spool: Spooled;
  try {
    if (await isDuplicate(record, req)) {
      fields.event = "duplicate";
      await release?.();
      return { kind: "duplicate" };
    }
    spool = await prepare(session, req, input, fields);
  } catch (err) {
    await release?.();
    throw err;
  }
  return {
    kind: "ready",
    async finish() {
      try {
        await send(session, req, spool, fields);
        if (req.id !== undefined) await record?.add(req.id, spool.sha256);
      } finally {
        await release?.();
      }
    },
  };
}

/** One message on stdin. */
async function single(config: RelayConfig, words: string[], fields: LogFields): Promise<void> {
  const req = parseSendmailArgs(words);
  const record = req.id === undefined
    ? undefined
    : await openDeliveryRecord(config.stateDir, config.label, config.dedupDays * DAY_MS);
  // logger(1) starts while sendmail works on the message (not before it has
  // it all): the line after it costs no process start.
  const onSendmail = () => earlyLog = sink(config).early();
  const session = { config, record, shortLived: true, onSendmail };
  const admitted = await admit(session, req, Deno.stdin, fields);
  if (admitted.kind === "ready") await admitted.finish();
}

/** A batch frame's answer: its log line (if any) and its reply, written in frame order. */
interface Answer {
  id: string;
  error: MailError | undefined;
  text: string;
  entry?: { level: "info" | "warning" | "err"; fields: LogFields };
}

type BatchLog = (level: "info" | "warning" | "err", fields: LogFields) => Promise<void>;

/**
 * Batch mode: frames of `MSG <words>` + N bytes, each answered on stdout in
 * frame order. Frames are read, spooled and verified one at a time; up to
 * `--parallel` of them are with sendmail at once. A frame refused by grammar
 * or policy is skipped by its declared size and the batch goes on; a frame
 * that cannot be delimited ends it.
 */
async function batch(config: RelayConfig, base: LogFields, log: BatchLog): Promise<number> {
  const input = new FramedReader(Deno.stdin);
  const record = await openDeliveryRecord(config.stateDir, config.label, config.dedupDays * DAY_MS);
  await record?.prune(Date.now());
  const session: Session = { config, record, shortLived: false };
  // The first frame runs as a one-message relay does, on AbortSignal.timeout
  // timers: a fresh process pays milliseconds for its first setTimeout, and
  // the first message (often the only one) should not wait for that. The
  // next frames' timers are ordinary, cleared ones; the first of them starts
  // once the first frame's sendmail has its message (or the frame is done).
  let firstFed = () => {};
  const warmUp = new Promise<void>((resolve) => firstFed = resolve);
  const cold: Session = { ...session, shortLived: true, onSendmail: () => firstFed() };
  const answers = new OrderedPool<Answer>(config.parallel, (a) => writeAnswer(a, log));
  const answer = (a: Answer) => answers.submit(() => Promise.resolve(a));
  const deadline = performance.now() + config.sessionTimeoutMs;
  try {
    for (let n = 0; n < MAX_FRAMES; n++) {
      if (n === 1) await warmUp;
      const next = await nextFrame(input, config, deadline, n === 0);
      if (next.kind === "end") return EX_OK;
      if (next.kind === "stop") {
        await answer({ id: "-", error: next.error, text: "" });
        return next.error.exitCode;
      }
      const frame = await takeFrame(n === 0 ? cold : session, input, next.line, {
        ...base,
        batch: n + 1,
      });
      await answers.submit(
        n === 0 ? () => frame.answer().finally(() => firstFed()) : frame.answer,
      );
      if (frame.stop !== undefined) return frame.stop;
    }
    const error = new UsageError("too many frames in one batch", "5.5.3");
    await answer({ id: "-", error, text: "" });
    return EX_USAGE;
  } finally {
    await answers.drain();
  }
}

/** The next frame's header line, the end of the batch, or why the batch stops. */
async function nextFrame(
  input: FramedReader,
  config: RelayConfig,
  deadline: number,
  first: boolean,
): Promise<{ kind: "frame"; line: string } | { kind: "end" } | { kind: "stop"; error: MailError }> {
  // A deadline, not an idle time: a peer sending a frame now and then cannot
  // hold the session for ever. The client reconnects for what is left.
  const timeUp = () => ({
    kind: "stop" as const,
    error: new MailError("session time limit reached", { exitCode: EX_TEMPFAIL, status: "4.4.2" }),
  });
  if (performance.now() > deadline) return timeUp();
  let line: string | null;
  try {
    const left = deadline - performance.now();
    line = await withIdle(
      input.readLine(MAX_FRAME_HEADER),
      Math.max(1, Math.min(config.idleTimeoutMs, left)),
      first,
    );
  } catch (err) {
    if (performance.now() > deadline) return timeUp();
    const error = err instanceof MailError
      ? err
      : new MailError("malformed batch frame", { exitCode: EX_PROTOCOL, status: "5.5.2" });
    return { kind: "stop", error };
  }
  if (line === null || line === "END") return { kind: "end" };
  if (performance.now() > deadline) return timeUp();
  return { kind: "frame", line };
}

/**
 * One frame: decoded by the request codec, admitted (its bytes spooled and
 * verified, or skipped), then sendmail in `answer`, the pool's task. `stop`
 * is the batch's exit code when the frame ends it.
 */
async function takeFrame(
  session: Session,
  input: FramedReader,
  line: string,
  base: LogFields,
): Promise<{ answer: () => Promise<Answer>; stop?: number }> {
  const started = performance.now();
  const fields: LogFields = { event: "sent", ...base };
  const { config } = session;
  let frame: DecodedFrame;
  try {
    frame = decodeFrame(line);
  } catch (err) {
    const error = toMailError(err);
    const entry = {
      level: "warning" as const,
      fields: { ...fields, event: "refused", reason: error.message },
    };
    return {
      answer: () => Promise.resolve({ id: "-", error, text: "", entry }),
      stop: EX_PROTOCOL,
    };
  }
  // The label names this key in the relay's log: the satellite logs it too.
  const label = config.label ? `, label ${config.label}` : "";
  const body = input.limited(frame.size);
  let text = `delivered${label}`;
  let error: MailError | undefined;
  let admitted: Admitted | undefined;
  try {
    if (frame.request === undefined) throw frame.refusal;
    const req = frame.request;
    describe(req, fields);
    if (req.id === undefined || req.sha256 === undefined) {
      throw new UsageError("batch frame without --id or --sha256", "5.5.2");
    }
    admitted = await admit(session, req, body, fields);
    if (admitted.kind === "duplicate") text = `already delivered${label}`;
  } catch (err) {
    error = toMailError(err);
  }
  // Whatever happened, the next frame starts after this one's bytes.
  if (body.left > 0) await withIdle(drain(body), config.idleTimeoutMs).catch(() => {});
  const stop = body.left > 0 ? error?.exitCode ?? EX_TEMPFAIL : undefined;
  const ready = admitted?.kind === "ready" ? admitted : undefined;
  const answer = async (): Promise<Answer> => {
    await ready?.finish().catch((err) => error = toMailError(err));
    return { id: frame.id, error, text, entry: frameEntry(fields, error, started) };
  };
  return stop === undefined ? { answer } : { answer, stop };
}

/** A frame's log line, once it is done. */
function frameEntry(fields: LogFields, error: MailError | undefined, started: number) {
  const level = error === undefined ? "info" : isTemporary(error.exitCode) ? "err" : "warning";
  return {
    level: level as "info" | "warning" | "err",
    fields: {
      ...fields,
      ...(error && {
        event: isTemporary(error.exitCode) ? "deferred" : "refused",
        reason: error.message,
        detail: error.detail || undefined,
      }),
      exit: error?.exitCode ?? EX_OK,
      ms: elapsed(started),
    },
  };
}

/** Logs a frame's line (when it has one) and writes its reply. */
async function writeAnswer(a: Answer, log: BatchLog): Promise<void> {
  if (a.entry) await log(a.entry.level, a.entry.fields);
  const line = formatReply({
    id: a.id,
    code: a.error?.exitCode ?? EX_OK,
    status: a.error?.status ?? "2.0.0",
    text: a.error ? `${PROGRAM}: ${a.error.message}` : a.text,
  });
  await Deno.stdout.write(new TextEncoder().encode(`${line}\n`));
}

/** What an idle timer yields. */
const IDLE = Symbol("idle");

/**
 * Races `promise` against an idle timeout: a timer cleared at once (a batch
 * holds none), or, for the session's first read (`cold`), an
 * AbortSignal.timeout, which a fresh process starts for free and which
 * resolves (never rejects: it may fire after the race is over).
 */
async function withIdle<T>(promise: Promise<T>, ms: number, cold = false): Promise<T> {
  const idleError = () =>
    new MailError("timed out waiting for the next message", {
      exitCode: EX_TEMPFAIL,
      status: "4.4.2",
    });
  if (cold) {
    const idle = new Promise<typeof IDLE>((resolve) =>
      AbortSignal.timeout(ms).addEventListener("abort", () => resolve(IDLE), { once: true })
    );
    const got = await Promise.race([promise, idle]);
    if (got === IDLE) throw idleError();
    return got as T;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(idleError()), ms);
  });
  try {
    return await Promise.race([promise, idle]);
  } finally {
    clearTimeout(timer);
  }
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
      const flushLogs = (detach = false) => sink(config).logMany(pending.splice(0), { detach });
      try {
        return await batch(config, base, async (level, f) => {
          pending.push({ level, line: formatLogLine(f) });
          if (pending.length >= BATCH_LOG_LINES) await flushLogs();
        });
      } finally {
        // The last lines are in logger's stdin: the relay need not wait for it.
        await flushLogs(true);
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
