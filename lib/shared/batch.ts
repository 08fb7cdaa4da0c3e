/**
 * The batch protocol between sshsendmail's queue flush and rsendmail: many
 * messages over one SSH session, each framed with its own request words and
 * answered with its own status.
 *
 * Client → relay, after the request `rsendmail --batch`:
 *
 *     MSG <quoted words: -oi [-f S] [-t] --size=N --sha256=H --id=ID -- RCPT…>\n
 *     <exactly N bytes of message>
 *     … more frames …
 *     END\n
 *
 * Relay → client, one line per frame, in order:
 *
 *     <ID> <sysexits code> <enhanced status> <text>\n
 *
 * Each frame goes through the same tokenizer, grammar and policy as a single
 * request; size, SHA-256 and id are mandatory in a frame.
 *
 * @module
 */

import { UsageError } from "./errors.ts";
import { PROGRAM_REGEXP } from "./sendmail_args.ts";
import { quoteWords } from "./words.ts";

/** Longest frame header line. */
export const MAX_FRAME_HEADER = 65536;
/** Most frames in one batch. */
export const MAX_FRAMES = 100_000;
/** A message id: what the relay's duplicate record is keyed by. */
export const ID_REGEXP = /^[A-Za-z0-9][A-Za-z0-9._-]{7,63}$/;

/** True when the request words ask for batch mode: `rsendmail --batch`. */
export function isBatchRequest(words: readonly string[]): boolean {
  return words.length === 2 && PROGRAM_REGEXP.test(words[0]!) && words[1] === "--batch";
}

/** The words of one frame header after `MSG `, as given to the grammar. */
export function frameWords(line: string): string {
  if (!line.startsWith("MSG ")) throw new UsageError("malformed batch frame", "5.5.2");
  return line.slice(4);
}

/** Builds a frame header line (without the LF) from request words (no program name). */
export function frameHeader(words: readonly string[]): string {
  return `MSG ${quoteWords(words)}`;
}

/** One reply of the relay. */
export interface BatchReply {
  id: string;
  code: number;
  status: string;
  text: string;
}

const REPLY_REGEXP = /^(\S+) (\d{1,3}) ([245]\.\d{1,3}\.\d{1,3}) (.*)$/;

/** Formats a reply line (without the LF). */
export function formatReply(reply: BatchReply): string {
  return `${reply.id} ${reply.code} ${reply.status} ${reply.text.replace(/[\r\n]/g, " ")}`;
}

/** Parses a reply line; undefined when it is not one (a garbled relay). */
export function parseReply(line: string): BatchReply | undefined {
  const m = REPLY_REGEXP.exec(line);
  if (!m) return undefined;
  // The text is the relay's: it reaches terminals (mailq), notices and
  // SMTP replies, so no control or format character passes.
  return {
    id: m[1]!,
    code: Number(m[2]),
    status: m[3]!,
    text: m[4]!.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, "?").slice(0, 512),
  };
}
