/**
 * The satellite's delivery service (`sshsendmail --serve`): runs as its own
 * unprivileged account, takes messages that local users drop into its
 * sticky drop directory, copies them into its private queue, and delivers
 * them over one batch session to the relay that it keeps open while mail
 * flows. Retries with backoff, expires with a notice, answers `mailq`,
 * `sendmail -q` and `--remove` requests. Effectful edge module.
 *
 * Security: every name in the drop directory belongs to a user. A drop is
 * first renamed into the private `incoming/` directory (rename moves a
 * symlink itself, never its target), checked there with lstat (a regular
 * file, one link, not the service's own, under the size cap), opened, and
 * checked again on the open descriptor (same device and inode). Anything
 * else is moved to `hold/` with one log line and never followed. The
 * service never works by path inside a directory another account can write.
 *
 * @module
 */

import { frameHeader, parseReply } from "../shared/batch.ts";
import { type BatchSession, spawnBatchSession } from "./batch_channel_io.ts";
import type { ClientSettings } from "./client_config.ts";
import {
  checkDrop,
  classifyDropName,
  type DropStat,
  type ListedMessage,
  MAX_DROP_HEADER,
  MAX_REQUEST_SIZE,
  mayAccess,
  parseDropHeader,
  parseServiceRequest,
  sameFile,
  type ServiceReply,
  type ServiceRequest,
  STALE_TEMP_MS,
} from "./drop.ts";
import { MailError } from "../shared/errors.ts";
import { isTemporary } from "../shared/exit_codes.ts";

import type { LocalPolicy } from "./local_mail.ts";
import { formatLogLine, type LogFields } from "../shared/log_line.ts";
import { giveChunk, prefixedReader, spoolMessage, takeChunk } from "../shared/pipeline_io.ts";
import { loginOfUid, prepareLocal } from "./prepare_local_io.ts";
import { openQueue, type Queue, type QueueEntry } from "./queue_io.ts";
import {
  backoffMs,
  failureNotice,
  formatAge,
  frameWordsOf,
  newMessageId,
  type QueueHeader,
  queueHeader,
} from "./queue_entry.ts";
import { normalizeSender } from "./client_args.ts";
import { shortQueueId } from "./mailq.ts";
import { parseSendmailArgs } from "../shared/sendmail_args.ts";
import { Sha256 } from "../shared/sha256.ts";
import { classifyExit, type Failure } from "./ssh_command.ts";
import { checkSpool } from "./spool_init_io.ts";
import { ALIVE_FILE } from "./spool_layout.ts";

/** What the service needs from its edge. */
export interface ServiceContext {
  settings: ClientSettings;
  /** The account's uid (this process's). */
  uid: number;
  /** The account's group (owns root/ with root). */
  gid: number;
  hostname: string;
  sshPath: string;
  env: Record<string, string>;
  program: string;
  /** Where spooled copies go (unlinked at creation). */
  spoolDir: string;
  log: ServiceLog;
  policy: () => Promise<LocalPolicy>;
}

/** syslog severities the service uses. */
export type Severity = "info" | "warning" | "err";

/** The service's log sink: one line per event. */
export type ServiceLog = (severity: Severity, fields: LogFields) => void;

/** Relay batch sessions end (and a new one starts) after this many frames. */
const FRAMES_PER_SESSION = 10_000;
/**
 * … or after this long (well inside the relay's --session-timeout, default
 * an hour, which would cut frames already written).
 */
const SESSION_MAX_AGE_MS = 20 * 60_000;
/** Frames written ahead of the relay's replies. */
const WINDOW = 32;
/** The fallback sweep of the drop directories (a missed change). */
const SWEEP_MS = 15_000;
/** How often the drop directory's mtime is looked at while mail flows (entries are never watched). */
const DROP_POLL_MS = 3;
/** … and when nothing was dropped for DROP_HOT_MS (an idle service stays nearly idle). */
const DROP_IDLE_POLL_MS = 50;
const DROP_HOT_MS = 5_000;
/** A drop directory changed this recently is read again (file times tick with a coarse clock). */
const DROP_RECENT_MS = 50;
/** How often `alive` is refreshed. */
const ALIVE_MS = 5_000;
/** Replies nobody read are removed after this. */
const REPLY_TTL_MS = 60_000;

/** One queued message as the service tracks it. */
interface Item {
  entry: QueueEntry;
  /** Written to the relay, reply pending. */
  busy: boolean;
  /** A flush asked for it: ignore its backoff once. */
  forced: boolean;
}

/** How one attempt at a message ended. */
type Outcome = "delivered" | "deferred" | "failed" | "expired" | "removed";

/** A batch session to the relay with its frames in flight. */
interface Session {
  bs: BatchSession;
  host: string;
  inflight: Item[];
  answered: number;
  written: number;
  /** When it was spawned (ms since the epoch). */
  opened: number;
  /** END sent: no more frames. */
  ending: boolean;
  writes: Promise<void>;
  watchdog: ReturnType<typeof setTimeout> | undefined;
  /** The watchdog killed it: the relay did not answer within ssh_timeout. */
  timedOut: boolean;
  idle: ReturnType<typeof setTimeout> | undefined;
  done: Promise<void>;
}

/** The running service. */
export class Service {
  readonly #ctx: ServiceContext;
  readonly #root: string;
  readonly #queue: Queue;
  readonly #items = new Map<string, Item>();
  readonly #waiters = new Map<string, Array<(o: Outcome) => void>>();
  #session: Session | undefined;
  #hostIndex = 0;
  /** A session failed since the last delivery: retries wait for their backoff. */
  #relayDown = false;
  #intakeRunning = false;
  #intakeAgain = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #stopping = false;
  readonly #pending = new Set<Promise<unknown>>();
  /** Names in drop/ that cannot be claimed (logged once). */
  readonly #stuck = new Set<string>();
  /** root's requests being answered (their files still hold the request). */
  readonly #answering = new Set<string>();

  private constructor(ctx: ServiceContext, queue: Queue) {
    this.#ctx = ctx;
    this.#root = ctx.settings.spool;
    this.#queue = queue;
  }

  /** Prepares the spool, loads the queue and takes what waits in incoming/. */
  static async open(ctx: ServiceContext): Promise<Service> {
    await checkSpool(ctx.settings.spool, { serviceUid: ctx.uid, serviceGid: ctx.gid });
    const queue = await openQueue(`${ctx.settings.spool}/queue`, ctx.uid);
    const service = new Service(ctx, queue);
    await queue.sweepTmp(Date.now());
    for (const entry of await queue.list()) {
      service.#items.set(entry.header.id, { entry, busy: false, forced: false });
    }
    await service.#noteOldQueues();
    // A service that stopped between queueing a drop and removing (root's:
    // emptying) it left the drop behind: it is queued already.
    const queued = new Set(
      [...service.#items.values()].map((i) => `${i.entry.header.uid}:${i.entry.header.drop}`),
    );
    await service.#forgetQueuedRootDrops(queued);
    // Drops claimed by a service that stopped before it read them.
    for await (const e of Deno.readDir(`${service.#root}/incoming`)) {
      const name = classifyDropName(e.name);
      if (name.kind === "message" || name.kind === "request") {
        if (name.kind === "message") {
          const path = `${service.#root}/incoming/${e.name}`;
          const uid = (await Deno.lstat(path).catch(() => undefined))?.uid;
          if (queued.has(`${uid}:${name.hex}`)) {
            await Deno.remove(path).catch(() => {});
            ctx.log("info", { event: "already-queued", drop: name.hex, uid: uid ?? "-" });
            continue;
          }
        }
        await service.#process(e.name, name.kind, name.hex);
      } else {
        await service.#setAside(e.name, "unexpected name", undefined);
      }
    }
    return service;
  }

  /** Empties root's message drops that are queued already (`uid:hex` in `queued`). */
  async #forgetQueuedRootDrops(queued: Set<string>): Promise<void> {
    for await (const e of Deno.readDir(`${this.#root}/root`)) {
      const kind = classifyDropName(e.name);
      if (kind.kind !== "message" || !queued.has(`0:${kind.hex}`)) continue;
      const path = `${this.#root}/root/${e.name}`;
      const info = await Deno.lstat(path).catch(() => undefined);
      if (!info?.isFile || info.uid !== 0 || info.size === 0) continue;
      try {
        const file = await Deno.open(path, { write: true });
        try {
          if (sameFile(info, await file.stat())) await file.truncate(0);
        } finally {
          file.close();
        }
        this.#ctx.log("info", { event: "already-queued", drop: kind.hex, uid: 0 });
      } catch {
        // root's next submission or the intake sees it again
      }
    }
  }

  /** Number of messages waiting. */
  get size(): number {
    return this.#items.size;
  }

  /** The old per-user queues (`<uid>/`) are their owners' to migrate. */
  async #noteOldQueues(): Promise<void> {
    for await (const e of Deno.readDir(this.#root)) {
      if (!/^[0-9]+$/.test(e.name)) continue;
      this.#ctx.log("warning", {
        event: "old-queue",
        dir: `${this.#root}/${e.name}`,
        note: "run sshsendmail --migrate as its owner",
      });
    }
  }

  /** Writes `alive` (the service's pid; its mtime says it runs). */
  async touchAlive(pid: number): Promise<void> {
    const path = `${this.#root}/${ALIVE_FILE}`;
    const tmp = `${path}.tmp`;
    await Deno.writeTextFile(tmp, `${pid}\n`, { mode: 0o644 });
    await Deno.chmod(tmp, 0o644);
    await Deno.rename(tmp, path);
  }

  /** Removes `alive` on a clean stop. */
  async clearAlive(): Promise<void> {
    await Deno.remove(`${this.#root}/${ALIVE_FILE}`).catch(() => {});
  }

  /** Runs the intake now, or once more after the running one. */
  intake(): Promise<void> {
    if (this.#intakeRunning) {
      this.#intakeAgain = true;
      return Promise.resolve();
    }
    return this.#track(this.#intakeLoop());
  }

  async #intakeLoop(): Promise<void> {
    this.#intakeRunning = true;
    try {
      do {
        this.#intakeAgain = false;
        const names: string[] = [];
        for await (const e of Deno.readDir(`${this.#root}/drop`)) names.push(e.name);
        for (const name of names) {
          if (this.#stopping) return;
          await this.#takeDrop(name);
        }
        const rootNames: string[] = [];
        for await (const e of Deno.readDir(`${this.#root}/root`)) rootNames.push(e.name);
        for (const name of rootNames) {
          if (this.#stopping) return;
          await this.#takeRootDrop(name);
        }
      } while (this.#intakeAgain && !this.#stopping);
    } catch (err) {
      this.#ctx.log("err", { event: "intake-error", reason: String(err) });
    } finally {
      this.#intakeRunning = false;
    }
  }

  /** Claims one name of the drop directory (moves it into incoming/) and processes it. */
  async #takeDrop(name: string): Promise<void> {
    const kind = classifyDropName(name);
    if (kind.kind === "temp") {
      // Still being written, unless its writer died long ago.
      const info = await Deno.lstat(`${this.#root}/drop/${name}`).catch(() => undefined);
      const age = Date.now() - (info?.mtime?.getTime() ?? Date.now());
      if (!info || age < STALE_TEMP_MS) return;
    }
    if (this.#stuck.has(name)) return;
    try {
      await Deno.rename(`${this.#root}/drop/${name}`, `${this.#root}/incoming/${name}`);
    } catch {
      // Vanished (its owner took it back), or a directory of another
      // account, which cannot move to another parent: left alone, once.
      const info = await Deno.lstat(`${this.#root}/drop/${name}`).catch(() => undefined);
      if (info) {
        this.#stuck.add(name);
        this.#ctx.log("warning", {
          event: "setaside",
          drop: name,
          uid: info.uid ?? "-",
          reason: `cannot be moved (${
            info.isDirectory ? "directory" : "not movable"
          }), left in drop/`,
        });
      }
      return;
    }
    if (kind.kind === "message" || kind.kind === "request") {
      await this.#process(name, kind.kind, kind.hex);
    } else {
      const uid = (await Deno.lstat(`${this.#root}/incoming/${name}`).catch(() => undefined))?.uid;
      await this.#setAside(
        name,
        kind.kind === "temp" ? "abandoned while written" : "unexpected name",
        uid ?? undefined,
      );
    }
  }

  /**
   * Takes one of root's drops from `root/` (root's directory: the service
   * may read and empty the files there, not remove them). A taken file is
   * emptied; root's next submission removes it. A request is answered in
   * its own file.
   */
  async #takeRootDrop(name: string): Promise<void> {
    const kind = classifyDropName(name);
    if (kind.kind !== "message" && kind.kind !== "request") return;
    const path = `${this.#root}/root/${name}`;
    const info = await Deno.lstat(path).catch(() => undefined);
    if (!info || info.size === 0) return; // taken already
    const limits = {
      serviceUid: this.#ctx.uid,
      maxSize: kind.kind === "message"
        ? this.#ctx.settings.maxSize + MAX_DROP_HEADER
        : MAX_REQUEST_SIZE,
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
        if (this.#answering.has(name)) return;
        const text = await readCapped(file, MAX_REQUEST_SIZE);
        if (text === undefined || text.includes('"reply"')) return; // answered already
        this.#answering.add(name);
        this.#track(this.#answerRoot(name, opened, parseServiceRequest(text)));
        return;
      }
      const reason = await this.#accept(name, kind.hex, file, 0);
      if (reason !== undefined) {
        this.#ctx.log("warning", { event: "setaside", drop: name, uid: 0, reason });
      }
      await file.truncate(0);
      if (reason === undefined) this.pump();
    } catch (err) {
      this.#ctx.log("err", { event: "intake-error", drop: name, reason: String(err) });
    } finally {
      file.close();
    }
  }

  /** Answers one of root's requests inside its own file. */
  async #answerRoot(
    name: string,
    info: DropStat,
    request: ServiceRequest | undefined,
  ): Promise<void> {
    try {
      const reply: ServiceReply = request
        ? await this.#perform(0, request).catch(() => ({ ok: false, error: "internal error" }))
        : { ok: false, error: "malformed request" };
      const file = await Deno.open(`${this.#root}/root/${name}`, { read: true, write: true });
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
      this.#ctx.log("err", { event: "request-error", drop: name, reason: String(err) });
    } finally {
      this.#answering.delete(name);
    }
  }

  /** Moves a claimed name to hold/ with one log line. */
  async #setAside(name: string, reason: string, uid: number | undefined): Promise<void> {
    const from = `${this.#root}/incoming/${name}`;
    const base = `${this.#root}/hold/${name}`;
    const taken = (path: string) => Deno.lstat(path).then(() => true, () => false);
    // A name set aside before keeps its entry (rename would replace it):
    // a user may reuse a name any number of times within one millisecond.
    let to = base;
    if (await taken(to)) to = `${base}.${Date.now()}`;
    for (let n = 2; await taken(to); n++) to = `${base}.${Date.now()}.${n}`;
    const moved = await Deno.rename(from, to).then(() => true, () => false);
    this.#ctx.log("warning", {
      event: "setaside",
      drop: name,
      uid: uid ?? "-",
      reason: moved ? reason : `${reason} (left in incoming/)`,
    });
  }

  /** Checks, reads and queues one claimed drop (or answers a request). */
  async #process(name: string, kind: "message" | "request", hex: string): Promise<void> {
    const path = `${this.#root}/incoming/${name}`;
    const limits = {
      serviceUid: this.#ctx.uid,
      maxSize: kind === "message" ? this.#ctx.settings.maxSize + MAX_DROP_HEADER : MAX_REQUEST_SIZE,
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
        return;
      }
      if (kind === "request") {
        const text = await readCapped(file, MAX_REQUEST_SIZE);
        file.close();
        await Deno.remove(path).catch(() => {});
        const request = text === undefined ? undefined : parseServiceRequest(text);
        if (!request) {
          this.#ctx.log("warning", { event: "bad-request", drop: name, uid: verdict.uid });
          await this.#reply(hex, { ok: false, error: "malformed request" });
          return;
        }
        this.#track(this.#answer(hex, verdict.uid, request));
        return;
      }
      const reason = await this.#accept(name, hex, file, verdict.uid);
      file.close();
      if (reason === undefined) {
        // Gone before it can be sent: a drop left after a delivery would go again.
        await Deno.remove(path).catch(() => {});
        this.pump();
      } else {
        await this.#setAside(name, reason, verdict.uid);
      }
    } catch (err) {
      try {
        file.close();
      } catch { /* closed already */ }
      this.#ctx.log("err", { event: "intake-error", drop: name, reason: String(err) });
      await this.#setAside(name, "cannot read", verdict.uid);
    }
  }

  /** Copies a checked message drop into the queue; returns why not, when it cannot. */
  async #accept(
    name: string,
    hex: string,
    file: Deno.FsFile,
    uid: number,
  ): Promise<string | undefined> {
    const s = this.#ctx.settings;
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
        dir: this.#ctx.spoolDir,
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
      prepared = await prepareLocal(await this.#ctx.policy(), login, req, spool, {
        spoolDir: this.#ctx.spoolDir,
        maxSize: s.maxSize + 4096,
        idleTimeoutMs: 60_000,
      });
    } catch (err) {
      spool.file.close();
      return `request refused (${err instanceof MailError ? err.message : "invalid"})`;
    }
    try {
      const id = newMessageId(crypto.randomUUID());
      const header: QueueHeader = {
        ...queueHeader(id, prepared.req, prepared.spool, Date.now()),
        uid,
        drop: hex,
      };
      const path = await this.#queue.enqueue(header, prepared.spool);
      const entry: QueueEntry = {
        header,
        state: undefined,
        path,
        bodyOffset: new TextEncoder().encode(`${JSON.stringify(header)}\n`).length,
      };
      this.#items.set(id, { entry, busy: false, forced: false });
      this.#ctx.log("info", {
        event: "accepted",
        drop: hex,
        id,
        uid,
        sender: `<${header.sender ?? ""}>`,
        rcpts: header.extractRecipients ? "headers" : header.recipients.length,
        size: header.size,
      });
      void name;
      return undefined;
    } finally {
      if (prepared.spool !== spool) prepared.spool.file.close();
      spool.file.close();
    }
  }

  /** Writes a reply where only the requester knows its name. */
  async #reply(hex: string, reply: ServiceReply): Promise<void> {
    const tmp = `${this.#root}/reply/.${hex}`;
    await Deno.writeTextFile(tmp, JSON.stringify(reply), { mode: 0o644 });
    await Deno.chmod(tmp, 0o644);
    await Deno.rename(tmp, `${this.#root}/reply/${hex}`);
  }

  async #answer(hex: string, uid: number, request: ServiceRequest): Promise<void> {
    let reply: ServiceReply;
    try {
      reply = await this.#perform(uid, request);
    } catch (err) {
      this.#ctx.log("err", { event: "request-error", op: request.op, reason: String(err) });
      reply = { ok: false, error: "internal error" };
    }
    await this.#reply(hex, reply).catch(() => {});
  }

  #mine(uid: number): Item[] {
    return [...this.#items.values()].filter((i) =>
      mayAccess(uid, this.#ctx.uid, i.entry.header.uid)
    );
  }

  async #perform(uid: number, request: ServiceRequest): Promise<ServiceReply> {
    switch (request.op) {
      case "list":
        return { ok: true, op: "list", messages: this.#mine(uid).map(listed) };
      case "remove": {
        // The full id, or mailq's short one (unique among what the caller sees).
        const matches = this.#mine(uid).filter((i) =>
          i.entry.header.id === request.id || shortQueueId(i.entry.header.id) === request.id
        );
        const item = matches.length === 1 ? matches[0] : undefined;
        if (!item || !mayAccess(uid, this.#ctx.uid, item.entry.header.uid)) {
          return { ok: true, op: "remove", removed: false };
        }
        if (item.busy) return { ok: false, error: "the message is being delivered right now" };
        const id = item.entry.header.id;
        await this.#queue.remove(id);
        this.#items.delete(id);
        this.#settle(id, "removed");
        this.#ctx.log("info", { event: "removed", id, by: uid });
        return { ok: true, op: "remove", removed: true };
      }
      case "flush": {
        // Like `postqueue -f`: the whole queue runs now; the answer counts
        // only what the caller may see.
        await this.intake();
        const mine = new Set(this.#mine(uid).map((i) => i.entry.header.id));
        const outcomes = [...this.#items.values()].map((item) => {
          item.forced = true;
          const id = item.entry.header.id;
          return this.#outcome(id).then((o) => (mine.has(id) ? o : undefined));
        });
        this.pump();
        const done = await Promise.all(outcomes);
        const count = (o: Outcome) => done.filter((d) => d === o).length;
        const left = this.#mine(uid);
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
    }
  }

  #outcome(id: string): Promise<Outcome> {
    return new Promise((resolve) => {
      const list = this.#waiters.get(id) ?? [];
      list.push(resolve);
      this.#waiters.set(id, list);
    });
  }

  #settle(id: string, outcome: Outcome): void {
    const list = this.#waiters.get(id);
    this.#waiters.delete(id);
    for (const resolve of list ?? []) resolve(outcome);
  }

  /** Sends what is due; expires what is too old; plans the next retry. */
  pump(): void {
    if (this.#stopping) return;
    const now = Date.now();
    const due: Item[] = [];
    for (const item of this.#items.values()) {
      if (item.busy) continue;
      const h = item.entry.header;
      if (h.created + this.#ctx.settings.maxAgeMs < now) {
        item.busy = true;
        this.#track(this.#expire(item, now));
        continue;
      }
      if (item.forced || (item.entry.state?.nextAttempt ?? 0) <= now) due.push(item);
    }
    due.sort((a, b) => a.entry.header.created - b.entry.header.created);
    if (this.#ctx.settings.hosts.length === 0) {
      // Accepting mail before `setup` is fine; it waits for a relay.
      const line = `4.3.5 ${this.#ctx.program}: no relay configured (host in the config file)`;
      for (const item of due) {
        item.busy = true;
        this.#track(this.#defer(item, line, "-"));
      }
      this.#planRetry(now);
      return;
    }
    let s = this.#session;
    for (const item of due) {
      if (s && (s.ending || s.inflight.length >= WINDOW)) break;
      if (!s) s = this.#openSession();
      this.#send(s, item);
      if (s.written >= FRAMES_PER_SESSION || Date.now() - s.opened > SESSION_MAX_AGE_MS) {
        this.#endSession(s);
      }
    }
    this.#planRetry(now);
  }

  #planRetry(now: number): void {
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    let next = Infinity;
    for (const item of this.#items.values()) {
      if (item.busy) continue;
      const at = Math.min(
        item.entry.state?.nextAttempt ?? now,
        item.entry.header.created + this.#ctx.settings.maxAgeMs + 1,
      );
      next = Math.min(next, at);
    }
    if (next === Infinity || (this.#session && next <= now)) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.pump();
    }, Math.min(Math.max(next - now, 50), 2 ** 31 - 1));
  }

  #openSession(): Session {
    const s = this.#ctx.settings;
    const host = s.hosts[this.#hostIndex % s.hosts.length]!;
    const bs = spawnBatchSession(s, host, {
      sshPath: this.#ctx.sshPath,
      env: this.#ctx.env,
      program: this.#ctx.program,
    });
    const session: Session = {
      bs,
      host,
      inflight: [],
      answered: 0,
      written: 0,
      opened: Date.now(),
      ending: false,
      writes: Promise.resolve(),
      watchdog: undefined,
      timedOut: false,
      idle: undefined,
      done: Promise.resolve(),
    };
    session.done = this.#track(this.#read(session));
    this.#session = session;
    return session;
  }

  #send(s: Session, item: Item): void {
    item.busy = true;
    item.forced = false;
    s.inflight.push(item);
    s.written++;
    if (s.idle !== undefined) clearTimeout(s.idle);
    s.idle = undefined;
    this.#arm(s);
    const encoder = new TextEncoder();
    s.writes = s.writes.then(async () => {
      try {
        await s.bs.writer.write(
          encoder.encode(`${frameHeader(frameWordsOf(item.entry.header))}\n`),
        );
        await this.#queue.copyBody(item.entry, s.bs.writer);
      } catch {
        // The session is gone: its reader defers what it did not answer.
      }
    });
  }

  /** Kills a session whose relay stops answering for ssh_timeout. */
  #arm(s: Session): void {
    if (s.watchdog !== undefined) clearTimeout(s.watchdog);
    s.watchdog = undefined;
    if (s.inflight.length === 0) return;
    s.watchdog = setTimeout(() => {
      s.watchdog = undefined;
      s.timedOut = true;
      this.#ctx.log("warning", { event: "relay-timeout", host: s.host });
      try {
        s.bs.child.kill();
      } catch { /* gone */ }
    }, this.#ctx.settings.sshTimeout * 1000);
  }

  #endSession(s: Session): void {
    if (s.ending) return;
    s.ending = true;
    if (s.idle !== undefined) clearTimeout(s.idle);
    s.idle = undefined;
    s.writes = s.writes.then(async () => {
      await s.bs.writer.write(new TextEncoder().encode("END\n")).catch(() => {});
      await s.bs.writer.close().catch(() => {});
    });
  }

  /** Reads a session's replies in order; when it ends, defers what was not answered. */
  async #read(s: Session): Promise<void> {
    let garbled = false;
    for await (const line of s.bs.lines) {
      const reply = parseReply(line);
      const item = s.inflight[0];
      if (!reply || !item || (reply.id !== item.entry.header.id && reply.id !== "-")) {
        garbled = true;
        try {
          s.bs.child.kill();
        } catch { /* gone */ }
        break;
      }
      s.inflight.shift();
      s.answered++;
      this.#arm(s);
      await this.#handleReply(s, item, reply.code, `${reply.status} ${reply.text}`);
      if (s.inflight.length === 0 && !s.ending) {
        this.pump();
        if (s.inflight.length === 0 && !s.ending && this.#session === s) {
          s.idle = setTimeout(() => this.#endSession(s), this.#ctx.settings.sessionIdle * 1000);
        }
      } else if (!s.ending) {
        this.pump();
      }
    }
    if (s.watchdog !== undefined) clearTimeout(s.watchdog);
    if (s.idle !== undefined) clearTimeout(s.idle);
    await s.writes;
    await s.bs.writer.close().catch(() => {});
    const status = await s.bs.child.status;
    const stderr = await s.bs.stderr;
    if (this.#session === s) this.#session = undefined;
    if (s.inflight.length === 0) {
      if (!s.ending) this.#hostIndex = 0;
      this.pump();
      return;
    }
    // ssh catches the watchdog's SIGTERM and exits 255: the timeout is known by the flag.
    const failure: Failure | undefined = garbled || s.timedOut
      ? undefined
      : classifyExit(status.code, stderr, this.#ctx.program);
    const line = failure?.line ??
      `4.4.2 ${this.#ctx.program}: ${
        garbled
          ? "the relay answered out of turn"
          : s.timedOut
          ? `no answer from the relay within ssh_timeout (${this.#ctx.settings.sshTimeout} s)`
          : "relay ended the batch early"
      }`;
    const pending = s.inflight.splice(0);
    const hosts = this.#ctx.settings.hosts.length;
    if (s.answered === 0 && failure?.connectPhase && this.#hostIndex + 1 < hosts) {
      this.#hostIndex++;
      this.#ctx.log("warning", { event: "relay-unreachable", host: s.host, reason: line });
      for (const item of pending) {
        item.busy = false;
        item.forced = true;
      }
      this.pump();
      return;
    }
    this.#hostIndex = 0;
    this.#relayDown = true;
    for (const item of pending) await this.#defer(item, line, s.host);
    if (failure?.connectPhase) {
      // No relay can be reached: what is due now would only meet the same
      // failure, one ssh attempt per window. It waits for its backoff.
      const now = Date.now();
      for (const item of this.#items.values()) {
        if (item.busy) continue;
        if (item.forced || (item.entry.state?.nextAttempt ?? 0) <= now) {
          item.forced = false;
          // Busy while its state is written: a pump meanwhile must not send it.
          item.busy = true;
          await this.#defer(item, line, s.host);
        }
      }
    }
    this.pump();
  }

  async #handleReply(s: Session, item: Item, code: number, line: string): Promise<void> {
    const h = item.entry.header;
    if (code === 0) {
      await this.#queue.remove(h.id);
      this.#items.delete(h.id);
      if (this.#relayDown) {
        // The relay is back: what waits for its backoff goes now.
        this.#relayDown = false;
        for (const other of this.#items.values()) if (!other.busy) other.forced = true;
      }
      this.#ctx.log("info", {
        event: line.includes("already delivered") ? "duplicate" : "delivered",
        id: h.id,
        uid: h.uid ?? "-",
        host: s.host,
        relay: line,
        sender: `<${h.sender ?? ""}>`,
        size: h.size,
        delay: formatAge(Date.now() - h.created),
      });
      this.#settle(h.id, "delivered");
    } else if (isTemporary(code)) {
      await this.#defer(item, line, s.host);
    } else {
      await this.#giveUp(item, line, "failed");
    }
  }

  async #defer(item: Item, line: string, host: string): Promise<void> {
    const h = item.entry.header;
    const attempts = (item.entry.state?.attempts ?? 0) + 1;
    const state = { attempts, lastError: line, nextAttempt: Date.now() + backoffMs(attempts) };
    await this.#queue.setState(h.id, state).catch(() => {});
    item.entry.state = state;
    item.busy = false;
    this.#ctx.log("warning", {
      event: "deferred",
      id: h.id,
      uid: h.uid ?? "-",
      host,
      attempts,
      reason: line,
    });
    this.#settle(h.id, "deferred");
  }

  async #expire(item: Item, now: number): Promise<void> {
    const reason = `not delivered within ${formatAge(this.#ctx.settings.maxAgeMs)} (${
      item.entry.state?.lastError ?? "relay unreachable"
    })`;
    await this.#giveUp(item, reason, "expired");
    void now;
    this.pump();
  }

  /** Gives up on a message: to failed/, and a notice to its sender through the queue. */
  async #giveUp(item: Item, reason: string, outcome: "failed" | "expired"): Promise<void> {
    const h = item.entry.header;
    if (h.sender !== null && h.sender !== "") {
      const headers = await this.#queue.headersOf(item.entry).catch(() => "");
      const body = new TextEncoder().encode(
        failureNotice(h, reason, this.#ctx.hostname, headers, new Date()),
      );
      const notice: QueueHeader = {
        v: 1,
        id: newMessageId(crypto.randomUUID()),
        sender: "",
        recipients: [h.sender],
        extractRecipients: false,
        created: Date.now(),
        size: body.length,
        sha256: new Sha256().update(body).hex(),
        ...(h.uid === undefined ? {} : { uid: h.uid }),
      };
      const path = await this.#queue.enqueue(notice, body);
      this.#items.set(notice.id, {
        entry: {
          header: notice,
          state: undefined,
          path,
          bodyOffset: new TextEncoder().encode(`${JSON.stringify(notice)}\n`).length,
        },
        busy: false,
        forced: false,
      });
    }
    await this.#queue.fail(h.id);
    this.#items.delete(h.id);
    this.#ctx.log(outcome === "expired" ? "warning" : "err", {
      event: outcome,
      id: h.id,
      uid: h.uid ?? "-",
      sender: `<${h.sender ?? ""}>`,
      reason,
    });
    this.#settle(h.id, outcome);
  }

  /** Housekeeping: replies nobody read, the fallback sweep. */
  async sweep(): Promise<void> {
    const now = Date.now();
    for await (const e of Deno.readDir(`${this.#root}/reply`)) {
      const path = `${this.#root}/reply/${e.name}`;
      const info = await Deno.lstat(path).catch(() => undefined);
      if (info && now - (info.mtime?.getTime() ?? now) > REPLY_TTL_MS) {
        await Deno.remove(path).catch(() => {});
      }
    }
    await this.intake();
    this.pump();
  }

  /** Stops taking work, ends the session, waits for what is running. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    const s = this.#session;
    if (s) {
      this.#endSession(s);
      const killer = setTimeout(() => {
        try {
          s.bs.child.kill();
        } catch { /* gone */ }
      }, 10_000);
      await s.done;
      clearTimeout(killer);
    }
    await Promise.allSettled([...this.#pending]);
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#pending.add(p);
    p.finally(() => this.#pending.delete(p)).catch(() => {});
    return p;
  }
}

/** The listing view of a queued message. */
function listed(item: Item): ListedMessage {
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

/** Reads at most `cap` bytes as text; undefined when there are more. */
async function readCapped(file: Deno.FsFile, cap: number): Promise<string | undefined> {
  const buffer = new Uint8Array(cap + 1);
  let got = 0;
  for (;;) {
    const n = await file.read(buffer.subarray(got));
    if (n === null) break;
    got += n;
    if (got > cap) return undefined;
  }
  return new TextDecoder().decode(buffer.subarray(0, got));
}

/** Reads the first line (without LF) and the bytes already read after it. */
async function readHeadLine(
  file: Deno.FsFile,
  cap: number,
): Promise<{ line: string; rest: Uint8Array } | undefined> {
  const pooled = takeChunk();
  let buf = pooled.length <= cap + 1 ? pooled : new Uint8Array(cap + 1);
  let got = 0;
  try {
    return await readLine();
  } finally {
    giveChunk(pooled);
  }
  async function readLine(): Promise<{ line: string; rest: Uint8Array } | undefined> {
    for (;;) {
      if (got === buf.length) {
        if (buf.length > cap) return undefined;
        const bigger = new Uint8Array(Math.min(buf.length * 2, cap + 1));
        bigger.set(buf);
        buf = bigger;
      }
      const n = await file.read(buf.subarray(got));
      if (n === null) return undefined;
      const nl = buf.subarray(got, got + n).indexOf(0x0a);
      got += n;
      if (nl >= 0) {
        const end = got - n + nl;
        return {
          line: new TextDecoder().decode(buf.subarray(0, end)),
          rest: buf.slice(end + 1, got),
        };
      }
    }
  }
}

/** Options of {@link runService}. */
export interface RunOptions {
  pid: number;
  /** Resolves when the service should stop (SIGTERM). */
  stopped: Promise<void>;
  /**
   * The config again when it changed since the last call (checked every
   * sweep: `setup` rewrites it while the service runs), else undefined.
   */
  reload?: () => Promise<ClientSettings | undefined>;
}

/**
 * Runs the service until `stopped` resolves: watches the drop directory,
 * sweeps it periodically, refreshes `alive`.
 */
export async function runService(ctx: ServiceContext, o: RunOptions): Promise<void> {
  const service = await Service.open(ctx);
  await service.touchAlive(o.pid);
  // Only root/ (root's own directory) is watched. Deno.watchFs opens every
  // path it reports, following symlinks (its same-file check), on its one
  // watcher thread: a FIFO a user plants in drop/ would block that thread
  // for good, and a symlink would make it open the link's target. drop/
  // is polled instead: one lstat of the directory every DROP_POLL_MS
  // while drops come, every DROP_IDLE_POLL_MS when idle.
  const watcher = Deno.watchFs([`${ctx.settings.spool}/root`], { recursive: false });
  const watching = (async () => {
    try {
      for await (const _ of watcher) service.intake();
    } catch {
      // closed
    }
  })();
  let dropSeen: number | undefined;
  let dropChanged = 0;
  let dropTimer: ReturnType<typeof setTimeout> | undefined;
  const pollDrop = () => {
    try {
      // Sync: one lstat costs less than an async op's round trip.
      const mtime = Deno.lstatSync(`${ctx.settings.spool}/drop`).mtime?.getTime() ?? 0;
      const age = Date.now() - mtime;
      if (mtime !== dropSeen || (age >= 0 && age < DROP_RECENT_MS)) {
        dropSeen = mtime;
        dropChanged = Date.now();
        service.intake();
      }
    } catch {
      // the sweep still runs
    }
    const hot = Date.now() - dropChanged < DROP_HOT_MS;
    dropTimer = setTimeout(pollDrop, hot ? DROP_POLL_MS : DROP_IDLE_POLL_MS);
  };
  pollDrop();
  const alive = setInterval(() => {
    service.touchAlive(o.pid).catch(() => {});
  }, ALIVE_MS);
  const sweeper = setInterval(async () => {
    try {
      const fresh = await o.reload?.();
      if (fresh) {
        // The spool stays the one the service started with.
        ctx.settings = { ...fresh, spool: ctx.settings.spool };
        ctx.log("info", { event: "reloaded", hosts: fresh.hosts.length });
      }
    } catch (err) {
      ctx.log("err", { event: "reload-error", reason: err instanceof Error ? err.message : "" });
    }
    service.sweep().catch(() => {});
  }, SWEEP_MS);
  ctx.log("info", { event: "started", spool: ctx.settings.spool, queued: service.size });
  await service.intake();
  service.pump();
  await o.stopped;
  clearInterval(alive);
  clearInterval(sweeper);
  clearTimeout(dropTimer);
  watcher.close();
  await watching;
  await service.stop();
  await service.clearAlive();
  ctx.log("info", { event: "stopped", queued: service.size });
}

/** syslog PRI of facility mail at a severity. */
export function mailPriority(severity: Severity): number {
  return 2 * 8 + { err: 3, warning: 4, info: 6 }[severity];
}

/** A log sink through one long-lived logger(1) reading lines with a `<PRI>` prefix. */
export function loggerSink(loggerPath: string, tag: string, pid: number): {
  log: ServiceLog;
  close(): Promise<void>;
} {
  let child: Deno.ChildProcess | undefined;
  let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  let broken = false;
  const encoder = new TextEncoder();
  const fallback = (line: string) => {
    try {
      Deno.stderr.writeSync(encoder.encode(`${tag}: ${line}\n`));
    } catch { /* nowhere to log */ }
  };
  const start = () => {
    try {
      child = new Deno.Command(loggerPath, {
        args: [
          `--id=${pid}`,
          "-t",
          tag,
          "--prio-prefix",
          "-u",
          "/dev/log",
          "--socket-errors=off",
          "-S",
          "4096",
        ],
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin", LANG: "C" },
        stdin: "piped",
        stdout: "null",
        stderr: "null",
      }).spawn();
      writer = child.stdin.getWriter();
      child.status.then(() => {
        broken = true;
      });
    } catch {
      broken = true;
    }
  };
  let chain = Promise.resolve();
  return {
    log(severity, fields) {
      const line = formatLogLine(fields);
      if (!child && !broken) start();
      if (broken || !writer) {
        fallback(line);
        return;
      }
      const w = writer;
      chain = chain.then(() =>
        w.write(encoder.encode(`<${mailPriority(severity)}>${line}\n`)).catch(() => {
          broken = true;
          fallback(line);
        })
      );
    },
    async close() {
      await chain;
      await writer?.close().catch(() => {});
      if (child) await child.status;
    },
  };
}
