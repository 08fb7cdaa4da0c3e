/**
 * The words of the queue commands: the id `--remove` takes and the line
 * `sendmail -q -v` prints. Pure.
 *
 * @module
 */

import type { ServiceReply } from "./drop.ts";
import { printable } from "./mailq.ts";

/** A message id as the service knows it, or Postfix's short queue id. */
const QUEUED_ID_REGEXP = /^(m[0-9a-f]{32}|[0-9A-F]{10})$/;

/**
 * The id `--remove ID` asks the service for: a short queue id in upper
 * case (mailq shows it so; either case is taken), or undefined when the
 * word is no id at all.
 *
 * @example Usage
 * ```ts
 * import { equal } from "node:assert/strict";
 * import { removalId } from "./queue_words.ts";
 * equal(removalId("4f2a1b3c9d"), "4F2A1B3C9D");
 * equal(removalId("../etc/passwd"), undefined);
 * ```
 */
export function removalId(word: string): string | undefined {
  const wanted = /^[0-9a-f]{10}$/i.test(word) ? word.toUpperCase() : word;
  return QUEUED_ID_REGEXP.test(wanted) ? wanted : undefined;
}

/** The service's answer to a flush. */
export type FlushReply = Extract<ServiceReply, { op: "flush" }>;

/**
 * The line a flush reports (with its LF).
 *
 * @example Usage
 * ```ts
 * import { equal } from "node:assert/strict";
 * import { flushSummary } from "./queue_words.ts";
 * const reply = { ok: true, op: "flush", delivered: 2, deferred: 1, failed: 0, expired: 0, waiting: 1 } as const;
 * equal(flushSummary("sshsendmail", reply), "sshsendmail: delivered 2, deferred 1, failed 0, expired 0; 1 waiting\n");
 * ```
 */
export function flushSummary(program: string, reply: FlushReply): string {
  const last = reply.lastError ? ` (${printable(reply.lastError)})` : "";
  return `${program}: delivered ${reply.delivered}, deferred ${reply.deferred}, failed ${reply.failed}, expired ${reply.expired}; ${reply.waiting} waiting${last}\n`;
}
