/**
 * The satellite service's book of queued messages and its pure decisions:
 * what is due and what has expired, when to look again, which reply
 * belongs to which frame, what a flush or a remove answers, and the line a
 * broken session defers its messages with. Pure module.
 *
 * @module
 */

import type { BatchReply } from "../shared/batch.ts";
import { type ListedMessage, mayAccess, type ServiceReply } from "./drop.ts";
import { shortQueueId } from "./mailq.ts";
import type { QueueEntry } from "./queue_io.ts";

/** One queued message as the service tracks it. */
export interface Item {
  entry: QueueEntry;
  /** Written to the relay, reply pending. */
  busy: boolean;
  /** A flush asked for it: ignore its backoff once. */
  forced: boolean;
}

/** How one attempt at a message ended. */
export type Outcome = "delivered" | "deferred" | "failed" | "expired" | "removed";

/** The messages the service holds, and who waits for their outcome. */
export class ItemBook {
  /** By message id. */
  readonly items = new Map<string, Item>();
  readonly #waiters = new Map<string, Array<(o: Outcome) => void>>();

  /** Number of messages waiting. */
  get size(): number {
    return this.items.size;
  }

  /** Tracks a queued entry (idle, not forced). */
  add(entry: QueueEntry): void {
    this.items.set(entry.header.id, { entry, busy: false, forced: false });
  }

  /** What `uid` may see (the service account `serviceUid` and root see all). */
  mine(uid: number, serviceUid: number): Item[] {
    return [...this.items.values()].filter((i) => mayAccess(uid, serviceUid, i.entry.header.uid));
  }

  /** Resolves with the next outcome of message `id`. */
  outcome(id: string): Promise<Outcome> {
    return new Promise((resolve) => {
      const list = this.#waiters.get(id) ?? [];
      list.push(resolve);
      this.#waiters.set(id, list);
    });
  }

  /** Tells the waiters of `id` how its attempt ended. */
  settle(id: string, outcome: Outcome): void {
    const list = this.#waiters.get(id);
    this.#waiters.delete(id);
    for (const resolve of list ?? []) resolve(outcome);
  }
}

/**
 * What a pump does with the idle messages, in the book's order (the order
 * they were queued: oldest first): `expired` are older than `maxAgeMs`;
 * `due` are forced or past their backoff, at most `limit` of them (what the
 * session's window has room for); `more` tells that another due message
 * waits beyond the limit. The scan stops there: what follows a message
 * queued within `maxAgeMs` was queued later and has not expired either, so
 * a pump with a full window looks at the messages in flight and one more,
 * however long the queue (a flush of thousands).
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { planPump } from "./service_book.ts";
 * deepStrictEqual(planPump([], 0, 1000), { expired: [], due: [], more: false });
 * ```
 */
export function planPump(
  items: Iterable<Item>,
  now: number,
  maxAgeMs: number,
  limit = Infinity,
): { expired: Item[]; due: Item[]; more: boolean } {
  const expired: Item[] = [];
  const due: Item[] = [];
  let more = false;
  for (const item of items) {
    const young = item.entry.header.created + maxAgeMs >= now;
    if (more && young) break;
    if (item.busy) continue;
    if (!young) expired.push(item);
    else if (item.forced || (item.entry.state?.nextAttempt ?? 0) <= now) {
      if (due.length < limit) due.push(item);
      else more = true;
    }
  }
  return { expired, due, more };
}

/**
 * When the next idle message is due or expires (ms since the epoch);
 * Infinity when none waits.
 */
export function nextRetryAt(items: Iterable<Item>, now: number, maxAgeMs: number): number {
  let next = Infinity;
  for (const item of items) {
    if (item.busy) continue;
    const at = Math.min(
      item.entry.state?.nextAttempt ?? now,
      item.entry.header.created + maxAgeMs + 1,
    );
    next = Math.min(next, at);
  }
  return next;
}

/** The retry timer's delay for `next`: at least 50 ms, at most what setTimeout takes. */
export function retryDelayMs(next: number, now: number): number {
  return Math.min(Math.max(next - now, 50), 2 ** 31 - 1);
}

/** True when `reply` answers `item`, the oldest frame in flight ("-": a frame without id). */
export function replyFits(reply: BatchReply | undefined, item: Item | undefined): boolean {
  return reply !== undefined && item !== undefined &&
    (reply.id === item.entry.header.id || reply.id === "-");
}

/**
 * The message `--remove ID` means among what the caller sees: the full
 * id, or mailq's short one when exactly one message has it.
 */
export function removalTarget(mine: readonly Item[], id: string): Item | undefined {
  const matches = mine.filter((i) =>
    i.entry.header.id === id || shortQueueId(i.entry.header.id) === id
  );
  return matches.length === 1 ? matches[0] : undefined;
}

/** A flush's answer: the outcomes the caller may see, and what still waits of theirs. */
export function flushReply(
  done: readonly (Outcome | undefined)[],
  left: readonly Item[],
): ServiceReply {
  const count = (o: Outcome) => done.filter((d) => d === o).length;
  return {
    ok: true,
    op: "flush",
    delivered: count("delivered"),
    deferred: count("deferred"),
    failed: count("failed"),
    expired: count("expired"),
    waiting: left.length,
    lastError: left.find((i) => i.entry.state)?.entry.state?.lastError,
  };
}

/** Why a session ended with frames unanswered, when ssh's exit does not say. */
export function sessionEndLine(
  program: string,
  how: { garbled: boolean; timedOut: boolean; sshTimeout: number },
): string {
  return `4.4.2 ${program}: ${
    how.garbled
      ? "the relay answered out of turn"
      : how.timedOut
      ? `no answer from the relay within ssh_timeout (${how.sshTimeout} s)`
      : "relay ended the batch early"
  }`;
}

/** The listing view of a queued message. */
export function listed(item: Item): ListedMessage {
  const h = item.entry.header;
  const st = item.entry.state;
  return {
    id: h.id,
    uid: h.uid,
    size: h.size,
    created: h.created,
    sender: h.sender,
    recipients: h.recipients,
    extractRecipients: h.extractRecipients,
    attempts: st?.attempts ?? 0,
    lastError: st?.lastError,
    nextAttempt: st?.nextAttempt,
  };
}
