/**
 * Counts the recipients sendmail -t would take from a message's headers, so
 * that a key's `--max-recipients` also binds `-t` requests. Pure.
 *
 * @module
 */

/** Header fields sendmail -t reads (Postfix uses the Resent- ones when present). */
const FIELD_REGEXP = /^(resent-)?(to|cc|bcc):/i;

/** The header section of a message: up to the first empty line, unfolded. */
export function headerFields(head: string): string[] {
  const end = head.search(/\r?\n\r?\n/);
  const section = (end < 0 ? head : head.slice(0, end)).replace(/\r\n/g, "\n");
  const fields: string[] = [];
  for (const line of section.split("\n")) {
    if (/^[ \t]/.test(line) && fields.length > 0) fields[fields.length - 1] += ` ${line.trim()}`;
    else fields.push(line);
  }
  return fields;
}

/**
 * Counts the addresses in one address-list value: commas outside quotes,
 * angle brackets and comments separate them; a group (`name: a, b;`)
 * counts its members; empty entries count nothing.
 */
export function countAddresses(value: string): number {
  let count = 0;
  let current = "";
  let quoted = false;
  let angle = 0;
  let comment = 0;
  const flush = () => {
    if (/[^\s;]/.test(current.replace(/^[^:<"]*:/, ""))) count++;
    current = "";
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (quoted) {
      if (c === "\\") i++;
      else if (c === '"') quoted = false;
      current += "x";
      continue;
    }
    if (comment > 0) {
      if (c === "\\") i++;
      else if (c === "(") comment++;
      else if (c === ")") comment--;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === "(") comment++;
    else if (c === "<") angle++;
    else if (c === ">") angle = Math.max(0, angle - 1);
    if ((c === "," || c === ";") && angle === 0) {
      flush();
      continue;
    }
    if (c !== "(") current += c;
  }
  flush();
  return count;
}

/**
 * The number of recipients in To/Cc/Bcc (or, when any Resent- field is
 * there, in the Resent- ones, as Postfix does).
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { countHeaderRecipients } from "./header_recipients.ts";
 * strictEqual(countHeaderRecipients('To: a@x, "B, b" <b@x>\nCc: team: c@x, d@x;\nSubject: s\n\nTo: e@x\n'), 4);
 * ```
 */
export function countHeaderRecipients(head: string): number {
  const fields = headerFields(head).filter((f) => FIELD_REGEXP.test(f));
  const resent = fields.some((f) => /^resent-/i.test(f));
  return fields
    .filter((f) => /^resent-/i.test(f) === resent)
    .reduce((n, f) => n + countAddresses(f.slice(f.indexOf(":") + 1)), 0);
}
