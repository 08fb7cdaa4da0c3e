/**
 * Generates `-t` messages whose header sections mix every spelling that
 * changes what Postfix extracts: field-name case and blanks before the colon,
 * folding (LF and CRLF), quoted pairs outside quotes, quoted strings, comments,
 * groups, `<…>` routes, phrases, encoded words, domain literals, unbalanced
 * brackets, Resent- fields, repeated fields, From_ lines, lines that end the
 * section early, long lines past Postfix's 2048-byte records, NUL bytes, and a
 * body with more To: lines. One character per byte. Shared by the header fuzz
 * target and the real-Postfix property test (tests/e2e/header_count_test.ts).
 *
 * @module
 */

import type { Rng } from "./prng.ts";

const RECIPIENT_FIELDS = ["To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc"];
const OTHER_FIELDS = [
  "Subject",
  "From",
  "Reply-To",
  "Apparently-To",
  "Resent-From",
  "Resent-Reply-To",
  "Resent-Date",
  "X-To",
  "Tox",
  "Received",
];
/** Names that are not header names to Postfix (so the section ends there). */
const BROKEN_NAMES = ["To X", "T o", "To\x7f", "T\xf6", "\x01To", "To\x00", ""];
const SEPARATORS = [", ", ",", " ", "", ";", "\n ", "\n\t", "\r\n ", " , ", ",,", "\t", ":"];

const LOCAL = "abcdefghijklmnopqrstuvwxyz0123456789";

function word(rng: Rng): string {
  let s = "";
  for (let n = rng.range(1, 5); n > 0; n--) s += LOCAL[rng.int(LOCAL.length)];
  return s;
}

/** Changes the case of some letters. */
function recase(rng: Rng, name: string): string {
  if (rng.chance(0.6)) return name;
  let s = "";
  for (const c of name) s += rng.chance(0.5) ? c.toUpperCase() : c.toLowerCase();
  return s;
}

function addrSpec(rng: Rng): string {
  const local = rng.pick([
    () => word(rng),
    () => `${word(rng)}.${word(rng)}`,
    () => `${word(rng)}\\"`,
    () => `"${word(rng)}, ${word(rng)}"`,
    () => `${word(rng)}\\ ${word(rng)}`,
    () => `${word(rng)}+${word(rng)}`,
    () => `${word(rng)}|${word(rng)}`,
    () => `${word(rng)}%${word(rng)}!${word(rng)}`,
  ])();
  if (rng.chance(0.15)) return local;
  const domain = rng.chance(0.1)
    ? `[${rng.int(256)}.0.0.${rng.int(256)}]`
    : rng.pick(["x", "relay.test", "y.example"]);
  return `${local}@${domain}`;
}

/** One list item: an address in one of its many spellings, or debris. */
function item(rng: Rng): string {
  switch (rng.int(22)) {
    case 0:
    case 1:
    case 2:
    case 3:
      return addrSpec(rng);
    case 4:
      return `${word(rng)} ${word(rng)} <${addrSpec(rng)}>`;
    case 5:
      return `"${word(rng)}, ${word(rng)}" <${addrSpec(rng)}>`;
    case 6:
      return `=?utf-8?q?${word(rng)},_${word(rng)}?= <${addrSpec(rng)}>`;
    case 7:
      return `${addrSpec(rng)} (${word(rng)}, ${word(rng)})`;
    case 8:
      return `(${word(rng)} (nested, ${word(rng)})) ${addrSpec(rng)}`;
    case 9:
      return `<${addrSpec(rng)}, ${addrSpec(rng)}>`;
    case 10: {
      const members = Array.from({ length: rng.int(4) }, () => addrSpec(rng));
      return `${word(rng)}${rng.chance(0.3) ? ` ${word(rng)}` : ""}: ${members.join(", ")};`;
    }
    case 11:
      return `${word(rng)}\\"@x`;
    case 12:
      return rng.pick(['"@y', '"', "(", "[", "<", ">", ":", ";", "\\", "<>", "()", '""', "[]"]);
    case 13:
      return `${word(rng)} ${word(rng)} ${addrSpec(rng)}`;
    case 14:
      return `[${word(rng)} ${word(rng)}]`;
    case 15:
      return `(${word(rng)}\\) ${addrSpec(rng)}`;
    case 16:
      return `${word(rng)}: ${addrSpec(rng)}`;
    case 17:
      return `${String.fromCharCode(rng.range(0x80, 0xff))}${word(rng)}@x`;
    case 18:
      return `${word(rng)}\r${word(rng)}`;
    case 19:
      return `"${word(rng)}\\"${word(rng)}" <${addrSpec(rng)}>`;
    case 20:
      return `${word(rng)}>${word(rng)}`;
    default:
      return `<${addrSpec(rng)}> ${addrSpec(rng)}`;
  }
}

function value(rng: Rng): string {
  let s = rng.pick([" ", "", "\t", "  "]);
  for (let n = rng.range(0, rng.chance(0.1) ? 12 : 4); n > 0; n--) {
    s += item(rng);
    if (n > 1) s += rng.chance(0.6) ? ", " : rng.pick(SEPARATORS);
  }
  if (rng.chance(0.03)) s += ` (${"p".repeat(rng.range(2040, 2100))})`; // past one 2048-byte record
  if (rng.chance(0.02)) s = s.replace(/ /, "\0");
  return s;
}

function field(rng: Rng): string {
  let name = rng.chance(0.7) ? rng.pick(RECIPIENT_FIELDS) : rng.pick(OTHER_FIELDS);
  name = recase(rng, name);
  if (rng.chance(0.03)) name = rng.pick(BROKEN_NAMES);
  const blanks = rng.chance(0.75)
    ? ""
    : rng.pick([" ", "\t", " \t ", "  ", rng.chance(0.1) ? " ".repeat(2100) : " "]);
  return `${name}${blanks}:${value(rng)}`;
}

/** Lines that may precede the fields. */
const LEADERS = [
  "From someone@x Mon Jan  1 00:00:00 2026",
  ">From x",
  "From :x",
  "",
  " To: lead@x, lead2@x",
  "\r",
];

/** Lines that may sit between fields: most end the header section. */
const BREAKERS = [
  "",
  "\r",
  "\r\r",
  "not a header",
  " continued",
  "\tcontinued, more@x",
  "x@y, z@y",
];

/**
 * A whole message for `sendmail -t -oi`: an optional From_ line, header
 * fields (folded, CRLF or LF), maybe a line that ends the section, a body.
 */
export function genHeaderMessage(rng: Rng): string {
  const lines: string[] = [];
  if (rng.chance(0.08)) {
    let leader = rng.pick(LEADERS);
    if (rng.chance(0.2)) leader += "y".repeat(2100);
    lines.push(leader);
  }
  for (let n = rng.range(1, rng.chance(0.1) ? 10 : 4); n > 0; n--) {
    lines.push(field(rng));
    if (rng.chance(0.04)) lines.push(rng.pick(BREAKERS));
  }
  if (rng.chance(0.002)) lines.push(`To: ${"a@x, ".repeat(20500)}b@x`); // past header_size_limit
  const crlf = rng.chance(0.2);
  let text = lines.join(crlf ? "\r\n" : "\n");
  if (rng.chance(0.9)) {
    const eol = crlf ? "\r\n" : "\n";
    text += `${eol}${eol}Body line${eol}To: body@x, body2@x${eol}`;
  } else if (rng.chance(0.5)) {
    text += "\n";
  }
  return text;
}
