/**
 * The satellite service's answers to `mailq`, `sendmail -q` and `--remove`
 * requests: a user's in `reply/<hex>` (a name only the requester knows),
 * root's inside its own file in `root/`. Effectful edge module.
 *
 * @module
 */

import { type DropStat, sameFile, type ServiceReply, type ServiceRequest } from "./drop.ts";
import { flushReply, listed, removalTarget } from "./service_book.ts";
import type { ServiceCore } from "./service_context.ts";

/** Replies nobody read are removed after this. */
const REPLY_TTL_MS = 60_000;

/** Answers the service's requests. */
export class Requests {
  readonly #core: ServiceCore;
  /** Runs the intake (a flush takes what was dropped first). */
  readonly #intake: () => Promise<void>;
  /** root's requests being answered (their files still hold the request). */
  readonly answering = new Set<string>();

  constructor(core: ServiceCore, intake: () => Promise<void>) {
    this.#core = core;
    this.#intake = intake;
  }

  /** Writes a reply where only the requester knows its name. */
  async reply(hex: string, reply: ServiceReply): Promise<void> {
    const root = this.#core.root;
    const tmp = `${root}/reply/.${hex}`;
    await Deno.writeTextFile(tmp, JSON.stringify(reply), { mode: 0o644 });
    await Deno.chmod(tmp, 0o644);
    await Deno.rename(tmp, `${root}/reply/${hex}`);
  }

  /** Performs a user's request and writes its reply. */
  async answer(hex: string, uid: number, request: ServiceRequest): Promise<void> {
    let reply: ServiceReply;
    try {
      reply = await this.#perform(uid, request);
    } catch (err) {
      this.#core.ctx.log("err", { event: "request-error", op: request.op, reason: String(err) });
      reply = { ok: false, error: "internal error" };
    }
    await this.reply(hex, reply).catch(() => {});
  }

  /** Answers one of root's requests inside its own file. */
  async answerRoot(
    name: string,
    info: DropStat,
    request: ServiceRequest | undefined,
  ): Promise<void> {
    try {
      const reply: ServiceReply = request
        ? await this.#perform(0, request).catch(() => ({ ok: false, error: "internal error" }))
        : { ok: false, error: "malformed request" };
      const file = await Deno.open(`${this.#core.root}/root/${name}`, { read: true, write: true });
      try {
        if (!sameFile(info, await file.stat())) return;
        const bytes = new TextEncoder().encode(JSON.stringify({ reply }));
        await file.truncate(0);
        await file.seek(0, Deno.SeekMode.Start);
        for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
      } finally {
        file.close();
      }
    } catch (err) {
      this.#core.ctx.log("err", { event: "request-error", drop: name, reason: String(err) });
    } finally {
      this.answering.delete(name);
    }
  }

  async #perform(uid: number, request: ServiceRequest): Promise<ServiceReply> {
    const { book, ctx } = this.#core;
    switch (request.op) {
      case "list":
        return { ok: true, op: "list", messages: book.mine(uid, ctx.uid).map(listed) };
      case "remove":
        return this.#remove(uid, request.id);
      case "flush":
        return await this.#flush(uid);
    }
  }

  #remove(uid: number, id: string): ServiceReply {
    const { book, ctx, queue } = this.#core;
    // The full id, or mailq's short one (unique among what the caller sees).
    const item = removalTarget(book.mine(uid, ctx.uid), id);
    if (!item) return { ok: true, op: "remove", removed: false };
    if (item.busy) return { ok: false, error: "the message is being delivered right now" };
    const found = item.entry.header.id;
    queue.remove(found);
    book.items.delete(found);
    book.settle(found, "removed");
    ctx.log("info", { event: "removed", id: found, by: uid });
    return { ok: true, op: "remove", removed: true };
  }

  /**
   * Like `postqueue -f`: the whole queue runs now; the answer counts only
   * what the caller may see.
   */
  async #flush(uid: number): Promise<ServiceReply> {
    const core = this.#core;
    await this.#intake();
    const mine = new Set(core.book.mine(uid, core.ctx.uid).map((i) => i.entry.header.id));
    const outcomes = [...core.book.items.values()].map((item) => {
      item.forced = true;
      const id = item.entry.header.id;
      return core.book.outcome(id).then((o) => (mine.has(id) ? o : undefined));
    });
    core.pump();
    const done = await Promise.all(outcomes);
    return flushReply(done, core.book.mine(uid, core.ctx.uid));
  }

  /** Removes replies nobody read. */
  async sweepReplies(now: number): Promise<void> {
    for await (const e of Deno.readDir(`${this.#core.root}/reply`)) {
      const path = `${this.#core.root}/reply/${e.name}`;
      const info = await Deno.lstat(path).catch(() => undefined);
      if (info && now - (info.mtime?.getTime() ?? now) > REPLY_TTL_MS) {
        await Deno.remove(path).catch(() => {});
      }
    }
  }
}
