/**
 * One request on the relay, whichever way it came (alone on stdin, or a
 * batch frame): the session it runs in, its admission (policy, the spool
 * and its verification, the id's delivery lock, the duplicate check) and
 * its delivery by sendmail. Used by server.ts's one-message path and by
 * batch_io.ts.
 *
 * @module
 */

import { type DeliveryRecord, openDeliveryRecord } from "./dedup_io.ts";
import { checkHeaderRecipients, checkHeaderSenders } from "./header_checks_io.ts";
import { type Limits } from "./limits_io.ts";
import { MailError } from "../shared/errors.ts";
import {
  EX_DATAERR,
  EX_OK,
  EX_TEMPFAIL,
  fromSendmailStatus,
  isTemporary,
} from "../shared/exit_codes.ts";
import { type LogFields } from "../shared/log_line.ts";
import { MEMORY_SPOOL_MAX } from "../shared/layout.ts";
import { runWithSpool } from "../shared/pipeline_io.ts";
import { type ByteReader, type Spooled, spoolMessage } from "../shared/spool_io.ts";
import { checkPolicy, type RelayConfig } from "../shared/relay_config.ts";
import { type SendmailRequest, toSendmailArgv } from "../shared/sendmail_args.ts";

const DAY_MS = 86_400_000;

/** The key's delivery record (`--state-dir`, `--dedup-days`), or undefined when unusable. */
export function openRecord(config: RelayConfig): Promise<DeliveryRecord | undefined> {
  return openDeliveryRecord(config.stateDir, config.label, config.dedupDays * DAY_MS);
}

/** Milliseconds since `since` (a performance.now() reading), for log lines. */
export function elapsed(since: number): number {
  return Math.round(performance.now() - since);
}

/**
 * What a session knows besides the request: the admin's config, the
 * duplicate record, and whether the process ends after one message (its
 * timers then cost nothing to start but are never cleared).
 */
export interface Session {
  config: RelayConfig;
  record: DeliveryRecord | undefined;
  shortLived: boolean;
  /** Called once sendmail has the whole message and runs on it. */
  onSendmail?: () => void;
  /** The key's limits (`--max-sessions`, `--max-messages`), when it has any. */
  limits?: Limits | undefined;
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
    // A batch holds at most `--parallel` + 1 messages at once.
    inMemory: true,
    memoryMax: MEMORY_SPOOL_MAX,
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
    const undo = await reserveMessage(session);
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

/** Reserves the message in the key's rate window; the undo gives it back. */
async function reserveMessage(session: Session): Promise<(() => Promise<void>) | undefined> {
  const { config, limits } = session;
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

export function describe(req: SendmailRequest, fields: LogFields): void {
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
export type Admitted =
  | { kind: "duplicate" }
  | { kind: "ready"; finish(): Promise<void> };

/**
 * One request, whichever way it came (alone on stdin, or a batch frame), up
 * to sendmail: policy, the spool and its verification, the id's delivery
 * lock, the duplicate check. A ready request holds the id's lock until
 * `finish` (sendmail, then the record) is done, so no other frame or
 * session can deliver the same id meanwhile. The lock is taken once the
 * message is read: a peer's upload, however slow, holds no lock.
 */
export async function admit(
  session: Session,
  req: SendmailRequest,
  input: ByteReader,
  fields: LogFields,
): Promise<Admitted> {
  const { record } = session;
  describe(req, fields);
  // The state directory was not the relay's own (lib/relay/state_dir_io.ts): no record.
  if (req.id !== undefined && record === undefined) fields.record = "unusable";
  checkPolicy(req, session.config);
  let spool: Spooled;
  try {
    spool = await prepare(session, req, input, fields);
  } catch (err) {
    // A repeat of a delivered id is "already delivered" even when its bytes
    // were damaged or cut short in transit: the record holds their SHA-256.
    if (err instanceof MailError && await isDuplicate(record, req)) return duplicate(fields);
    throw err;
  }
  // A relay still delivering the same id (the cut session's) is waited for;
  // its record then answers this one.
  let release: (() => Promise<void>) | undefined;
  try {
    release = record && req.id ? await record.claim(req.id) : undefined;
    if (await isDuplicate(record, req)) {
      await release?.();
      spool.file.close();
      return duplicate(fields);
    }
  } catch (err) {
    await release?.();
    spool.file.close();
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

function duplicate(fields: LogFields): Admitted {
  fields.event = "duplicate";
  return { kind: "duplicate" };
}
