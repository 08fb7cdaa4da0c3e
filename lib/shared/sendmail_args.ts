/**
 * The relay's request grammar: which sendmail words a peer may send, as a
 * table with exact lookup, and the canonical sendmail argv rebuilt from the
 * parse. Nothing the peer sends is ever forwarded as-is.
 *
 * @module
 */

import { isDeliveryTarget, isEnvelopeAddress } from "./address.ts";
import { DataError, UsageError } from "./errors.ts";
import { hasControl } from "./words.ts";

/** A parsed "send this message" request. */
export interface SendmailRequest {
  /** Envelope sender: undefined when not given, "" for the null sender. */
  sender: string | undefined;
  /** `-t`: sendmail reads recipients from To/Cc/Bcc. */
  extractRecipients: boolean;
  /** Envelope recipients from the command line. */
  recipients: string[];
  /** Declared message size in bytes (integrity extension). */
  size: number | undefined;
  /** Declared SHA-256 of the message, lower-case hex (integrity extension). */
  sha256: string | undefined;
  /** Message id for the relay's duplicate record (integrity extension). */
  id: string | undefined;
}

export type Field = "sender" | "dsnNotify" | "dsnReturn" | "fullName";

/** One row of the grammar. */
type OptionRule =
  | { kind: "flag"; set?: "extractRecipients" }
  | { kind: "value"; field: Field };

/**
 * Accepted options. Anything absent from this table is refused. Flags that
 * only change how sendmail reports or queues (-oem, -odi, -B8BITMIME, -bm …)
 * are accepted and dropped: the relay always runs sendmail in its own
 * canonical way.
 */
const OPTIONS: Readonly<Record<string, OptionRule>> = {
  "-t": { kind: "flag", set: "extractRecipients" },
  "-i": { kind: "flag" },
  "-oi": { kind: "flag" },
  "-v": { kind: "flag" },
  "-V": { kind: "flag" },
  "-bm": { kind: "flag" },
  "-oem": { kind: "flag" },
  "-oep": { kind: "flag" },
  "-oee": { kind: "flag" },
  "-oeq": { kind: "flag" },
  "-oew": { kind: "flag" },
  "-odi": { kind: "flag" },
  "-odb": { kind: "flag" },
  "-om": { kind: "flag" },
  "-B8BITMIME": { kind: "flag" },
  "-B7BIT": { kind: "flag" },
  "-f": { kind: "value", field: "sender" },
  "-r": { kind: "value", field: "sender" },
  "-N": { kind: "value", field: "dsnNotify" },
  "-R": { kind: "value", field: "dsnReturn" },
  "-F": { kind: "value", field: "fullName" },
};

/** Value options that also take their value attached (`-fADDR`). */
const ATTACHED_REGEXP = /^-([frNRF])(.+)$/s;
/** DSN NOTIFY values. */
const DSN_NOTIFY_REGEXP = /^(never|(success|failure|delay)(,(success|failure|delay))*)$/i;
/** DSN RET values. */
const DSN_RETURN_REGEXP = /^(full|hdrs)$/i;
/** Integrity extension: declared size. */
const SIZE_REGEXP = /^--size=(0|[1-9][0-9]{0,14})$/;
/** Integrity extension: declared SHA-256. */
const SHA256_REGEXP = /^--sha256=([0-9a-f]{64})$/;
/** Integrity extension: message id (see lib/batch.ts ID_REGEXP). */
const ID_WORD_REGEXP = /^--id=([A-Za-z0-9][A-Za-z0-9._-]{7,63})$/;
/** Program names the first word may carry: a bare name or a path. */
export const PROGRAM_REGEXP = /^([A-Za-z0-9._/-]*\/)?(r?sendmail)$/;
/** A full name for -F: printable, no quotes games needed since it is dropped. */
const FULL_NAME_MAX = 256;

/** Shortens a peer word for an error message: printable ASCII, ≤ 24 chars. */
export function describeWord(word: string): string {
  const clean = word.replace(/[^ -~]/g, "?");
  return clean.length > 24 ? `${clean.slice(0, 24)}…` : clean;
}

function checkValue(field: Field, value: string, req: SendmailRequest): void {
  switch (field) {
    case "sender": {
      if (req.sender !== undefined) {
        throw new UsageError("sender given twice");
      }
      if (value === "" || value === "<>") {
        req.sender = "";
        return;
      }
      if (!isEnvelopeAddress(value)) {
        throw new DataError("invalid sender address", "5.1.7");
      }
      req.sender = value;
      return;
    }
    case "dsnNotify":
      if (!DSN_NOTIFY_REGEXP.test(value)) {
        throw new UsageError("invalid -N value");
      }
      return;
    case "dsnReturn":
      if (!DSN_RETURN_REGEXP.test(value)) {
        throw new UsageError("invalid -R value");
      }
      return;
    case "fullName":
      if (value.length > FULL_NAME_MAX || value.startsWith("-") || hasControl(value)) {
        throw new UsageError("invalid -F value");
      }
      return;
  }
}

/**
 * One request word (or option and value) as the grammar's table classifies
 * it, before any value is checked: what the batch path reads a frame's
 * declared size from, and what {@link parseSendmailArgs} then checks word by
 * word.
 */
export type RequestToken =
  | { kind: "flag"; set: "extractRecipients" | undefined }
  | { kind: "value"; option: string; field: Field; value: string | undefined }
  | { kind: "size"; size: number }
  | { kind: "sha256"; sha256: string }
  | { kind: "id"; id: string }
  | { kind: "refused"; word: string }
  | { kind: "operand"; word: string };

/**
 * Splits request words (without the program name) into tokens by the
 * grammar's table: options before `--` are looked up exactly, a value
 * option takes the next word (or its attached value), everything else is an
 * operand. Never throws: refusals are made by {@link parseSendmailArgs}.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { scanRequestWords } from "./sendmail_args.ts";
 * deepStrictEqual(scanRequestWords(["-f", "--size=3", "--size=4", "--", "a@b"]), [
 *   { kind: "value", option: "-f", field: "sender", value: "--size=3" },
 *   { kind: "size", size: 4 },
 *   { kind: "operand", word: "a@b" },
 * ]);
 * ```
 */
export function scanRequestWords(words: readonly string[]): RequestToken[] {
  const tokens: RequestToken[] = [];
  let options = true;
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (options && word === "--") {
      options = false;
      continue;
    }
    if (!options || !word.startsWith("-")) {
      tokens.push({ kind: "operand", word });
      continue;
    }
    tokens.push(optionToken(word, words[i + 1]));
    if (tokens.at(-1)!.kind === "value" && Object.hasOwn(OPTIONS, word)) i++;
  }
  return tokens;
}

/** One option word (`next` is the word after it, the value of a value option). */
function optionToken(word: string, next: string | undefined): RequestToken {
  const rule = Object.hasOwn(OPTIONS, word) ? OPTIONS[word] : undefined;
  if (rule?.kind === "flag") return { kind: "flag", set: rule.set };
  if (rule?.kind === "value") {
    return { kind: "value", option: word, field: rule.field, value: next };
  }
  const attached = ATTACHED_REGEXP.exec(word);
  if (attached) {
    const option = `-${attached[1]}`;
    const field = (OPTIONS[option] as OptionRule & { kind: "value" }).field;
    return { kind: "value", option, field, value: attached[2]! };
  }
  const size = SIZE_REGEXP.exec(word);
  if (size) return { kind: "size", size: Number(size[1]) };
  const sha = SHA256_REGEXP.exec(word);
  if (sha) return { kind: "sha256", sha256: sha[1]! };
  const id = ID_WORD_REGEXP.exec(word);
  if (id) return { kind: "id", id: id[1]! };
  return { kind: "refused", word };
}

/**
 * Parses the words of a request (the program name first) into a
 * SendmailRequest. Exact match, fail closed.
 *
 * Security: every word is peer input. Options are looked up exactly (no
 * prefixes, no clustering); values are checked by named rules; recipients
 * must be envelope addresses and never start with `-`, even after `--`.
 *
 * @param words The request words, as returned by tokenizeWords().
 * @returns The parsed request.
 * @throws {UsageError} For anything outside the grammar (EX_USAGE).
 * @throws {DataError} For a malformed sender or recipient (EX_DATAERR).
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { parseSendmailArgs } from "./sendmail_args.ts";
 * deepStrictEqual(parseSendmailArgs(["sendmail", "-i", "-f", "a@b.example", "c@d.example"]), {
 *   sender: "a@b.example", extractRecipients: false, recipients: ["c@d.example"],
 *   size: undefined, sha256: undefined, id: undefined,
 * });
 * ```
 */
export function parseSendmailArgs(words: readonly string[]): SendmailRequest {
  const [program, ...rest] = words;
  if (program === undefined) throw new UsageError("empty request");
  if (!PROGRAM_REGEXP.test(program)) {
    throw new UsageError("only sendmail requests are allowed", "5.5.1");
  }
  const req: SendmailRequest = {
    sender: undefined,
    extractRecipients: false,
    recipients: [],
    size: undefined,
    sha256: undefined,
    id: undefined,
  };
  for (const token of scanRequestWords(rest)) checkToken(token, req);
  if (req.recipients.length === 0 && !req.extractRecipients) {
    throw new UsageError("no recipients given", "5.5.1");
  }
  return req;
}

/** Checks one token and records it in `req`, in word order (the first refusal wins). */
function checkToken(token: RequestToken, req: SendmailRequest): void {
  switch (token.kind) {
    case "flag":
      if (token.set === "extractRecipients") req.extractRecipients = true;
      return;
    case "value":
      if (token.value === undefined) throw new UsageError(`option ${token.option} needs a value`);
      return checkValue(token.field, token.value, req);
    case "size":
      if (req.size !== undefined) throw new UsageError("size given twice");
      req.size = token.size;
      return;
    case "sha256":
      if (req.sha256 !== undefined) throw new UsageError("hash given twice");
      req.sha256 = token.sha256;
      return;
    case "id":
      if (req.id !== undefined) throw new UsageError("id given twice");
      req.id = token.id;
      return;
    case "refused":
      throw new UsageError(`option ${describeWord(token.word)} is not allowed`);
    case "operand":
      if (!isEnvelopeAddress(token.word)) {
        throw new DataError("invalid recipient address", "5.1.3");
      }
      if (isDeliveryTarget(token.word)) {
        throw new DataError("program, file and include recipients are not allowed", "5.1.3");
      }
      req.recipients.push(token.word);
  }
}

/**
 * Rebuilds the one argv the relay runs: `SENDMAIL -oi [-f SENDER] [-t] --
 * RCPT…`. Only parsed values appear in it, never peer words.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { toSendmailArgv } from "./sendmail_args.ts";
 * deepStrictEqual(
 *   toSendmailArgv("/usr/sbin/sendmail", { sender: "", extractRecipients: true, recipients: [], size: undefined, sha256: undefined, id: undefined }),
 *   ["/usr/sbin/sendmail", "-oi", "-f", "", "-t", "--"],
 * );
 * ```
 */
export function toSendmailArgv(
  sendmailPath: string,
  req: SendmailRequest,
): string[] {
  return [
    sendmailPath,
    "-oi",
    ...(req.sender === undefined ? [] : ["-f", req.sender]),
    ...(req.extractRecipients ? ["-t"] : []),
    "--",
    ...req.recipients,
  ];
}
