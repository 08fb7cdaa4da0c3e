import { deepStrictEqual, strictEqual } from "node:assert/strict";
import {
  flushReply,
  type Item,
  ItemBook,
  listed,
  nextRetryAt,
  planPump,
  removalTarget,
  replyFits,
  retryDelayMs,
  sessionEndLine,
} from "../../lib/client/service_book.ts";
import type { QueueState } from "../../lib/client/queue_entry.ts";
import { shortQueueId } from "../../lib/client/mailq.ts";

const DAY = 86_400_000;

/** An item created at `created`, owned by `uid`, with optional retry state. */
function item(
  id: string,
  created: number,
  o: { uid?: number; state?: QueueState; busy?: boolean; forced?: boolean } = {},
): Item {
  return {
    entry: {
      header: {
        v: 1,
        id,
        sender: "ann@sat.test",
        recipients: ["bob@example.org"],
        extractRecipients: false,
        created,
        size: 10,
        sha256: "0".repeat(64),
        ...(o.uid === undefined ? {} : { uid: o.uid }),
      },
      state: o.state,
      path: `/q/new/${id}`,
      bodyOffset: 100,
    },
    busy: o.busy ?? false,
    forced: o.forced ?? false,
  };
}

const ids = (items: Item[]) => items.map((i) => i.entry.header.id);

Deno.test("planPump() sends what is due in the book's order, expires what is too old, skips busy ones", async (t) => {
  const now = 10 * DAY;
  const maxAge = 5 * DAY;
  await t.step("new messages are due, in the order they were queued", () => {
    const p = planPump([item("a", now - 5), item("b", now - 2), item("c", now - 1)], now, maxAge);
    deepStrictEqual(ids(p.due), ["a", "b", "c"]);
    deepStrictEqual(p.expired, []);
    strictEqual(p.more, false);
  });
  await t.step("one waiting for its backoff is not due; forced it is", () => {
    const state = { attempts: 1, lastError: "4.4.2 x", nextAttempt: now + 60_000 };
    const p = planPump(
      [item("w", now - 9, { state }), item("f", now - 8, { state, forced: true })],
      now,
      maxAge,
    );
    deepStrictEqual(ids(p.due), ["f"]);
  });
  await t.step("a backoff ending right now is due", () => {
    const state = { attempts: 1, lastError: "x", nextAttempt: now };
    deepStrictEqual(ids(planPump([item("n", now - 1, { state })], now, maxAge).due), ["n"]);
  });
  await t.step("older than max_age expires (even when forced), exactly max_age does not", () => {
    const p = planPump(
      [item("old", now - maxAge - 1, { forced: true }), item("edge", now - maxAge)],
      now,
      maxAge,
    );
    deepStrictEqual(ids(p.expired), ["old"]);
    deepStrictEqual(ids(p.due), ["edge"]);
  });
  await t.step("busy items are neither due nor expired", () => {
    const p = planPump([item("x", 0, { busy: true }), item("y", now, { busy: true })], now, maxAge);
    deepStrictEqual(p, { expired: [], due: [], more: false });
  });
  await t.step("at most `limit` are due; `more` tells another one waits", () => {
    const queued = [item("a", now - 3), item("b", now - 2), item("c", now - 1)];
    const two = planPump(queued, now, maxAge, 2);
    deepStrictEqual([ids(two.due), two.more], [["a", "b"], true]);
    const three = planPump(queued, now, maxAge, 3);
    deepStrictEqual([ids(three.due), three.more], [["a", "b", "c"], false]);
    const none = planPump(queued, now, maxAge, 0);
    deepStrictEqual([ids(none.due), none.more], [[], true]);
  });
  await t.step("a message waiting for its backoff is not `more`", () => {
    const state = { attempts: 1, lastError: "x", nextAttempt: now + 60_000 };
    const p = planPump([item("a", now - 2), item("w", now - 1, { state })], now, maxAge, 1);
    deepStrictEqual([ids(p.due), p.more], [["a"], false]);
  });
  await t.step("past the limit the scan stops: a pump reads a few, not the queue", () => {
    // A flush of 100 000 messages, 31 in flight and room for one more: the
    // pump reads the 31 busy ones, the one it sends and the next, not 100 000.
    let read = 0;
    function* book(): Generator<Item> {
      for (let i = 0; i < 100_000; i++) {
        read++;
        yield item(`m${i}`, now - 100_000 + i, { busy: i < 31, forced: true });
      }
    }
    const p = planPump(book(), now, maxAge, 1);
    deepStrictEqual([ids(p.due), p.more], [["m31"], true]);
    strictEqual(read, 34);
  });
  await t.step("the expired ones, queued first, are all found before the scan stops", () => {
    const p = planPump(
      [
        item("old1", now - maxAge - 2),
        item("old2", now - maxAge - 1, { forced: true }),
        item("a", now - 2),
        item("b", now - 1),
        item("c", now),
      ],
      now,
      maxAge,
      1,
    );
    deepStrictEqual([ids(p.expired), ids(p.due), p.more], [["old1", "old2"], ["a"], true]);
  });
});

Deno.test("nextRetryAt() is the earliest backoff end or expiry of the idle items", async (t) => {
  const now = 1_000_000;
  await t.step("nothing waits: Infinity", () => {
    strictEqual(nextRetryAt([], now, DAY), Infinity);
    strictEqual(nextRetryAt([item("b", now, { busy: true })], now, DAY), Infinity);
  });
  await t.step("a message without state is due now", () => {
    strictEqual(nextRetryAt([item("a", now - 5)], now, DAY), now);
  });
  await t.step("the earliest backoff end", () => {
    const s = (at: number) => ({ attempts: 1, lastError: "x", nextAttempt: at });
    strictEqual(
      nextRetryAt(
        [item("a", now, { state: s(now + 500) }), item("b", now, { state: s(now + 200) })],
        now,
        DAY,
      ),
      now + 200,
    );
  });
  await t.step("an expiry before the backoff end (one ms past max_age)", () => {
    const state = { attempts: 3, lastError: "x", nextAttempt: now + DAY };
    strictEqual(nextRetryAt([item("a", now - 1000, { state })], now, 5000), now + 4001);
  });
});

Deno.test("retryDelayMs() waits at least 50 ms and at most what setTimeout takes", () => {
  strictEqual(retryDelayMs(100, 100), 50);
  strictEqual(retryDelayMs(0, 100), 50);
  strictEqual(retryDelayMs(1100, 100), 1000);
  strictEqual(retryDelayMs(Number.MAX_SAFE_INTEGER, 0), 2 ** 31 - 1);
});

Deno.test("replyFits() takes the oldest frame's id or '-', refuses replies out of turn", () => {
  const it = item("m1", 0);
  strictEqual(replyFits({ id: "m1", code: 0, status: "2.0.0", text: "ok" }, it), true);
  strictEqual(replyFits({ id: "-", code: 75, status: "4.3.0", text: "x" }, it), true);
  strictEqual(replyFits({ id: "m2", code: 0, status: "2.0.0", text: "ok" }, it), false);
  strictEqual(replyFits(undefined, it), false);
  strictEqual(replyFits({ id: "m1", code: 0, status: "2.0.0", text: "ok" }, undefined), false);
});

Deno.test("removalTarget() takes the full id or a unique short id among what the caller sees", () => {
  const a = item("m0123456789abcdef0123456789abcdef", 0);
  const b = item("m1123456789abcdef0123456789abcdef", 0);
  strictEqual(removalTarget([a, b], a.entry.header.id), a);
  strictEqual(removalTarget([a, b], shortQueueId(b.entry.header.id)), b);
  strictEqual(removalTarget([a, b], "nope"), undefined);
  strictEqual(removalTarget([], a.entry.header.id), undefined);
  // two messages under one short id: neither
  const twin = { ...b, entry: { ...b.entry, header: { ...b.entry.header } } };
  strictEqual(removalTarget([b, twin], shortQueueId(b.entry.header.id)), undefined);
});

Deno.test("flushReply() counts the caller's outcomes and what still waits", () => {
  const state = { attempts: 2, lastError: "4.4.2 relay down", nextAttempt: 5 };
  deepStrictEqual(
    flushReply(
      ["delivered", "delivered", "deferred", undefined, "failed", "expired", "removed"],
      [item("a", 0), item("b", 0, { state })],
    ),
    {
      ok: true,
      op: "flush",
      delivered: 2,
      deferred: 1,
      failed: 1,
      expired: 1,
      waiting: 2,
      lastError: "4.4.2 relay down",
    },
  );
  deepStrictEqual(flushReply([], []), {
    ok: true,
    op: "flush",
    delivered: 0,
    deferred: 0,
    failed: 0,
    expired: 0,
    waiting: 0,
    lastError: undefined,
  });
});

Deno.test("sessionEndLine() says why a session's frames went unanswered", () => {
  const how = { garbled: false, timedOut: false, sshTimeout: 600 };
  strictEqual(sessionEndLine("sshsendmail", how), "4.4.2 sshsendmail: relay ended the batch early");
  strictEqual(
    sessionEndLine("sshsendmail", { ...how, timedOut: true }),
    "4.4.2 sshsendmail: no answer from the relay within ssh_timeout (600 s)",
  );
  strictEqual(
    sessionEndLine("sshsendmail", { ...how, garbled: true, timedOut: true }),
    "4.4.2 sshsendmail: the relay answered out of turn",
  );
});

Deno.test("ItemBook: outcomes reach every waiter once; mine() is what a uid may see", async () => {
  const book = new ItemBook();
  book.add(item("a", 1, { uid: 1000 }).entry);
  book.add(item("b", 2, { uid: 1001 }).entry);
  strictEqual(book.size, 2);
  deepStrictEqual(ids(book.mine(1000, 999)), ["a"]);
  deepStrictEqual(ids(book.mine(0, 999)), ["a", "b"]);
  deepStrictEqual(ids(book.mine(999, 999)), ["a", "b"]);
  const first = book.outcome("a");
  const second = book.outcome("a");
  book.settle("a", "delivered");
  book.settle("a", "deferred"); // nobody waits any more
  deepStrictEqual(await Promise.all([first, second]), ["delivered", "delivered"]);
  const later = book.outcome("a");
  book.settle("a", "removed");
  strictEqual(await later, "removed");
});

Deno.test("listed() shows a message's header and retry state", () => {
  const state = { attempts: 2, lastError: "4.4.2 x", nextAttempt: 99 };
  deepStrictEqual(listed(item("a", 5, { uid: 7, state })), {
    id: "a",
    uid: 7,
    size: 10,
    created: 5,
    sender: "ann@sat.test",
    recipients: ["bob@example.org"],
    extractRecipients: false,
    attempts: 2,
    lastError: "4.4.2 x",
    nextAttempt: 99,
  });
  strictEqual(listed(item("b", 5)).attempts, 0);
});
