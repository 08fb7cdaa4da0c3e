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
import { headerSenders } from "./header_senders.ts";
import { countHeaderRecipients } from "./header_recipients.ts";
import { type Limits } from "./limits_io.ts";
import { DataError, MailError, PolicyError } from "../shared/errors.ts";
import {
  EX_DATAERR,
  EX_OK,
  EX_TEMPFAIL,
  fromSendmailStatus,
  isTemporary,
} from "../shared/exit_codes.ts";
import { type LogFields } from "../shared/log_line.ts";
import { runWithSpool } from "../shared/pipeline_io.ts";
import { type ByteReader, type Spooled, spoolMessage } from "../shared/spool_io.ts";
import { checkPolicy, isSenderAllowed, type RelayConfig } from "../shared/relay_config.ts";
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
