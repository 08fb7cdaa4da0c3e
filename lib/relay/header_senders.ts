/**
 * The addresses a message names as its author (From:, Sender:, and their
 * Resent- forms), for the relay's `--allow-header-sender`. Pure.
 *
 * Security: the check must not be fooled by an allowed address hidden in
 * a display name or a comment while another one is the real mailbox, so
 * every address-like word of those fields is returned, wherever it stands:
 * the key must allow all of them.
 *
 * @module
 */

/** The header section (up to the first empty line), unfolded into fields. */
function headerFields(head: string): string[] {
  const end = head.search(/\r?\n\r?\n/);
  const section = (end < 0 ? head : head.slice(0, end)).replace(/\r\n/g, "\n");
  const fields: string[] = [];
  for (const line of section.split("\n")) {
    if (/^[ \t]/.test(line) && fields.length > 0) fields[fields.length - 1] += ` ${line.trim()}`;
    else fields.push(line);
  }
  return fields;
}

/** Field names whose addresses say who wrote or sent the message. */
const FIELD_REGEXP = /^(resent-)?(from|sender)[ \t]*:/i;
/** An address-like word: something@something, without separators. */
const ADDRESS_REGEXP = /[^\s<>(),;:"\[\]\\]+@[^\s<>(),;:"\[\]\\]+/g;
/** A comment or a quoted string (with the `@` after it, if any), read left to right. */
const TEXT_REGEXP = /\((?:[^()\\]|\\.)*\)|"(?:[^"\\]|\\.)*"([ \t]*@)?/g;

/**
 * Every address-like word in From:, Sender:, Resent-From: and
 * Resent-Sender: of the header section (unfolded), lower-cased. A field
 * without any, or with an `@` none of them accounts for (a quoted local
 * part, spaces around the `@`), yields "" (which no list allows), so it
 * cannot pass unseen.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { headerSenders } from "./header_senders.ts";
 * deepStrictEqual(
 *   headerSenders('From: "ok@a.example" <evil@b.example>\nSubject: x\n\nFrom: body@c\n'),
 *   ["ok@a.example", "evil@b.example"],
 * );
 * ```
 */
export function headerSenders(head: string): string[] {
  const out: string[] = [];
  for (const field of headerFields(head)) {
    if (!FIELD_REGEXP.test(field)) continue;
    const value = field.slice(field.indexOf(":") + 1);
    const found = value.match(ADDRESS_REGEXP) ?? [];
    // An `@` outside those words and outside comments and display names is a
    // mailbox they missed (`"boss"@bank.example`, `boss @ bank.example`).
    const rest = value.replace(ADDRESS_REGEXP, "").replace(TEXT_REGEXP, (_, at) => at ? "@" : "");
    if (found.length === 0 || rest.includes("@")) out.push("");
    for (const a of found) out.push(a.toLowerCase());
  }
  return out;
}
