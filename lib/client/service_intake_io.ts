/**
 * The satellite service's intake: takes what local users drop into the
 * sticky `drop/` directory and what root leaves in `root/`, and queues it
 * (or hands a request to lib/client/service_requests_io.ts).
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

import { MailError } from "../shared/errors.ts";
import { prefixedReader, type Spooled, spoolMessage } from "../shared/spool_io.ts";
import { parseSendmailArgs, type SendmailRequest } from "../shared/sendmail_args.ts";
import { normalizeSender } from "./client_args.ts";
import {
  checkDrop,
  classifyDropName,
  type DropStat,
  MAX_DROP_HEADER,
  MAX_REQUEST_SIZE,
  parseDropHeader,
  parseServiceRequest,
  sameFile,
  STALE_TEMP_MS,
} from "./drop.ts";
import { readFileCapped, readHeadLine } from "./drop_read_io.ts";
import { loginOfUid, prepareLocal } from "./prepare_local_io.ts";
import { newMessageId, type QueueHeader, queueHeader } from "./queue_entry.ts";
import type { ServiceCore } from "./service_context.ts";
import type { Requests } from "./service_requests_io.ts";

/** A temp name younger than this is a submitter writing now (older: a slow or dead one). */
const WRITING_MS = 2_000;

/** Takes drops into the queue. */
export class Intake {
  readonly #core: ServiceCore;
  readonly #requests: Requests;
  #running = false;
  #again = false;
  /** Names in drop/ that cannot be claimed (logged once). */
  readonly #stuck = new Set<string>();
  /** The last read of drop/ saw a temp name a submitter is writing now. */
  #writing = false;

  constructor(core: ServiceCore, requests: Requests) {
    this.#core = core;
    this.#requests = requests;
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

  /** Empties root's message drops that are queued already (`uid:hex` in `queued`). */
  async forgetQueuedRootDrops(queued: Set<string>): Promise<void> {
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
        const rootNames: string[] = [];
        for await (const e of Deno.readDir(`${root}/root`)) rootNames.push(e.name);
        for (const name of rootNames) {
          if (this.#core.stopping) return;
          await this.#takeRootDrop(name);
        }
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
      await Deno.rename(`${root}/drop/${name}`, `${root}/incoming/${name}`);
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

  /**
   * Takes one of root's drops from `root/` (root's directory: the service
   * may read and empty the files there, not remove them). A taken file is
   * emptied; root's next submission removes it. A request is answered in
   * its own file.
   */
  async #takeRootDrop(name: string): Promise<void> {
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
        await this.#takeRootRequest(name, file, opened);
        return;
      }
      const reason = await this.#accept(kind.hex, file, 0);
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
  async #takeRootRequest(name: string, file: Deno.FsFile, opened: DropStat): Promise<void> {
    const answering = this.#requests.answering;
    if (answering.has(name)) return;
    const text = await readFileCapped(file, MAX_REQUEST_SIZE);
    if (text === undefined || text.includes('"reply"')) return; // answered already
    answering.add(name);
    this.#core.track(this.#requests.answerRoot(name, opened, parseServiceRequest(text)));
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
      info = await Deno.lstat(path);
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
      file = await Deno.open(path, { read: true });
    } catch {
      await this.#setAside(name, "cannot open", verdict.uid);
      return;
    }
    try {
      const opened = await file.stat();
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
    const text = await readFileCapped(file, MAX_REQUEST_SIZE);
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
    const reason = await this.#accept(hex, file, uid);
    file.close();
    if (reason === undefined) {
      // Gone before it can be sent: a drop left after a delivery would go again.
      await Deno.remove(`${this.#core.root}/incoming/${name}`).catch(() => {});
      this.#core.pump();
    } else {
      await this.#setAside(name, reason, uid);
    }
  }

  /** Copies a checked message drop into the queue; returns why not, when it cannot. */
  async #accept(hex: string, file: Deno.FsFile, uid: number): Promise<string | undefined> {
    const { ctx } = this.#core;
    const s = ctx.settings;
    const head = await readHeadLine(file, MAX_DROP_HEADER);
    if (!head) return "no request line";
    const words = parseDropHeader(head.line);
    if (!words) return "malformed request line";
    let req;
    try {
      req = normalizeSender(parseSendmailArgs(["sendmail", ...words]));
    } catch (err) {
      return `request refused (${err instanceof MailError ? err.message : "invalid"})`;
    }
    let spool;
    try {
      spool = await spoolMessage(prefixedReader(head.rest, file), {
        dir: ctx.spoolDir,
        prefix: "sshsendmail",
        maxSize: s.maxSize,
        idleTimeoutMs: 60_000,
      });
    } catch (err) {
      return err instanceof MailError ? err.message : "cannot read";
    }
    const login = await loginOfUid(uid);
    let prepared;
    try {
      prepared = await prepareLocal(await ctx.policy(), login, req, spool, {
        spoolDir: ctx.spoolDir,
        maxSize: s.maxSize + 4096,
        idleTimeoutMs: 60_000,
      });
    } catch (err) {
      spool.file.close();
      return `request refused (${err instanceof MailError ? err.message : "invalid"})`;
    }
    try {
      await this.#enqueue(hex, uid, prepared);
      return undefined;
    } finally {
      if (prepared.spool !== spool) prepared.spool.file.close();
      spool.file.close();
    }
  }

  /** Queues a prepared message and tracks it. */
  async #enqueue(
    hex: string,
    uid: number,
    prepared: { req: SendmailRequest; spool: Spooled },
  ): Promise<void> {
    const { ctx, queue, book } = this.#core;
    const id = newMessageId(crypto.randomUUID());
    const header: QueueHeader = {
      ...queueHeader(id, prepared.req, prepared.spool, Date.now()),
      uid,
      drop: hex,
    };
    const path = await queue.enqueue(header, prepared.spool);
    book.add({
      header,
      state: undefined,
      path,
      bodyOffset: new TextEncoder().encode(`${JSON.stringify(header)}\n`).length,
    });
    ctx.log("info", {
      event: "accepted",
      drop: hex,
      id,
      uid,
      sender: `<${header.sender ?? ""}>`,
      rcpts: header.extractRecipients ? "headers" : header.recipients.length,
      size: header.size,
    });
  }
}
