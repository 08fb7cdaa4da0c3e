/**
 * The header fuzz target's reference: a literal, independent model of what
 * Postfix 3.7's `sendmail -t -oi` extracts, written after the C sources
 * rather than after lib/relay/header_recipients.ts, and checked against the real
 * program by tests/e2e/header_count_test.ts. It follows the C step by step:
 * 2048-byte line records (rec_streamlf.c), leading From_ records skipped and
 * CRs stripped (sendmail.c `enqueue`), the header buffer of mime_state.c with
 * its NUL-stopping `vstring_strncat` and `header_size_limit`, `is_header_buf`,
 * `header_opts_find`, `output_header`'s Resent- rule, and tok822's token list
 * with sentinels, comment moves, `tok822_group` and `tok822_grep`. Slow and
 * plain on purpose. Pure.
 *
 * @module
 */

/** `line_length_limit` and `header_size_limit` defaults. */
const LINE_LIMIT = 2048;
const HEADER_LIMIT = 102400;

/** What Postfix does with a message: recipients taken, or sendmail refuses it. */
export type PostfixOutcome =
  | { kind: "extracted"; count: number }
  | { kind: "refused"; reason: "header too long" | "no recipients" };

const NORM = 1;
const CONT = 2;
const EOF = 3;

/** Postfix's `sendmail -t -oi`, extraction only; `message` holds one character per byte. */
export function postfixExtract(message: string): PostfixOutcome {
  const plain: number[] = [];
  const resent: number[] = [];
  let resentSeen = false;
  // mime_state
  let body = false;
  let buffer = "";
  let prevType = 0;
  let error = false;
  const strncat = (text: string) => {
    const nul = text.indexOf("\0");
    return nul < 0 ? text : text.slice(0, nul);
  };
  const headOut = () => {
    const name = buffer.slice(0, buffer.indexOf(":")).toLowerCase();
    const isResent = /^resent-(to|cc|bcc)$/.test(name);
    if (!isResent && !/^(to|cc|bcc)$/.test(name)) return;
    if (resentSeen && !isResent) return;
    if (isResent) resentSeen = true;
    (isResent ? resent : plain).push(tok822AddressCount(buffer.slice(name.length + 1)));
  };
  const update = (type: number, text: string): void => {
    const isText = type === NORM || type === CONT;
    if (!isText && prevType === CONT) update(NORM, "");
    if (body) {
      prevType = type;
      return;
    }
    if (buffer.length > 0) {
      if (isText) {
        if (prevType === CONT) {
          if (buffer.length < HEADER_LIMIT) buffer += strncat(text);
          else error = true;
          prevType = type;
          return;
        }
        if (text[0] === " " || text[0] === "\t") {
          if (buffer.length < HEADER_LIMIT) buffer += "\n" + strncat(text);
          else error = true;
          prevType = type;
          return;
        }
      }
      headOut();
      prevType = 0;
      buffer = "";
    }
    if (isText) {
      const length = isHeaderBuf(text);
      if (length > 0) {
        let rest = length;
        while (rest < text.length && (text[rest] === " " || text[rest] === "\t")) rest++;
        buffer = strncat(text.slice(0, length)) + strncat(text.slice(rest));
        prevType = type;
        return;
      }
    }
    body = true;
    prevType = type;
  };
  // sendmail.c enqueue(): records, From_ skipping, CR stripping
  let at = 0;
  let skipFrom = true;
  for (;;) {
    // rec_streamlf_get(): up to 2048 bytes; a LF among the first 2049 reads ends a NORM record.
    let record: string;
    let type: number;
    const nl = message.indexOf("\n", at);
    if (nl >= 0 && nl - at < LINE_LIMIT) {
      record = message.slice(at, nl);
      type = NORM;
      at = nl + 1;
    } else if (at < message.length) {
      record = message.slice(at, at + LINE_LIMIT);
      type = CONT;
      at += record.length;
    } else {
      break;
    }
    if (skipFrom) {
      if (type === NORM && strncat(record).replace(/^>*/, "").startsWith("From ")) continue;
      skipFrom = false;
    }
    if (type === NORM) record = record.replace(/\r+$/, "");
    update(type, record);
    if (error) return { kind: "refused", reason: "header too long" };
    if (body) break; // nothing after the header section changes the outcome (-oi)
  }
  update(EOF, "");
  if (error) return { kind: "refused", reason: "header too long" };
  const count = (resentSeen ? resent : plain).reduce((a, b) => a + b, 0);
  return count === 0 ? { kind: "refused", reason: "no recipients" } : { kind: "extracted", count };
}

/** is_header_buf(): the name length of a header line (name, blanks, colon), or 0. */
function isHeaderBuf(text: string): number {
  let state = "init";
  let length = 0;
  for (let i = 0;; i++) {
    if (i >= text.length) return 0;
    const c = text.charCodeAt(i);
    if (c === 0x3a) return state === "init" ? 0 : length;
    if (c === 0x20 || c === 0x09) {
      if (state === "char") state = "space";
      if (state === "space") continue;
      return 0;
    }
    if (c === 0 || c > 0x7f || c < 0x20 || c === 0x7f) return 0;
    if (state === "init") state = "char";
    if (state !== "char") return 0;
    length++;
  }
}

// ------------------------------------------------------------------ tok822

const ATOM = 0x100;
const QSTRING = 0x101;
const DOMLIT = 0x102;
const COMMENT = 0x103;
const ADDR = 0x104;
const STARTGRP = 0x105;
const OPCHARS = '|%!()<>@,;:\\".[]';

interface Tok {
  type: number;
  prev: Tok | null;
  next: Tok | null;
  head: Tok | null;
}

const alloc = (type: number): Tok => ({ type, prev: null, next: null, head: null });
const isSpaceTabCrLf = (c: string) => c === " " || c === "\t" || c === "\r" || c === "\n";

/** tok822_scan(): the token list of a C string (up to its first NUL). */
function scan(text: string): Tok[] {
  const str = text.indexOf("\0") < 0 ? text : text.slice(0, text.indexOf("\0"));
  const tokens: Tok[] = [];
  let s = 0;
  // COLLECT(): consume while cond, a backslash taking the next char whatever it is.
  const collect = (cond: (c: string) => boolean) => {
    while (s < str.length) {
      const c = str[s]!;
      if (c === "\\") {
        if (++s >= str.length) break;
      } else if (!cond(c)) {
        break;
      }
      s++;
    }
  };
  while (s < str.length) {
    const ch = str[s++]!;
    if (isSpaceTabCrLf(ch)) continue;
    if (ch === "(") {
      let level = 1;
      while (s < str.length) {
        const c = str[s++]!;
        if (c === "(") level++;
        else if (c === ")") {
          if (--level === 0) break;
        } else if (c === "\\") {
          if (s >= str.length) break;
          s++;
        }
      }
      tokens.push(alloc(COMMENT));
    } else if (ch === "[") {
      collect((c) => c !== "]");
      if (s < str.length) s++;
      tokens.push(alloc(DOMLIT));
    } else if (ch === '"') {
      collect((c) => c !== '"');
      if (s < str.length) s++;
      tokens.push(alloc(QSTRING));
    } else if (ch !== "\\" && OPCHARS.includes(ch)) {
      tokens.push(alloc(ch.charCodeAt(0)));
    } else {
      s -= 1;
      collect((c) => !isSpaceTabCrLf(c) && !OPCHARS.includes(c));
      tokens.push(alloc(ATOM));
    }
  }
  return tokens;
}

function append(t1: Tok, t2: Tok): Tok {
  const next = t1.next;
  t1.next = t2;
  t2.prev = t1;
  while (t2.next) t2 = t2.next;
  t2.next = next;
  if (next) next.prev = t2;
  return t2;
}

function prepend(t1: Tok, t2: Tok): Tok {
  const prev = t1.prev;
  if (prev) prev.next = t2;
  t2.prev = prev;
  while (t2.next) t2 = t2.next;
  t2.next = t1;
  t1.prev = t2;
  return t2;
}

function unlink(tp: Tok): Tok {
  const prev = tp.prev!;
  const next = tp.next;
  prev.next = next;
  if (next) next.prev = prev;
  tp.prev = tp.next = null;
  return prev;
}

function cutBefore(tp: Tok): void {
  if (tp.prev) {
    tp.prev.next = null;
    tp.prev = null;
  }
}

function group(type: number, left: Tok, right: Tok, sync: number): Tok {
  const first = left.next;
  if (left !== right && first !== right && first !== null) {
    cutBefore(right);
    cutBefore(first);
    const g = alloc(type);
    g.head = first;
    append(left, g);
    append(g, right);
    if (sync) append(left, alloc(sync));
  }
  return left;
}

const isWord = (t: Tok) => t.type === ATOM || t.type === QSTRING || t.type === DOMLIT;

/** tok822_parse() then tok822_grep(tree, TOK822_ADDR): how many addresses. */
export function tok822AddressCount(value: string): number {
  const tokens = scan(value);
  if (tokens.length === 0) return 0;
  const head = alloc(0);
  const tail = alloc(0);
  let prev = head;
  for (const t of [...tokens, tail]) {
    prev.next = t;
    t.prev = prev;
    prev = t;
  }
  const DO_WORD = 1;
  const DO_GROUP = 2;
  let state = DO_WORD;
  let right = tail;
  let tp = tail.prev!;
  while (tp.type) {
    if (tp.type === COMMENT) {
      const before = unlink(tp);
      right = prepend(right, tp);
      tp = before;
      continue;
    } else if (tp.type === 0x3b) {
      right = group(ADDR, tp, right, 0x2c);
      state = DO_GROUP | DO_WORD;
    } else if (tp.type === 0x3a && (state & DO_GROUP) !== 0) {
      tp.type = STARTGRP;
      group(ADDR, tp, right, 0);
      while (tp.type && tp.type !== 0x2c) tp = tp.prev!;
      right = tp;
      continue;
    } else if (tp.type === 0x3e) {
      right = group(ADDR, tp, right, 0x2c);
      while (tp.type && tp.type !== 0x3c) {
        if (tp.type === COMMENT) {
          const before = unlink(tp);
          right = prepend(right, tp);
          tp = before;
          continue;
        }
        tp = tp.prev!;
      }
      group(ADDR, tp, right, 0);
      while (tp.type && (tp.type > 0xff || !">;,:".includes(String.fromCharCode(tp.type)))) {
        tp = tp.prev!;
      }
      right = tp;
      state |= DO_WORD;
      continue;
    } else if (isWord(tp)) {
      if ((state & DO_WORD) === 0) right = group(ADDR, tp, right, 0x2c).next!;
      state &= ~DO_WORD;
    } else if (tp.type === 0x2c) {
      right = group(ADDR, tp, right, 0);
      state |= DO_WORD;
    } else {
      state |= DO_WORD;
    }
    tp = tp.prev!;
  }
  group(ADDR, tp, right, 0);
  let count = 0;
  for (let t = head.next; t && t !== tail; t = t.next) if (t.type === ADDR) count++;
  return count;
}
