/**
 * The recipients a `sendmail -t` message names in its To:, Cc: and Bcc:
 * fields, for the satellite's local policy (a local name such as `root` in
 * To: goes to adminaddr, as a whole MTA would send it). Pure.
 *
 * Only what parses with certainty is used: any field this parser is unsure
 * of (Resent- fields, an address it cannot read) makes it answer
 * undefined, and the message keeps `-t` for the relay's sendmail.
 *
 * @module
 */

import { isEnvelopeAddress } from "../shared/address.ts";

const FIELD_REGEXP = /^(to|cc|bcc)[ \t]*:/i;
const RESENT_REGEXP = /^resent-(to|cc|bcc)[ \t]*:/i;

/** The header section's fields, each with its line span (folding kept). */
function fields(head: string): { text: string; start: number; end: number }[] {
  const lines = head.split("\n");
  const out: { text: string; start: number; end: number }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, "");
    if (line === "") break;
    if (/^[ \t]/.test(line) && out.length > 0) {
      const last = out[out.length - 1]!;
      last.text += ` ${line.trim()}`;
      last.end = i + 1;
    } else {
      out.push({ text: line, start: i, end: i + 1 });
    }
  }
  return out;
}

/** Splits an address-list value into its addresses; undefined when unsure. */
export function splitAddresses(value: string): string[] | undefined {
  const parts: string[] = [];
  let current = "";
  let quoted = false;
  let comment = 0;
  let angle = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "\\") {
      if (quoted) current += c + (value[++i] ?? "");
      else return undefined;
      continue;
    }
    if (quoted) {
      if (c === '"') quoted = false;
      current += c;
      continue;
    }
    if (comment > 0) {
      if (c === "(") comment++;
      else if (c === ")") comment--;
      continue;
    }
    if (c === "(") comment++;
    else if (c === '"') {
      quoted = true;
      current += c;
    } else if (c === "<") {
      if (angle) return undefined;
      angle = true;
      current += c;
    } else if (c === ">") {
      angle = false;
      current += c;
    } else if ((c === "," || c === ";") && !angle) {
      parts.push(current);
      current = "";
    } else if (c === ":" && !angle) {
      current = ""; // a group's display name
    } else {
      current += c;
    }
  }
  if (quoted || comment > 0 || angle) return undefined;
  parts.push(current);
  const out: string[] = [];
  for (const raw of parts) {
    const part = raw.trim();
    if (part === "") continue;
    if (part.split("<").length > 2) return undefined; // two addresses in one?
    const m = /<([^<>]*)>\s*$/.exec(part);
    const address = (m ? m[1]! : part).trim();
    if (!isEnvelopeAddress(address)) return undefined;
    out.push(address);
  }
  return out;
}

/**
 * The To/Cc/Bcc recipients of a header section and the same head without
 * its Bcc: fields (what sendmail -t would deliver), or undefined when a
 * field cannot be read with certainty.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { headerRecipients } from "./header_addresses.ts";
 * deepStrictEqual(
 *   headerRecipients("To: root, Ann <ann@x.example>\nBcc: ops\nSubject: s\n\nbody\n"),
 *   {
 *     recipients: ["root", "ann@x.example", "ops"],
 *     head: "To: root, Ann <ann@x.example>\nSubject: s\n\nbody\n",
 *     bccLines: [1],
 *   },
 * );
 * ```
 */
export function headerRecipients(
  head: string,
): { recipients: string[]; head: string; bccLines: number[] } | undefined {
  const found: string[] = [];
  const drop = new Set<number>();
  for (const f of fields(head)) {
    if (RESENT_REGEXP.test(f.text)) return undefined;
    const m = FIELD_REGEXP.exec(f.text);
    if (!m) continue;
    const list = splitAddresses(f.text.slice(f.text.indexOf(":") + 1));
    if (list === undefined) return undefined;
    found.push(...list);
    if (m[1]!.toLowerCase() === "bcc") { for (let i = f.start; i < f.end; i++) drop.add(i); }
  }
  const lines = head.split("\n");
  return {
    recipients: found,
    head: lines.filter((_, i) => !drop.has(i)).join("\n"),
    bccLines: [...drop],
  };
}
