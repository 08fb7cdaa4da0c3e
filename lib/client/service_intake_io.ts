/**
 * The satellite service's intake: takes what local users drop into the
 * sticky `drop/` directory, and what root leaves in `root/`
 * (lib/client/root_drops_io.ts), and queues it
 * (lib/client/accept_drop_io.ts) or hands a request to
 * lib/client/service_requests_io.ts.
 *
 * Security: every name in the drop directory belongs to a user. A drop is
 * first renamed into the private `incoming/` directory (rename moves a
 * symlink itself, never its target), checked there with lstat (a regular
 * file, one link, not the service's own, under the size cap), opened, and
 * checked again on the open descriptor (same device and inode). Anything
 * else is moved to `hold/` with one log line and never followed. The
 * service never works by path inside a directory another account can
 * write. Effectful edge module.
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
  STALE_TEMP_MS,
} from "./drop.ts";
import { readFileCapped } from "./drop_read_io.ts";
import { removeQuietly } from "../shared/spool_io.ts";
import { RootDrops } from "./root_drops_io.ts";
import type { ServiceCore } from "./service_context.ts";
import type { Requests } from "./service_requests_io.ts";

/** A temp name younger than this is a submitter writing now (older: a slow or dead one). */
const WRITING_MS = 2_000;

/** Takes drops into the queue. */
export class Intake {
  readonly #core: ServiceCore;
  readonly #requests: Requests;
  readonly #rootDrops: RootDrops;
  #running = false;
  #again = false;
  /** Names in drop/ that cannot be claimed (logged once). */
  readonly #stuck = new Set<string>();
  /** The last read of drop/ saw a temp name a submitter is writing now. */
  #writing = false;

  constructor(core: ServiceCore, requests: Requests) {
    this.#core = core;
    this.#requests = requests;
    this.#rootDrops = new RootDrops(core, requests);
  }

  /** Empties root's message drops that are queued already (`uid:hex` in `queued`). */
  forgetQueuedRootDrops(queued: Set<string>): Promise<void> {
    return this.#rootDrops.forgetQueued(queued);
  }

  /**
   * A submitter is writing a drop now (a fresh temp name at the last read):
   * its rename into place may leave drop/'s mtime as it was (the same
   * millisecond), so the poller reads again (lib/client/drop_poll.ts).
   */
  get writing(): boolean {
    return this.#writing;
  }

  /** Runs the intake now, or once more after the running one. */
  run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return Promise.resolve();
    }
    return this.#core.track(this.#loop());
  }

  /**
   * At start: takes what a service that stopped left in incoming/ (claimed,
   * not read). `queued` holds `uid:hex` of the drops queued already.
   */
  async takeIncoming(queued: Set<string>): Promise<void> {
    const { root, ctx } = this.#core;
    for await (const e of Deno.readDir(`${root}/incoming`)) {
      const name = classifyDropName(e.name);
      if (name.kind !== "message" && name.kind !== "request") {
        await this.#setAside(e.name, "unexpected name", undefined);
        continue;
      }
      if (name.kind === "message") {
        const path = `${root}/incoming/${e.name}`;
        const uid = (await Deno.lstat(path).catch(() => undefined))?.uid;
        if (queued.has(`${uid}:${name.hex}`)) {
          await Deno.remove(path).catch(() => {});
          ctx.log("info", { event: "already-queued", drop: name.hex, uid: uid ?? "-" });
          continue;
        }
      }
      await this.#process(e.name, name.kind, name.hex);
    }
  }

  async #loop(): Promise<void> {
    const { root, ctx } = this.#core;
    this.#running = true;
    try {
      do {
        this.#again = false;
        this.#writing = false;
        const names: string[] = [];
        for await (const e of Deno.readDir(`${root}/drop`)) names.push(e.name);
        for (const name of names) {
          if (this.#core.stopping) return;
          await this.#takeDrop(name);
        }
        await this.#rootDrops.takeAll();
      } while (this.#again && !this.#core.stopping);
    } catch (err) {
      ctx.log("err", { event: "intake-error", reason: String(err) });
    } finally {
      this.#running = false;
    }
  }

  /** Claims one name of the drop directory (moves it into incoming/) and processes it. */
  async #takeDrop(name: string): Promise<void> {
    const root = this.#core.root;
    const kind = classifyDropName(name);
    if (kind.kind === "temp") {
      // Still being written, unless its writer died long ago.
      const info = await Deno.lstat(`${root}/drop/${name}`).catch(() => undefined);
      const age = Date.now() - (info?.mtime?.getTime() ?? Date.now());
      if (info && age < WRITING_MS) this.#writing = true;
      if (!info || age < STALE_TEMP_MS) return;
    }
    if (this.#stuck.has(name)) return;
    try {
      Deno.renameSync(`${root}/drop/${name}`, `${root}/incoming/${name}`);
    } catch {
      await this.#noteStuck(name);
      return;
    }
    if (kind.kind === "message" || kind.kind === "request") {
      await this.#process(name, kind.kind, kind.hex);
    } else {
      const uid = (await Deno.lstat(`${root}/incoming/${name}`).catch(() => undefined))?.uid;
      await this.#setAside(
        name,
        kind.kind === "temp" ? "abandoned while written" : "unexpected name",
        uid ?? undefined,
      );
    }
  }

  /**
   * A name that could not be claimed: vanished (its owner took it back), or
   * a directory of another account, which cannot move to another parent:
   * left alone, once.
   */
  async #noteStuck(name: string): Promise<void> {
    const info = await Deno.lstat(`${this.#core.root}/drop/${name}`).catch(() => undefined);
    if (!info) return;
    this.#stuck.add(name);
    this.#core.ctx.log("warning", {
      event: "setaside",
      drop: name,
      uid: info.uid ?? "-",
      reason: `cannot be moved (${info.isDirectory ? "directory" : "not movable"}), left in drop/`,
    });
  }

  /** Moves a claimed name to hold/ with one log line. */
  async #setAside(name: string, reason: string, uid: number | undefined): Promise<void> {
    const root = this.#core.root;
    const from = `${root}/incoming/${name}`;
    const base = `${root}/hold/${name}`;
    const taken = (path: string) => Deno.lstat(path).then(() => true, () => false);
    // A name set aside before keeps its entry (rename would replace it):
    // a user may reuse a name any number of times within one millisecond.
    let to = base;
    if (await taken(to)) to = `${base}.${Date.now()}`;
    for (let n = 2; await taken(to); n++) to = `${base}.${Date.now()}.${n}`;
    const moved = await Deno.rename(from, to).then(() => true, () => false);
    this.#core.ctx.log("warning", {
      event: "setaside",
      drop: name,
      uid: uid ?? "-",
      reason: moved ? reason : `${reason} (left in incoming/)`,
    });
  }

  /** Checks, reads and queues one claimed drop (or answers a request). */
  async #process(name: string, kind: "message" | "request", hex: string): Promise<void> {
    const { ctx } = this.#core;
    const path = `${this.#core.root}/incoming/${name}`;
    const limits = {
      serviceUid: ctx.uid,
      maxSize: kind === "message" ? ctx.settings.maxSize + MAX_DROP_HEADER : MAX_REQUEST_SIZE,
      allowServiceUid: kind === "request",
    };
    let info: DropStat;
    try {
      info = Deno.lstatSync(path);
    } catch {
      return;
    }
    const verdict = checkDrop(info, limits);
    if (verdict.kind === "refused") {
      await this.#setAside(name, verdict.reason, info.uid ?? undefined);
      return;
    }
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true });
    } catch {
      await this.#setAside(name, "cannot open", verdict.uid);
      return;
    }
    try {
      const opened = file.statSync();
      const again = checkDrop(opened, limits);
      if (!sameFile(info, opened) || again.kind !== "ok" || again.uid !== verdict.uid) {
        file.close();
        await this.#setAside(name, "replaced between check and open", verdict.uid);
      } else if (kind === "request") {
        await this.#processRequest(name, hex, file, verdict.uid);
      } else {
        await this.#processMessage(name, hex, file, verdict.uid);
      }
    } catch (err) {
      try {
        file.close();
      } catch { /* closed already */ }
      ctx.log("err", { event: "intake-error", drop: name, reason: String(err) });
      await this.#setAside(name, "cannot read", verdict.uid);
    }
  }

  /** A user's checked request: read, removed, answered in reply/ (closes `file`). */
  async #processRequest(name: string, hex: string, file: Deno.FsFile, uid: number): Promise<void> {
    const text = readFileCapped(file, MAX_REQUEST_SIZE);
    file.close();
    await Deno.remove(`${this.#core.root}/incoming/${name}`).catch(() => {});
    const request = text === undefined ? undefined : parseServiceRequest(text);
    if (!request) {
      this.#core.ctx.log("warning", { event: "bad-request", drop: name, uid });
      await this.#requests.reply(hex, { ok: false, error: "malformed request" });
      return;
    }
    this.#core.track(this.#requests.answer(hex, uid, request));
  }

  /** A user's checked message drop: queued and removed, or set aside (closes `file`). */
  async #processMessage(name: string, hex: string, file: Deno.FsFile, uid: number): Promise<void> {
    const reason = await acceptDrop(this.#core, hex, file, uid);
    file.close();
    if (reason === undefined) {
      // Gone before it can be sent: a drop left after a delivery would go again.
      removeQuietly(`${this.#core.root}/incoming/${name}`);
      this.#core.pump();
    } else {
      await this.#setAside(name, reason, uid);
    }
  }
}
