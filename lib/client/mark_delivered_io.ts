/**
 * What the satellite service does with a message the relay took (its
 * reply 0, "delivered" or "already delivered"): out of the queue and the
 * book, one log line, its waiters told. The counterpart of
 * lib/client/undelivered_io.ts; used by lib/client/service_delivery_io.ts.
 * Effectful edge module.
 *
 * @module
 */

import { formatAge } from "./queue_entry.ts";
import type { Item } from "./service_book.ts";
import type { ServiceCore } from "./service_context.ts";

/** Removes a message the relay at `host` took (its reply `line`), logs it, tells its waiters. */
export function markDelivered(core: ServiceCore, item: Item, line: string, host: string): void {
  const { ctx, book, queue } = core;
  const h = item.entry.header;
  queue.remove(h.id, { hasState: item.entry.state !== undefined });
  book.items.delete(h.id);
  ctx.log("info", {
    event: line.includes("already delivered") ? "duplicate" : "delivered",
    id: h.id,
    uid: h.uid ?? "-",
    host,
    relay: line,
    sender: `<${h.sender ?? ""}>`,
    size: h.size,
    delay: formatAge(Date.now() - h.created),
  });
  book.settle(h.id, "delivered");
}
