/**
 * The offline queue's file format and policies, pure: a queue file is one
 * JSON header line (the envelope and integrity data) followed by the message
 * bytes; retry state lives beside it.
 *
 * @module
 */

import type { SendmailRequest } from "../shared/sendmail_args.ts";
import { requestWords } from "../shared/request_codec.ts";

/** The header line of a queue file. */
export interface QueueHeader {
  v: 1;
  id: string;
  /** null when no -f was given. */
  sender: string | null;
  recipients: string[];
  extractRecipients: boolean;
  /** Enqueue time, ms since the epoch. */
  created: number;
  size: number;
  sha256: string;
  /** The local uid that submitted it (the drop's owner); absent in old entries. */
  uid?: number;
  /**
   * The hex of the service's drop it was taken from: a drop found again
   * after a crash between queueing and removing it is not queued twice.
   */
  drop?: string;
}

/** Retry bookkeeping of one queued message. */
export interface QueueState {
  attempts: number;
  lastError: string;
  /** Next attempt not before, ms since the epoch. */
  nextAttempt: number;
}

/** Longest header line accepted when reading a queue file back. */
export const MAX_HEADER = 1 << 20;
/** Queue ids: also what the relay's duplicate record is keyed by. */
export const QUEUE_ID_REGEXP = /^m[0-9a-f]{32}$/;

/** A fresh message id. */
export function newMessageId(uuid: string): string {
  return `m${uuid.replaceAll("-", "")}`;
}

/** Builds the header of a message about to be queued. */
export function queueHeader(
  id: string,
  req: SendmailRequest,
  integrity: { size: number; sha256: string },
  now: number,
): QueueHeader {
  return {
    v: 1,
    id,
    sender: req.sender ?? null,
    recipients: req.recipients,
    extractRecipients: req.extractRecipients,
    created: now,
    size: integrity.size,
    sha256: integrity.sha256,
  };
}

/** The request a queued message is sent with. */
export function requestOf(h: QueueHeader): SendmailRequest {
  return {
    sender: h.sender ?? undefined,
    extractRecipients: h.extractRecipients,
    recipients: h.recipients,
    size: h.size,
    sha256: h.sha256,
    id: h.id,
  };
}

/**
 * Checks a header read back from disk; a file that fails is corrupt and is
 * never sent.
 */
export function parseQueueHeader(line: string): QueueHeader | undefined {
  let h: unknown;
  try {
    h = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof h !== "object" || h === null) return undefined;
  const x = h as Record<string, unknown>;
  const ok = x.v === 1 && typeof x.id === "string" && QUEUE_ID_REGEXP.test(x.id) &&
    (x.sender === null || typeof x.sender === "string") &&
    Array.isArray(x.recipients) && x.recipients.every((r) => typeof r === "string") &&
    typeof x.extractRecipients === "boolean" &&
    Number.isSafeInteger(x.created) && (x.created as number) >= 0 &&
    Number.isSafeInteger(x.size) && (x.size as number) >= 0 &&
    typeof x.sha256 === "string" && /^[0-9a-f]{64}$/.test(x.sha256) &&
    (x.uid === undefined || (Number.isSafeInteger(x.uid) && (x.uid as number) >= 0)) &&
    (x.drop === undefined || (typeof x.drop === "string" && /^[0-9a-f]{32}$/.test(x.drop)));
  return ok ? x as unknown as QueueHeader : undefined;
}

/** Exponential backoff after `attempts` failed tries: 1 min doubling, at most 1 h. */
export function backoffMs(attempts: number): number {
  return Math.min(60_000 * 2 ** Math.max(0, attempts - 1), 3_600_000);
}

/** Parses a duration like `30d`, `12h`, `90m`, `45s` or plain seconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^([0-9]{1,9})\s*([smhd]?)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "" | "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit * 1000;
}

/** `1h05m`-style age for listings. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
}

/**
 * The failure notice for a message that expired or was refused for good,
 * sent to its sender with the null sender (so it can never loop).
 */
export function failureNotice(
  h: QueueHeader,
  reason: string,
  host: string,
  originalHeaders: string,
  now: Date,
): string {
  return [
    `From: Mail Delivery System <MAILER-DAEMON@${host}>`,
    `To: <${h.sender}>`,
    "Subject: Undelivered Mail Returned to Sender",
    "Auto-Submitted: auto-replied",
    `Date: ${now.toUTCString()}`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    "",
    `This is sshsendmail on ${host}.`,
    "",
    "Your message could not be delivered to:",
    ...h.recipients.map((r) => `  <${r}>`),
    "",
    `Reason: ${reason}`,
    `Queued: ${new Date(h.created).toUTCString()}`,
    "",
    "--- headers of the message ---",
    originalHeaders.trimEnd(),
    "",
  ].join("\n");
}

/** The request words of one batch frame for a queued message (without the program name). */
export function frameWordsOf(h: QueueHeader): string[] {
  return requestWords(requestOf(h));
}
