/**
 * What the satellite service does with a message that was not delivered:
 * a deferral (the attempt recorded, the message waits for its backoff), or
 * giving up, when it expired or the relay refused it (to failed/, with a
 * failure notice to its sender through the queue). Used by
 * lib/client/service_delivery_io.ts. Effectful edge module.
 *
 * @module
 */

import { Sha256 } from "../shared/sha256.ts";
import {
  backoffMs,
  failureNotice,
  formatAge,
  newMessageId,
  type QueueHeader,
} from "./queue_entry.ts";
import type { Item } from "./service_book.ts";
import type { ServiceCore } from "./service_context.ts";

const encoder = new TextEncoder();

/** Records a failed attempt; the message waits for its backoff. */
export function defer(core: ServiceCore, item: Item, line: string, host: string): void {
  const { ctx, book, queue } = core;
  const h = item.entry.header;
  const attempts = (item.entry.state?.attempts ?? 0) + 1;
  const state = { attempts, lastError: line, nextAttempt: Date.now() + backoffMs(attempts) };
  try {
    queue.setState(h.id, state);
  } catch {
    // Unrecorded, the attempt is retried at once after a restart: nothing is lost.
  }
  item.entry.state = state;
  item.busy = false;
  ctx.log("warning", {
    event: "deferred",
    id: h.id,
    uid: h.uid ?? "-",
    host,
    attempts,
    reason: line,
  });
  book.settle(h.id, "deferred");
}

/** Gives up on a message that is too old: failed/, and a notice to its sender. */
export function expire(core: ServiceCore, item: Item): Promise<void> {
  const reason = `not delivered within ${formatAge(core.ctx.settings.maxAgeMs)} (${
    item.entry.state?.lastError ?? "relay unreachable"
  })`;
  return giveUp(core, item, reason, "expired");
}

/** Gives up on a message: to failed/, and a notice to its sender through the queue. */
export async function giveUp(
  core: ServiceCore,
  item: Item,
  reason: string,
  outcome: "failed" | "expired",
): Promise<void> {
  const { ctx, book, queue } = core;
  const h = item.entry.header;
  if (h.sender !== null && h.sender !== "") await notify(core, item, reason);
  queue.fail(h.id);
  book.items.delete(h.id);
  ctx.log(outcome === "expired" ? "warning" : "err", {
    event: outcome,
    id: h.id,
    uid: h.uid ?? "-",
    sender: `<${h.sender ?? ""}>`,
    reason,
  });
  book.settle(h.id, outcome);
}

/** Queues the failure notice to a given-up message's sender. */
async function notify(core: ServiceCore, item: Item, reason: string): Promise<void> {
  const { ctx, book, queue } = core;
  const h = item.entry.header;
  let headers = "";
  try {
    headers = queue.headersOf(item.entry);
  } catch {
    // The notice goes without the original's header section.
  }
  const body = encoder.encode(failureNotice(h, reason, ctx.hostname, headers, new Date()));
  const notice: QueueHeader = {
    v: 1,
    id: newMessageId(crypto.randomUUID()),
    sender: "",
    recipients: [h.sender!],
    extractRecipients: false,
    created: Date.now(),
    size: body.length,
    sha256: new Sha256().update(body).hex(),
    ...(h.uid === undefined ? {} : { uid: h.uid }),
  };
  const path = await queue.enqueue(notice, body);
  book.add({
    header: notice,
    state: undefined,
    path,
    bodyOffset: encoder.encode(`${JSON.stringify(notice)}\n`).length,
  });
}
