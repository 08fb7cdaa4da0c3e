/**
 * `mailq` / `sendmail -bp` output of the satellite service, parsed strictly
 * in Postfix's layout: the column header, one block per message (id, size,
 * arrival time, sender; the last reason in parentheses; recipients indented
 * to the sender column; an empty line), then `-- N Kbytes in N Request(s).`,
 * or `Mail queue is empty`. Any other line fails the test.
 *
 * @module
 */

import assert from "node:assert/strict";

/** The column header, as Postfix prints it. */
export const MAILQ_HEADER = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------";

/** One message of the listing. */
export interface Queued {
  id: string;
  size: number;
  sender: string;
  /** The last reason it was not delivered (none before the first attempt). */
  reason: string | undefined;
  attempts: number | undefined;
  recipients: string[];
}

/** The whole listing. */
export interface Mailq {
  messages: Queued[];
  kbytes: number;
  requests: number;
}

/** Parses `mailq` output strictly; throws on any line out of place. */
export function parseMailq(out: string): Mailq {
  if (out === "Mail queue is empty\n") return { messages: [], kbytes: 0, requests: 0 };
  const lines = out.split("\n");
  assert.equal(lines.pop(), "", `mailq ends with a newline: ${JSON.stringify(out)}`);
  assert.equal(lines.shift(), MAILQ_HEADER, out);
  const footer = /^-- (\d+) Kbytes in (\d+) Requests?\.$/.exec(lines.pop() ?? "");
  assert.ok(footer, out);
  const messages: Queued[] = [];
  let current: Queued | undefined;
  for (const line of lines) {
    const head =
      /^([0-9A-F]{10}) +(\d+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d {2}(\S+)$/
        .exec(line);
    const reason = /^\((.+); (\d+) attempts; next try (?:now|in \w+)\)$/.exec(line);
    const rcpt = /^ {41}(\S+)$/.exec(line);
    if (head && current === undefined) {
      current = {
        id: head[1]!,
        size: Number(head[2]),
        sender: head[3]!,
        reason: undefined,
        attempts: undefined,
        recipients: [],
      };
    } else if (reason && current && current.recipients.length === 0 && !current.reason) {
      current.reason = reason[1]!;
      current.attempts = Number(reason[2]);
    } else if (rcpt && current) {
      current.recipients.push(rcpt[1]!);
    } else if (line === "" && current && current.recipients.length > 0) {
      messages.push(current);
      current = undefined;
    } else {
      assert.fail(`unexpected mailq line ${JSON.stringify(line)} in:\n${out}`);
    }
  }
  assert.equal(current, undefined, out);
  const size = messages.reduce((n, m) => n + m.size, 0);
  assert.equal(Number(footer[1]), Math.ceil(size / 1024), out);
  assert.equal(Number(footer[2]), messages.length, out);
  return { messages, kbytes: Number(footer[1]), requests: Number(footer[2]) };
}
