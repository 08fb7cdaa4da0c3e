/**
 * The one request codec both ends speak: a {@link SendmailRequest} built
 * into its canonical words, encoded as an ssh command line or a batch
 * frame header, and parsed back by the relay's own grammar. The client's
 * three ways of sending (one command, a batch frame, a drop for the
 * service) all build their words here. Pure.
 *
 * @module
 */

import { frameHeader, frameWords } from "./batch.ts";
import { UsageError } from "./errors.ts";
import { parseSendmailArgs, scanRequestWords, type SendmailRequest } from "./sendmail_args.ts";
import { quoteWords, tokenizeWords } from "./words.ts";

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

/** A batch frame header as the relay reads it. */
export interface DecodedFrame {
  /** The declared size: how many bytes follow the header, whatever the grammar says. */
  size: number;
  /** The id the reply carries ("-" when the frame has no valid one). */
  id: string;
  /** The request, or undefined when the grammar refused it. */
  request: SendmailRequest | undefined;
  /** Why the grammar refused it (a UsageError or DataError). */
  refusal?: unknown;
}

/**
 * Decodes a batch frame header line (`MSG <words>`) with the relay's
 * tokenizer and grammar. A frame the grammar refuses is still delimited by
 * its `--size` option (so the batch can skip its bytes and go on); a frame
 * without one cannot be delimited and throws. Whether a frame must also
 * carry `--id` and `--sha256` is the caller's rule (the relay's batch).
 *
 * @throws {UsageError} Not a frame, unbalanced quoting, or no `--size` option.
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { decodeFrame } from "./request_codec.ts";
 * const frame = decodeFrame("MSG -f a@@b --size=3 --id=abcdefgh -- a@b");
 * deepStrictEqual([frame.size, frame.id, frame.request], [3, "abcdefgh", undefined]);
 * ```
 */
export function decodeFrame(line: string): DecodedFrame {
  const words = tokenizeWords(frameWords(line));
  const tokens = scanRequestWords(words);
  let size: number | undefined;
  let id = "-";
  for (const token of tokens) {
    if (token.kind === "size") size ??= token.size;
    if (token.kind === "id" && id === "-") id = token.id;
  }
  if (size === undefined) throw new UsageError("batch frame without --size", "5.5.2");
  try {
    const request = parseSendmailArgs(["rsendmail", ...words]);
    return { size, id: request.id ?? "-", request };
  } catch (refusal) {
    return { size, id, request: undefined, refusal };
  }
}
