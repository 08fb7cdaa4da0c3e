/**
 * The satellite service's intake of root's drops. Root submits into
 * `root/`, a directory of root's own (lib/client/submit_io.ts): the service
 * may read and empty the files there, never remove them, and root's next
 * submission removes an emptied one. A file is checked by lstat, opened,
 * and checked again on the descriptor (same device and inode, root's, a
 * regular file under the size cap) before it is read. Effectful edge
 * module.
 *
 * @module
 */

import { acceptDrop } from "./accept_drop_io.ts";
import {
  checkDrop,
  classifyDropName,
  type DropStat,
  MAX_DROP_HEADER,
  MAX_REQUEST_SIZE,
  parseServiceRequest,
  sameFile,
} from "./drop.ts";
import { readFileCapped } from "./drop_read_io.ts";
import type { ServiceCore } from "./service_context.ts";
import type { Requests } from "./service_requests_io.ts";

/** Takes root's drops from `root/` into the queue, or answers them. */
export class RootDrops {
  readonly #core: ServiceCore;
  readonly #requests: Requests;

  constructor(core: ServiceCore, requests: Requests) {
    this.#core = core;
    this.#requests = requests;
  }

  /** Takes every drop in `root/` (unless the service stops meanwhile). */
  async takeAll(): Promise<void> {
    const names: string[] = [];
    for await (const e of Deno.readDir(`${this.#core.root}/root`)) names.push(e.name);
    for (const name of names) {
      if (this.#core.stopping) return;
      await this.#take(name);
    }
  }

  /** Empties root's message drops that are queued already (`uid:hex` in `queued`). */
  async forgetQueued(queued: Set<string>): Promise<void> {
    const { root, ctx } = this.#core;
    for await (const e of Deno.readDir(`${root}/root`)) {
      const kind = classifyDropName(e.name);
      if (kind.kind !== "message" || !queued.has(`0:${kind.hex}`)) continue;
      const path = `${root}/root/${e.name}`;
      const info = await Deno.lstat(path).catch(() => undefined);
      if (!info?.isFile || info.uid !== 0 || info.size === 0) continue;
      try {
        const file = await Deno.open(path, { write: true });
        try {
          if (sameFile(info, await file.stat())) await file.truncate(0);
        } finally {
          file.close();
        }
        ctx.log("info", { event: "already-queued", drop: kind.hex, uid: 0 });
      } catch {
        // root's next submission or the intake sees it again
      }
    }
  }

  /**
   * Takes one of root's drops from `root/` (root's directory: the service
   * may read and empty the files there, not remove them). A taken file is
   * emptied; root's next submission removes it. A request is answered in
   * its own file.
   */
  async #take(name: string): Promise<void> {
    const { ctx } = this.#core;
    const kind = classifyDropName(name);
    if (kind.kind !== "message" && kind.kind !== "request") return;
    const path = `${this.#core.root}/root/${name}`;
    const info = await Deno.lstat(path).catch(() => undefined);
    if (!info || info.size === 0) return; // taken already
    const limits = {
      serviceUid: ctx.uid,
      maxSize: kind.kind === "message" ? ctx.settings.maxSize + MAX_DROP_HEADER : MAX_REQUEST_SIZE,
    };
    const verdict = checkDrop(info, limits);
    if (verdict.kind === "refused" || verdict.uid !== 0) return;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true });
    } catch {
      return;
    }
    try {
      const opened = await file.stat();
      if (!sameFile(info, opened) || checkDrop(opened, limits).kind !== "ok") return;
      if (kind.kind === "request") {
        this.#takeRequest(name, file, opened);
        return;
      }
      const reason = await acceptDrop(this.#core, kind.hex, file, 0);
      if (reason !== undefined) {
        ctx.log("warning", { event: "setaside", drop: name, uid: 0, reason });
      }
      await file.truncate(0);
      if (reason === undefined) this.#core.pump();
    } catch (err) {
      ctx.log("err", { event: "intake-error", drop: name, reason: String(err) });
    } finally {
      file.close();
    }
  }

  /** Starts answering root's request `name` (once: its file holds it until answered). */
  #takeRequest(name: string, file: Deno.FsFile, opened: DropStat): void {
    const answering = this.#requests.answering;
    if (answering.has(name)) return;
    const text = readFileCapped(file, MAX_REQUEST_SIZE);
    if (text === undefined || text.includes('"reply"')) return; // answered already
    answering.add(name);
    this.#core.track(this.#requests.answerRoot(name, opened, parseServiceRequest(text)));
  }
}
