/**
 * The satellite's delivery service (`sshsendmail --serve`): runs as its own
 * unprivileged account, takes messages that local users drop into its
 * sticky drop directory, copies them into its private queue, and delivers
 * them over one batch session to the relay that it keeps open while mail
 * flows. Retries with backoff, expires with a notice, answers `mailq`,
 * `sendmail -q` and `--remove` requests. Effectful edge module.
 *
 * Its parts: the intake (lib/client/service_intake_io.ts: drop/, the
 * checks, hold/; root_drops_io.ts: root/; accept_drop_io.ts: a checked
 * drop into the queue), the requests (service_requests_io.ts), the delivery
 * (service_delivery_io.ts: the relay sessions, retries; undelivered_io.ts:
 * deferral, expiry, the failure notice) and the book of queued messages
 * with the pure decisions (service_book.ts). This
 * module runs them: start, the polling of drop/, the watcher of root/, the
 * sweep, `alive`, the config reload, the stop. Its log sink, a long-lived
 * logger(1), is lib/client/logger_sink_io.ts.
 *
 * @module
 */

import type { ClientSettings } from "./client_config.ts";
import { openQueue, type Queue } from "./queue_io.ts";
import { ItemBook } from "./service_book.ts";
import type { ServiceContext, ServiceCore } from "./service_context.ts";
import { Delivery } from "./service_delivery_io.ts";
import { FIRST_DROP_POLL, nextDropPoll } from "./drop_poll.ts";
import { Intake } from "./service_intake_io.ts";
import { Requests } from "./service_requests_io.ts";
import { checkSpool } from "./spool_init_io.ts";
import { ALIVE_FILE } from "./spool_layout.ts";

/** The fallback sweep of the drop directories (a missed change). */
const SWEEP_MS = 15_000;
/** How often the drop directory's mtime is looked at while mail flows (entries are never watched). */
const DROP_POLL_MS = 1;
/** … and when nothing was dropped for DROP_HOT_MS (an idle service stays nearly idle). */
const DROP_IDLE_POLL_MS = 50;
const DROP_HOT_MS = 5_000;
/** The coarsest tick of a directory's mtime allowed for (lib/client/drop_poll.ts). */
const DROP_GRAIN_MS = 20;
/** How often `alive` is refreshed. */
const ALIVE_MS = 5_000;

/** The running service. */
export class Service implements ServiceCore {
  readonly ctx: ServiceContext;
  readonly root: string;
  readonly queue: Queue;
  readonly book = new ItemBook();
  stopping = false;
  readonly #pending = new Set<Promise<unknown>>();
  readonly #delivery: Delivery;
  readonly #requests: Requests;
  readonly #intake: Intake;

  private constructor(ctx: ServiceContext, queue: Queue) {
    this.ctx = ctx;
    this.root = ctx.settings.spool;
    this.queue = queue;
    this.#delivery = new Delivery(this);
    this.#requests = new Requests(this, () => this.intake());
    this.#intake = new Intake(this, this.#requests);
  }

  /** Prepares the spool, loads the queue and takes what waits in incoming/. */
  static async open(ctx: ServiceContext): Promise<Service> {
    await checkSpool(ctx.settings.spool, { serviceUid: ctx.uid, serviceGid: ctx.gid });
    const queue = await openQueue(`${ctx.settings.spool}/queue`, ctx.uid);
    const service = new Service(ctx, queue);
    await queue.sweepTmp(Date.now());
    for (const entry of await queue.list()) service.book.add(entry);
    await service.#noteOldQueues();
    // A service that stopped between queueing a drop and removing (root's:
    // emptying) it left the drop behind: it is queued already.
    const queued = new Set(
      [...service.book.items.values()].map((i) => `${i.entry.header.uid}:${i.entry.header.drop}`),
    );
    await service.#intake.forgetQueuedRootDrops(queued);
    // Drops claimed by a service that stopped before it read them.
    await service.#intake.takeIncoming(queued);
    return service;
  }

  /** Number of messages waiting. */
  get size(): number {
    return this.book.size;
  }

  /** The old per-user queues (`<uid>/`) are their owners' to migrate. */
  async #noteOldQueues(): Promise<void> {
    for await (const e of Deno.readDir(this.root)) {
      if (!/^[0-9]+$/.test(e.name)) continue;
      this.ctx.log("warning", {
        event: "old-queue",
        dir: `${this.root}/${e.name}`,
        note: "run sshsendmail --migrate as its owner",
      });
    }
  }

  /** Writes `alive` (the service's pid; its mtime says it runs). */
  async touchAlive(pid: number): Promise<void> {
    const path = `${this.root}/${ALIVE_FILE}`;
    const tmp = `${path}.tmp`;
    await Deno.writeTextFile(tmp, `${pid}\n`, { mode: 0o644 });
    await Deno.chmod(tmp, 0o644);
    await Deno.rename(tmp, path);
  }

  /** Removes `alive` on a clean stop. */
  async clearAlive(): Promise<void> {
    await Deno.remove(`${this.root}/${ALIVE_FILE}`).catch(() => {});
  }

  /** A submitter is writing a drop now (see Intake.writing). */
  get dropsBeingWritten(): boolean {
    return this.#intake.writing;
  }

  /** Runs the intake now, or once more after the running one. */
  intake(): Promise<void> {
    return this.#intake.run();
  }

  /** Sends what is due; expires what is too old; plans the next retry. */
  pump(): void {
    this.#delivery.pump();
  }

  /** Housekeeping: replies nobody read, the fallback sweep. */
  async sweep(): Promise<void> {
    await this.#requests.sweepReplies(Date.now());
    await this.intake();
    this.pump();
  }

  /** Stops taking work, ends the session, waits for what is running. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.#delivery.stop();
    await Promise.allSettled([...this.#pending]);
  }

  track<T>(p: Promise<T>): Promise<T> {
    this.#pending.add(p);
    p.finally(() => this.#pending.delete(p)).catch(() => {});
    return p;
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
  const watch = watchRoot(ctx.settings.spool, service);
  const poll = pollDrop(ctx.settings.spool, service);
  const alive = setInterval(() => {
    service.touchAlive(o.pid).catch(() => {});
  }, ALIVE_MS);
  const sweeper = setInterval(() => sweepAndReload(ctx, service, o.reload), SWEEP_MS);
  ctx.log("info", { event: "started", spool: ctx.settings.spool, queued: service.size });
  await service.intake();
  service.pump();
  await o.stopped;
  clearInterval(alive);
  clearInterval(sweeper);
  poll.stop();
  await watch.close();
  await service.stop();
  await service.clearAlive();
  ctx.log("info", { event: "stopped", queued: service.size });
}

/**
 * Watches root/ (root's own directory). Only it is watched: Deno.watchFs
 * opens every path it reports, following symlinks (its same-file check), on
 * its one watcher thread: a FIFO a user plants in drop/ would block that
 * thread for good, and a symlink would make it open the link's target.
 */
function watchRoot(spool: string, service: Service): { close(): Promise<void> } {
  const watcher = Deno.watchFs([`${spool}/root`], { recursive: false });
  const watching = (async () => {
    try {
      for await (const _ of watcher) service.intake();
    } catch {
      // closed
    }
  })();
  return {
    async close() {
      watcher.close();
      await watching;
    },
  };
}

/**
 * Polls drop/ instead of watching it: one lstat of the directory every
 * DROP_POLL_MS while drops come, every DROP_IDLE_POLL_MS when idle; the
 * directory is read as nextDropPoll decides.
 */
function pollDrop(spool: string, service: Service): { stop(): void } {
  let state = FIRST_DROP_POLL;
  let changed = 0;
  // One interval per pace (a new timer every poll was much of the
  // service's garbage while mail flows).
  let timer: ReturnType<typeof setInterval> | undefined;
  let pace = 0;
  const poll = () => {
    try {
      // Sync: one lstat costs less than an async op's round trip.
      const mtime = Deno.lstatSync(`${spool}/drop`).mtime?.getTime() ?? 0;
      const now = Date.now();
      const next = nextDropPoll(state, mtime, now, DROP_GRAIN_MS, service.dropsBeingWritten);
      if (next.state.seen !== state.seen) changed = now;
      state = next.state;
      if (next.read) service.intake();
    } catch {
      // the sweep still runs
    }
    const want = Date.now() - changed < DROP_HOT_MS ? DROP_POLL_MS : DROP_IDLE_POLL_MS;
    if (want === pace) return;
    clearInterval(timer);
    pace = want;
    timer = setInterval(poll, pace);
  };
  poll();
  return { stop: () => clearInterval(timer) };
}

/** The sweep: the config again when it changed (the spool stays), then the service's sweep. */
async function sweepAndReload(
  ctx: ServiceContext,
  service: Service,
  reload: RunOptions["reload"],
): Promise<void> {
  try {
    const fresh = await reload?.();
    if (fresh) {
      // The spool stays the one the service started with.
      ctx.settings = { ...fresh, spool: ctx.settings.spool };
      ctx.log("info", { event: "reloaded", hosts: fresh.hosts.length });
    }
  } catch (err) {
    ctx.log("err", { event: "reload-error", reason: err instanceof Error ? err.message : "" });
  }
  service.sweep().catch(() => {});
}
