/**
 * Counts the recipients Postfix's `sendmail -t` takes from a message's
 * header section, so that a key's `--max-recipients` also binds `-t`. Pure.
 *
 * @module
 */

/**
 * The count, or why the header section cannot be counted with certainty:
 * the relay must then refuse the message rather than guess.
 */
export type HeaderCount =
  | { kind: "counted"; count: number }
  | { kind: "uncountable"; reason: UncountableReason };

/** Why a header section is not counted. */
export type UncountableReason =
  | "header section too long"
  | "NUL byte in header section"
  | "From_ line too long";

/** Options of {@link countHeaderRecipients}. */
export interface HeaderCountOptions {
  /** True (default) when `head` is the whole message, false when it is only its first bytes. */
  complete?: boolean;
}

/** Postfix's `line_length_limit` (2048): sendmail reads longer lines as several records. */
const LINE_LIMIT = 2048;
const FROM_LINE_REGEXP = /^>*From /;
const PLAIN_FIELDS = new Set(["to", "cc", "bcc"]);
const RESENT_FIELDS = new Set(["resent-to", "resent-cc", "resent-bcc"]);

/**
 * The number of recipients Postfix 3.7's `sendmail -t` extracts from a
 * message's header section, or an upper bound of it, so that a key's
 * `--max-recipients` holds whatever the spelling. It follows `sendmail.c`
 * (`enqueue`, `output_header`) and `mime_state.c`, and is measured against
 * the real program (tests/e2e/header_count_test.ts):
 *
 * - Leading `From ` / `>From ` lines under 2048 bytes are skipped.
 * - Trailing CRs are stripped. The header section ends at the first line
 *   that is empty, or is neither a header (`name[ \t]*:`, the name printable
 *   ASCII) nor a continuation (starting with a blank): a line without colon,
 *   or starting with CR, ends it as an empty line does.
 * - Field names match case-insensitively, blanks before the colon allowed
 *   (`To : …`, `Bcc\t: …`); fields repeat and fold.
 * - Each value counts as {@link countAddresses} says.
 * - Postfix takes the Resent-To/Cc/Bcc recipients when any such field is
 *   present, else the To/Cc/Bcc ones. This counts the larger of the two
 *   sums, an upper bound whichever Postfix takes: choosing as Postfix does
 *   would undercount wherever a field Postfix does not read as one (such as
 *   `Resent-To` followed by 2048 blanks) is taken for one here. The cost: a
 *   resent message whose original To/Cc outnumber the limit is refused.
 *
 * Exact otherwise, except where Postfix reads less: its `is_header_buf`
 * looks at 2048 bytes only, so a name followed by 2048 blanks ends the
 * section for Postfix and not here. Postfix's `header_size_limit` only makes
 * it refuse a message. Assumes `line_length_limit` is at least its default
 * 2048.
 *
 * Uncountable (the relay refuses): a header section that does not end within
 * `head` when `head` is only the message's first bytes; a NUL byte in it
 * (Postfix cuts each 2048-byte line record at its first NUL, so what it
 * reads depends on where records split a line); a From_ line of 2048 bytes
 * or more (whether Postfix skips it depends on `line_length_limit`). No
 * legitimate message has any of these.
 *
 * Security: `head` is peer input, read as one character per byte (decode
 * with latin1), so that line lengths are byte lengths.
 *
 * @param head The message's first bytes, one character per byte.
 * @param options `complete: false` when `head` is cut short of the message.
 * @returns The count, or why the header section cannot be counted.
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { countHeaderRecipients } from "./header_recipients.ts";
 * deepStrictEqual(
 *   countHeaderRecipients('To : a@x, "B, b" <b@x>\nCc: team: c@x, d@x;\nBcc\t: e@x f@x\n\nTo: g@x\n'),
 *   { kind: "counted", count: 6 },
 * );
 * ```
 */
export function countHeaderRecipients(
  head: string,
  options: HeaderCountOptions = {},
): HeaderCount {
  const complete = options.complete ?? true;
  let plain = 0;
  let resent = 0;
  /** The pending field: its kind and its value so far (undefined: no field yet). */
  let kind: "plain" | "resent" | "other" | undefined;
  let value = "";
  const flush = () => {
    if (kind === "plain") plain += countAddresses(value);
    else if (kind === "resent") resent += countAddresses(value);
  };
  let skipFrom = true;
  let at = 0;
  for (;;) {
    const nl = head.indexOf("\n", at);
    if (nl < 0 && !complete) return { kind: "uncountable", reason: "header section too long" };
    if (nl < 0 && at >= head.length) break; // end of message
    const raw = head.slice(at, nl < 0 ? head.length : nl);
    at = nl < 0 ? head.length : nl + 1;
    if (raw.includes("\0")) return { kind: "uncountable", reason: "NUL byte in header section" };
    if (skipFrom) {
      if (FROM_LINE_REGEXP.test(raw)) {
        // Postfix skips it only as a whole record: under 2048 bytes, ended by LF.
        if (raw.length >= LINE_LIMIT) return { kind: "uncountable", reason: "From_ line too long" };
        if (nl >= 0) continue;
      }
      skipFrom = false;
    }
    const line = raw.replace(/\r+$/, "");
    if (line === "") break;
    const first = line.charCodeAt(0);
    if (first === 0x20 || first === 0x09) {
      if (kind === undefined) break;
      if (kind !== "other") value += `\n${line}`;
      continue;
    }
    const nameLength = headerNameLength(line);
    if (nameLength === 0) break;
    flush();
    const name = line.slice(0, nameLength).toLowerCase();
    kind = PLAIN_FIELDS.has(name) ? "plain" : RESENT_FIELDS.has(name) ? "resent" : "other";
    value = line.slice(line.indexOf(":", nameLength) + 1);
  }
  flush();
  return { kind: "counted", count: Math.max(resent, plain) };
}

/**
 * Postfix's `is_header_buf` without its 2048-byte window: the length of the
 * name when `line` starts a header field (`name[ \t]*:`, the name printable
 * ASCII without colon), else 0.
 */
function headerNameLength(line: string): number {
  let length = 0;
  let blanks = false;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x3a) return length;
    if (c === 0x20 || c === 0x09) {
      if (length === 0) return 0;
      blanks = true;
    } else if (c > 0x20 && c < 0x7f && !blanks) {
      length++;
    } else {
      return 0;
    }
  }
  return 0;
}

/** Kind of a word token (atom, quoted string, domain literal); operators are their char code. */
const WORD = 0;
const SEMICOLON = 0x3b;
const COLON = 0x3a;
const COMMA = 0x2c;
const LESS = 0x3c;
const GREATER = 0x3e;
/** tok822's operator characters: `|%!` and the RFC 822 specials. */
const OPERATOR = new Uint8Array(128);
for (const c of '|%!()<>@,;:\\".[]') OPERATOR[c.charCodeAt(0)] = 1;

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
const isOperator = (c: number) => c < 128 && OPERATOR[c] === 1;

/**
 * The tokens of one header value as Postfix's `tok822_scan` makes them,
 * comments left out: tok822_parse moves each beside the boundary it
 * stands at, so it never counts. `\` quotes the next
 * character everywhere, outside quotes too: `a\"@x` is one atom.
 */
function tokenKinds(value: string): number[] {
  const nul = value.indexOf("\0");
  const n = nul < 0 ? value.length : nul; // C strings end at NUL
  const kinds: number[] = [];
  let i = 0;
  while (i < n) {
    const c = value.charCodeAt(i++);
    if (isSpace(c)) continue;
    if (c === 0x28) { // ( comment, nested, to its ) or the end
      for (let level = 1; i < n;) {
        const d = value.charCodeAt(i++);
        if (d === 0x28) level++;
        else if (d === 0x29 && --level === 0) break;
        else if (d === 0x5c) i++;
      }
    } else if (c === 0x22 || c === 0x5b) { // "quoted string" or [domain literal]
      const close = c === 0x22 ? 0x22 : 0x5d;
      while (i < n) {
        const d = value.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === close) break;
        i++;
      }
      i++;
      kinds.push(WORD);
    } else if (c !== 0x5c && isOperator(c)) {
      kinds.push(c);
    } else { // atom, possibly starting with \
      i--;
      while (i < n) {
        const d = value.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (isSpace(d) || isOperator(d)) break;
        i++;
      }
      kinds.push(WORD);
    }
  }
  return kinds;
}

/**
 * The number of addresses Postfix's `tok822_parse` finds in one header value
 * (its `TOK822_ADDR` nodes): the right-to-left parse, with groups, `<…>` and
 * phrases, counting only. Not a comma count: adjacent words are separate
 * addresses (`a@x b@x` is 2, `John Doe j@x` is 3), while `John Doe <j@x>`,
 * `"Doe, J" <j@x>` and `<a, b>` are 1, `(comment)` and `team:;` are 0.
 *
 * @param value A header value (after the colon, folds kept).
 * @returns How many recipients Postfix takes from it.
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { countAddresses } from "./header_recipients.ts";
 * strictEqual(countAddresses('a\\"@x, b@x, "@y'), 3);
 * strictEqual(countAddresses("a@x b@x"), 2);
 * ```
 */
export function countAddresses(value: string): number {
  const t = tokenKinds(value);
  let count = 0;
  let inGroup = false; // a ; was seen: a : to its left starts a group
  let wordOk = true; // tok822's DO_WORD: no word just to the right
  let right = t.length; // the address being built lies in (i, right)
  let i = t.length - 1;
  while (i >= 0) {
    const k = t[i]!;
    if (k === WORD) {
      if (!wordOk) { // two words in a row: the right one is an address of its own
        count++;
        right = i + 1;
      }
      wordOk = false;
      i--;
    } else if (k === SEMICOLON || k === COMMA) {
      if (right - i > 1) count++;
      right = i;
      if (k === SEMICOLON) inGroup = true;
      wordOk = true;
      i--;
    } else if (k === COLON && inGroup) { // group start: its name is skipped up to a comma
      if (right - i > 1) count++;
      do i--; while (i >= 0 && t[i] !== COMMA);
      right = i;
    } else if (k === GREATER) { // <route>: what follows it, then its inside; the phrase is skipped
      if (right - i > 1) count++;
      let j = i - 1;
      while (j >= 0 && t[j] !== LESS) j--;
      if (i - j > 1) count++;
      while (j >= 0 && t[j] !== GREATER && t[j] !== SEMICOLON && t[j] !== COMMA && t[j] !== COLON) {
        j--;
      }
      right = i = j;
      wordOk = true;
    } else {
      wordOk = true;
      i--;
    }
  }
  if (right > 0) count++;
  return count;
}
