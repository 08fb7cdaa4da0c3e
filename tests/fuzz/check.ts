/**
 * The fuzzer's oracles. Each takes one generated input, runs it through the
 * same pure steps the programs run (server.ts: tokenizer, batch detection,
 * grammar, policy; the batch frame path; the `-bs` session), and throws a
 * FuzzFailure when an invariant breaks:
 *
 * - nothing but a MailError is ever thrown (toMailError of anything else is
 *   a bug: the peer would see "internal error" and the mail be deferred);
 * - every exit code is a sysexits value (0 or 64–78), and its public line is
 *   one line, `[245].x.y rsendmail: text`, with no raw peer bytes;
 * - every accepted request maps through toSendmailArgv to
 *   `[path, "-oi", ("-f", S)?, "-t"?, "--", rcpt…]`, S "" or an envelope
 *   address taken from the request, no recipient starting with "-";
 * - every SMTP reply line is `[2-5]xy[ -]text` with an RFC 5321 code;
 * - the `-t` header count never throws and never counts fewer recipients
 *   than Postfix extracts, as the reference model says (postfix_model.ts,
 *   itself checked against the real Postfix by tests/e2e/header_count_test.ts),
 *   also when only the message's first bytes are counted.
 *
 * @module
 */

import { isEnvelopeAddress } from "../../lib/shared/address.ts";
import { formatReply, frameWords, isBatchRequest, parseReply } from "../../lib/shared/batch.ts";
import { countHeaderRecipients, type HeaderCount } from "../../lib/relay/header_recipients.ts";
import { MailError, UsageError } from "../../lib/shared/errors.ts";
import { type DecodedFrame, decodeFrame } from "../../lib/shared/request_codec.ts";
import { isSysexit } from "../../lib/shared/exit_codes.ts";
import { checkPolicy, parseAdminArgs, type RelayConfig } from "../../lib/shared/relay_config.ts";
import {
  parseSendmailArgs,
  type SendmailRequest,
  toSendmailArgv,
} from "../../lib/shared/sendmail_args.ts";
import { MAX_COMMAND_LINE, type SmtpOptions, SmtpSession } from "../../lib/client/smtp_session.ts";
import { postfixExtract } from "./postfix_model.ts";
import {
  hasControl,
  MAX_COMMAND_LENGTH,
  MAX_WORD_LENGTH,
  MAX_WORDS,
  quoteWords,
  tokenizeWords,
} from "../../lib/shared/words.ts";

/** An invariant broke. */
export class FuzzFailure extends Error {
  /** @param message what broke. */
  constructor(message: string) {
    super(message);
    this.name = "FuzzFailure";
  }
}

function fail(message: string): never {
  throw new FuzzFailure(message);
}

/** The sendmail path the canonical argv starts with. */
export const SENDMAIL = "/usr/sbin/sendmail";
const PROGRAM = "rsendmail";
/** `5.5.4 rsendmail: text`: a status, the program, printable ASCII (describeWord's `…` too). */
const PUBLIC_LINE_REGEXP = /^([245])\.\d{1,3}\.\d{1,3} rsendmail: [ -~…]+$/;

/** Key policies the requests are checked against (parsed like a forced command's argv). */
export const CONFIGS: readonly RelayConfig[] = [
  parseAdminArgs([]).config,
  parseAdminArgs([
    "--allow-sender",
    "@b.example",
    "--allow-sender=X@Y.example",
    "--max-recipients",
    "2",
  ]).config,
  parseAdminArgs(["--require-integrity", "--max-size", "100", "--label", "fuzz"]).config,
];

/** Checks a thrown value: a MailError with a sysexits code and a clean one-line public text. */
export function checkRefusal(err: unknown, where: string): MailError {
  if (err instanceof FuzzFailure) throw err;
  if (!(err instanceof MailError)) {
    fail(
      `${where}: threw ${
        err instanceof Error ? err.stack || `${err.name}: ${err.message}` : String(err)
      } (not a MailError)`,
    );
  }
  if (!isSysexit(err.exitCode) || err.exitCode === 0) {
    fail(`${where}: exit code ${err.exitCode} is not a sysexits error`);
  }
  const line = err.publicLine(PROGRAM);
  const m = PUBLIC_LINE_REGEXP.exec(line);
  if (!m) fail(`${where}: public line ${JSON.stringify(line)}`);
  const temporary = err.exitCode === 75 || err.exitCode === 71;
  if ((m[1] === "4") !== temporary) {
    fail(`${where}: status ${err.status} does not agree with exit ${err.exitCode}`);
  }
  if (err.message === "internal error") fail(`${where}: internal error: ${err.detail}`);
  return err;
}

/** Checks the argv the relay would run for an accepted request. */
export function checkCanonical(
  argv: readonly string[],
  req: SendmailRequest,
  words: readonly string[],
): void {
  const show = () => JSON.stringify(argv);
  if (argv[0] !== SENDMAIL || argv[1] !== "-oi") fail(`argv head ${show()}`);
  let i = 2;
  if (argv[i] === "-f") {
    const s = argv[i + 1];
    if (s === undefined || (s !== "" && !isEnvelopeAddress(s))) fail(`sender in ${show()}`);
    if (s !== req.sender) fail(`sender ${s} is not the parsed one`);
    // The sender comes from the request: a -f/-r value, attached or not (or <> → "").
    if (
      s !== "" &&
      !words.some((w, k) =>
        w === s && /^-[fr]$/.test(words[k - 1] ?? "") || w === `-f${s}` || w === `-r${s}`
      )
    ) {
      fail(`sender ${JSON.stringify(s)} is no -f/-r value of the request`);
    }
    i += 2;
  } else if (req.sender !== undefined) fail(`sender dropped from ${show()}`);
  if (argv[i] === "-t") {
    if (!req.extractRecipients) fail(`-t without -t in ${show()}`);
    i++;
  } else if (req.extractRecipients) fail(`-t dropped from ${show()}`);
  if (argv[i] !== "--") fail(`no -- in ${show()}`);
  const rcpts = argv.slice(i + 1);
  if (rcpts.length === 0 && !req.extractRecipients) fail(`no recipient and no -t: ${show()}`);
  if (rcpts.length !== req.recipients.length) fail(`recipients differ: ${show()}`);
  for (const r of rcpts) {
    if (r.startsWith("-") || !isEnvelopeAddress(r)) {
      fail(`recipient ${JSON.stringify(r)} in ${show()}`);
    }
    if (!words.includes(r)) fail(`recipient ${JSON.stringify(r)} is no word of the request`);
  }
}

/** What a request came to. */
export type CommandOutcome =
  | { kind: "refused"; error: MailError }
  | { kind: "batch" }
  | { kind: "accepted"; req: SendmailRequest; argv: string[]; codes: number[] };

/**
 * A peer command string through server.ts's pure steps (requestWords,
 * isBatchRequest, parseSendmailArgs, checkPolicy under each CONFIGS entry),
 * every invariant checked on the way. `expectWords`: the words the string
 * is an exact quoting of, when it is one.
 */
export function checkCommand(command: string, expectWords?: readonly string[]): CommandOutcome {
  let words: string[];
  try {
    if (command.trim() === "") {
      throw new UsageError("no request: this key only sends mail", "5.5.1");
    }
    words = tokenizeWords(command);
  } catch (err) {
    const e = checkRefusal(err, "tokenizeWords");
    if (expectWords !== undefined && quotingMustPass(command, expectWords)) {
      fail(`tokenizeWords refused an exact quoting (${e.message})`);
    }
    return { kind: "refused", error: e };
  }
  if (expectWords !== undefined && !sameWords(words, expectWords)) {
    fail(
      `tokenizeWords read ${JSON.stringify(words).slice(0, 300)}, quoted ${
        JSON.stringify(expectWords).slice(0, 300)
      }`,
    );
  }
  if (words.length > MAX_WORDS) fail(`${words.length} words accepted`);
  for (const w of words) {
    if (w.length > MAX_WORD_LENGTH) fail(`a word of ${w.length} accepted`);
    if (hasControl(w)) fail(`control character accepted in ${JSON.stringify(w)}`);
  }
  // quoteWords is the exact inverse (the client builds requests with it).
  const again = tokenizeWords(quoteWords(words));
  if (!sameWords(again, words)) {
    fail(`quoteWords does not read back: ${JSON.stringify(words).slice(0, 300)}`);
  }
  if (isBatchRequest(words)) return { kind: "batch" };
  let req: SendmailRequest;
  try {
    req = parseSendmailArgs(words);
  } catch (err) {
    const e = checkRefusal(err, "parseSendmailArgs");
    if (e.exitCode !== 64 && e.exitCode !== 65) fail(`grammar refused with ${e.exitCode}`);
    return { kind: "refused", error: e };
  }
  const argv = toSendmailArgv(SENDMAIL, req);
  checkCanonical(argv, req, words);
  const codes: number[] = [];
  for (const config of CONFIGS) {
    try {
      checkPolicy(req, config);
      codes.push(0);
    } catch (err) {
      const e = checkRefusal(err, "checkPolicy");
      if (e.exitCode !== 77 && e.exitCode !== 65) fail(`policy refused with ${e.exitCode}`);
      codes.push(e.exitCode);
    }
  }
  return { kind: "accepted", req, argv, codes };
}

function sameWords(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when the tokenizer has no reason to refuse an exact quoting of `words`. */
function quotingMustPass(command: string, words: readonly string[]): boolean {
  return command.length <= MAX_COMMAND_LENGTH && words.length <= MAX_WORDS &&
    words.every((w) => w.length <= MAX_WORD_LENGTH && !hasControl(w)) && command.trim() !== "";
}

/**
 * A batch frame header line through server.ts's batch(): the request codec's
 * decodeFrame (frameWords, tokenizeWords, the grammar's mandatory --size),
 * --id/--sha256, policy; and the reply line the relay writes must parse back
 * on the client.
 */
export function checkFrame(line: string): "end" | "refused" | "accepted" {
  if (line === "END") return "end";
  let frame: DecodedFrame;
  try {
    frame = decodeFrame(line);
    if (!Number.isSafeInteger(frame.size) || frame.size < 0) fail(`frame size ${frame.size}`);
  } catch (err) {
    const e = checkRefusal(err, "frame header");
    checkReply("-", e);
    return "refused";
  }
  const words = tokenizeWords(frameWords(line));
  let error: MailError | undefined;
  try {
    if (frame.request === undefined) throw frame.refusal;
    const req = frame.request;
    if (req.id === undefined || req.sha256 === undefined) {
      throw new UsageError("batch frame without --id or --sha256", "5.5.2");
    }
    checkCanonical(toSendmailArgv(SENDMAIL, req), req, words);
    for (const config of CONFIGS) {
      try {
        checkPolicy(req, config);
      } catch (err) {
        checkRefusal(err, "frame policy");
      }
    }
  } catch (err) {
    error = checkRefusal(err, "frame");
  }
  checkReply(frame.id, error);
  return error === undefined ? "accepted" : "refused";
}

function checkReply(id: string, error: MailError | undefined): void {
  const reply = {
    id,
    code: error?.exitCode ?? 0,
    status: error?.status ?? "2.0.0",
    text: error ? `${PROGRAM}: ${error.message}` : "delivered",
  };
  const line = formatReply(reply);
  if (/[\r\n]/.test(line)) fail(`reply line breaks: ${JSON.stringify(line)}`);
  const back = parseReply(line);
  if (
    back === undefined || back.id !== reply.id || back.code !== reply.code ||
    back.status !== reply.status
  ) {
    fail(`reply ${JSON.stringify(line)} does not parse back`);
  }
}

/** RFC 5321 reply codes (4.2.2, 4.2.3) and RFC 1870's 552/RFC 1869's 555 uses. */
export const SMTP_CODES: ReadonlySet<number> = new Set([
  211,
  214,
  220,
  221,
  250,
  251,
  252,
  354,
  421,
  450,
  451,
  452,
  455,
  500,
  501,
  502,
  503,
  504,
  550,
  551,
  552,
  553,
  554,
  555,
]);
const REPLY_LINE_REGEXP = /^([2-5][0-9]{2})([ -])(.*)$/;
const ENHANCED_REGEXP = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;
/** esmtp-keyword["=" esmtp-value] (RFC 5321 4.1.2): a value holds no "=", no space, no control. */
const ESMTP_PARAM_REGEXP = /^[A-Za-z0-9][A-Za-z0-9-]*(=[\x21-\x3c\x3e-\x7e]+)?$/;

/** The session settings the fuzzer uses. */
export const SMTP_OPTIONS: SmtpOptions = {
  hostname: "relay.example",
  maxSize: 1000000,
  maxRecipients: 3,
};

/**
 * Feeds lines to one session the way smtp_server.ts does (after `data`, the
 * message is taken and the transaction reset; `quit` ends the session),
 * checking every reply and the envelope after every command.
 */
export function checkSmtp(lines: readonly string[]): number {
  const session = new SmtpSession(SMTP_OPTIONS);
  checkReplyLines([session.greeting()], "greeting");
  let fed = 0;
  for (const line of lines) {
    fed++;
    const before = session.envelope ? session.envelope.recipients.length : -1;
    let action;
    try {
      action = session.onLine(line);
    } catch (err) {
      fail(
        `onLine(${JSON.stringify(line).slice(0, 200)}) threw ${
          err instanceof Error ? err.stack : String(err)
        }`,
      );
    }
    const where = `onLine(${JSON.stringify(line).slice(0, 200)})`;
    const codes = checkReplyLines(action.lines, where);
    const code = codes[0]!;
    const env = session.envelope;
    if (env) {
      if (env.sender !== "" && !isEnvelopeAddress(env.sender)) {
        fail(`${where}: sender ${JSON.stringify(env.sender)}`);
      }
      if (env.recipients.length > SMTP_OPTIONS.maxRecipients) {
        fail(`${where}: ${env.recipients.length} recipients`);
      }
      for (const r of env.recipients) {
        if (r.startsWith("-") || !isEnvelopeAddress(r)) {
          fail(`${where}: recipient ${JSON.stringify(r)}`);
        }
      }
      if (env.declaredSize !== undefined && !(env.declaredSize <= SMTP_OPTIONS.maxSize)) {
        fail(`${where}: declared size ${env.declaredSize}`);
      }
    }
    const verb = line.split(" ", 1)[0]!.toUpperCase();
    if (line.length <= MAX_COMMAND_LINE && !hasControl(line)) {
      if (verb === "MAIL" && code === 250) {
        if (!env || before !== -1 || env.recipients.length !== 0) {
          fail(`${where}: 250 without a fresh envelope`);
        }
        const params = /^MAIL FROM:\s?<[^<>]*>(.*)$/i.exec(line.trimEnd())?.[1]?.trim();
        for (const p of params ? params.split(" ") : []) {
          if (!ESMTP_PARAM_REGEXP.test(p)) {
            fail(`${where}: accepted parameter ${JSON.stringify(p)}`);
          }
        }
      }
      if (verb === "RCPT" && code === 250 && (!env || env.recipients.length !== before + 1)) {
        fail(`${where}: 250 but the recipient was not added`);
      }
      if (verb === "RCPT" && code !== 250 && env && env.recipients.length !== before) {
        fail(`${where}: refused but the recipient was added`);
      }
    }
    if (action.kind === "data") {
      if (code !== 354) fail(`${where}: data with ${code}`);
      if (!env || env.recipients.length === 0) fail(`${where}: DATA without recipients`);
      session.reset(); // the edge takes the message, answers the dot, ends the transaction
    } else if (code === 354) fail(`${where}: 354 without data`);
    if (action.kind === "quit") {
      if (code !== 221 && code !== 421) fail(`${where}: quit with ${code}`);
      break;
    }
  }
  return fed;
}

function checkReplyLines(lines: readonly string[], where: string): number[] {
  if (lines.length === 0) fail(`${where}: no reply`);
  const codes: number[] = [];
  lines.forEach((l, k) => {
    const m = REPLY_LINE_REGEXP.exec(l);
    if (!m) fail(`${where}: reply line ${JSON.stringify(l)}`);
    const code = Number(m[1]);
    if (!SMTP_CODES.has(code)) fail(`${where}: code ${code} not in RFC 5321`);
    if (k > 0 && code !== codes[0]) {
      fail(`${where}: multi-line reply mixes ${codes[0]} and ${code}`);
    }
    if ((m[2] === "-") !== (k < lines.length - 1)) {
      fail(`${where}: continuation marks in ${JSON.stringify(lines)}`);
    }
    if (l.length > 510 || hasControl(l)) {
      fail(`${where}: reply line too long or with a control character`);
    }
    const enhanced = ENHANCED_REGEXP.exec(m[3]!);
    if (enhanced && enhanced[1] !== m[1]![0]) {
      fail(`${where}: ${code} with enhanced status ${enhanced[0]}`);
    }
    if (!enhanced && k === lines.length - 1 && code >= 400) {
      fail(`${where}: ${code} without an enhanced status`);
    }
    codes.push(code);
  });
  return codes;
}

/** A `-t` message, and where to cut it to count only its first bytes. */
export interface HeaderCase {
  message: string;
  cut?: number;
}

const UNCOUNTABLE_REASONS = [
  "header section too long",
  "NUL byte in header section",
  "From_ line too long",
];

function countOrFail(head: string, complete: boolean, where: string): HeaderCount {
  let got: HeaderCount;
  try {
    got = countHeaderRecipients(head, { complete });
  } catch (err) {
    fail(`${where} threw ${err instanceof Error ? err.stack : String(err)}`);
  }
  if (
    got.kind === "counted"
      ? !Number.isSafeInteger(got.count) || got.count < 0
      : !UNCOUNTABLE_REASONS.includes(got.reason)
  ) {
    fail(`${where}: ${JSON.stringify(got)}`);
  }
  return got;
}

/**
 * Counts the message's header recipients as the relay does (whole, and cut
 * at `cut` as the relay's head limit cuts it) and compares with what
 * Postfix's `sendmail -t` extracts (the model): never fewer. Returns the
 * outcome's name.
 */
export function checkHeader(c: HeaderCase): string {
  const whole = countOrFail(c.message, true, "countHeaderRecipients(message)");
  const postfix = postfixExtract(c.message);
  const taken = postfix.kind === "extracted" ? postfix.count : 0;
  if (whole.kind === "counted" && whole.count < taken) {
    fail(`relay counts ${whole.count}, Postfix extracts ${taken}`);
  }
  if (c.cut !== undefined) {
    const head = countOrFail(
      c.message.slice(0, c.cut),
      false,
      `countHeaderRecipients(first ${c.cut})`,
    );
    if (head.kind === "counted" && (whole.kind !== "counted" || head.count !== whole.count)) {
      fail(`first ${c.cut} bytes count ${head.count}, the whole message ${JSON.stringify(whole)}`);
    }
  }
  if (whole.kind === "uncountable") return "uncountable";
  if (postfix.kind === "refused") {
    return whole.count === 0 ? "exact (Postfix refuses)" : "above (Postfix refuses)";
  }
  return whole.count === taken ? "exact" : "above";
}
