/**
 * The one request codec both ends speak: a {@link SendmailRequest} built
 * into its canonical words, encoded as an ssh command line or a batch
 * frame header, and parsed back by the relay's own grammar. The client's
 * three ways of sending (one command, a batch frame, a drop for the
 * service) all build their words here. Pure.
 *
 * @module
 */

import { frameHeader } from "./batch.ts";
import { parseSendmailArgs, type SendmailRequest } from "./sendmail_args.ts";
import { quoteWords } from "./words.ts";

/**
 * The canonical request words, without the program name:
 * `-oi [-f S] [-t] [--size=N --sha256=H] [--id=ID] -- RCPT…`.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { requestWords } from "./request_codec.ts";
 * deepStrictEqual(
 *   requestWords({ sender: "a@b", extractRecipients: false, recipients: ["c@d"], size: undefined, sha256: undefined, id: undefined }),
 *   ["-oi", "-f", "a@b", "--", "c@d"],
 * );
 * ```
 */
export function requestWords(req: SendmailRequest): string[] {
  return [
    "-oi",
    ...(req.sender === undefined ? [] : ["-f", req.sender]),
    ...(req.extractRecipients ? ["-t"] : []),
    ...(req.size !== undefined && req.sha256 !== undefined
      ? [`--size=${req.size}`, `--sha256=${req.sha256}`]
      : []),
    ...(req.id !== undefined ? [`--id=${req.id}`] : []),
    "--",
    ...req.recipients,
  ];
}

/**
 * The ssh remote command: the relay program and the words, every word
 * quoted for both the relay's tokenizer and a POSIX shell.
 */
export function encodeCommand(program: string, req: SendmailRequest): string {
  return quoteWords([program, ...requestWords(req)]);
}

/** A batch frame's header line (without its LF). */
export function encodeFrame(req: SendmailRequest): string {
  return frameHeader(requestWords(req));
}

/**
 * Parses request words (without the program name) with the relay's
 * grammar: what the relay will make of them.
 *
 * @throws {UsageError | DataError} As parseSendmailArgs.
 */
export function parseRequest(words: readonly string[]): SendmailRequest {
  return parseSendmailArgs(["sendmail", ...words]);
}
