/**
 * `mailq` output in Postfix's layout (what monitoring scripts parse): a
 * header aligned with its columns, one block per message, and a closing
 * `-- N Kbytes in N Requests.` line, or `Mail queue is empty`. Pure.
 *
 * @module
 */

import type { ListedMessage } from "./drop.ts";
import { formatAge } from "./queue_entry.ts";

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** Recipients are indented to the sender column. */
const INDENT = " ".repeat(41);

/** The column header, exactly as Postfix prints it. */
export const MAILQ_HEADER = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------";

/**
 * The queue id as `mailq` shows it: Postfix's short form, ten upper-case
 * hex digits (the service's id `m<32 hex>` begins with them), so a script
 * that parses Postfix's queue listing parses ours. `--remove` takes either.
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { shortQueueId } from "./mailq.ts";
 * strictEqual(shortQueueId("m0123456789abcdef0123456789abcdef"), "0123456789");
 * ```
 */
export function shortQueueId(id: string): string {
  return id.slice(1, 11).toUpperCase();
}

/** `Tue Dec  1 06:41:53`, as Postfix's showq prints arrival times (local time). */
export function arrivalTime(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2)} ${
    two(d.getHours())
  }:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/**
 * Replaces every control, format (bidi embeddings and isolates, zero-width
 * characters) or line/paragraph separator character (terminal safety).
 */
export function printable(text: string, max = 200): string {
  return text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, "?").slice(0, max);
}

/**
 * Formats the queue listing.
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { formatMailq } from "./mailq.ts";
 * strictEqual(formatMailq([], 0), "Mail queue is empty\n");
 * ```
 */
export function formatMailq(messages: readonly ListedMessage[], now: number): string {
  if (messages.length === 0) return "Mail queue is empty\n";
  const out = [MAILQ_HEADER];
  let bytes = 0;
  for (const m of [...messages].sort((a, b) => a.created - b.created)) {
    bytes += m.size;
    const sender = m.sender === null ? "(default)" : m.sender === "" ? "MAILER-DAEMON" : m.sender;
    out.push(
      `${shortQueueId(m.id).padEnd(11)} ${String(m.size).padStart(8)} ${arrivalTime(m.created)}  ${
        printable(sender)
      }`,
    );
    if (m.lastError !== undefined) {
      const next = m.nextAttempt === undefined || m.nextAttempt <= now
        ? "next try now"
        : `next try in ${formatAge(m.nextAttempt - now)}`;
      out.push(`(${printable(m.lastError)}; ${m.attempts} attempts; ${next})`);
    }
    const rcpts = m.recipients.length === 0 && m.extractRecipients
      ? ["(recipients from the message headers)"]
      : m.recipients;
    for (const r of rcpts) out.push(`${INDENT}${printable(r)}`);
    out.push("");
  }
  const kbytes = Math.ceil(bytes / 1024);
  const n = messages.length;
  out.push(`-- ${kbytes} Kbytes in ${n} Request${n === 1 ? "" : "s"}.`);
  return `${out.join("\n")}\n`;
}
