/**
 * The satellite service's delivery: one pipelined batch session to the
 * relay at a time, frames written up to a window ahead of the replies,
 * replies read in order; a delivered message out of the queue
 * (lib/client/mark_delivered_io.ts); retries with backoff, expiry with a
 * notice to the sender (lib/client/undelivered_io.ts), the next relay when
 * one cannot be reached (lib/client/ended_session_io.ts). Effectful edge
 * module.
 *
 * @module
 */

import { frameHeader, parseReply } from "../shared/batch.ts";
import { collectGarbage } from "../shared/collect_garbage_io.ts";
import { isTemporary } from "../shared/exit_codes.ts";
import { type BatchSession, spawnBatchSession } from "./batch_session_io.ts";
import { frameWordsOf } from "./queue_entry.ts";
import { type EndedSession, settleEndedSession } from "./ended_session_io.ts";
import { markDelivered } from "./mark_delivered_io.ts";
import { type Item, nextRetryAt, planPump, replyFits, retryDelayMs } from "./service_book.ts";
import type { ServiceCore } from "./service_context.ts";
import { defer, expire, giveUp } from "./undelivered_io.ts";

/** Relay batch sessions end (and a new one starts) after this many frames. */
const FRAMES_PER_SESSION = 10_000;
/**
 * … or after this long (well inside the relay's --session-timeout, default
 * an hour, which would cut frames already written).
 */
const SESSION_MAX_AGE_MS = 20 * 60_000;
/** Frames written ahead of the relay's replies. */
const WINDOW = 32;
/**
 * A full collection after this many replies (when the unit exposes gc): the
 * service's heap then stays at its working set instead of rising some 6 MiB
 * over 5 000 messages before V8 collects (docs/benchmarks.md, section 6).
 */
const REPLIES_PER_GC = 200;

/** A batch session to the relay with its frames in flight. */
interface Session extends EndedSession {
  bs: BatchSession;
  written: number;
  /** When it was spawned (ms since the epoch). */
  opened: number;
  /** END sent: no more frames. */
  ending: boolean;
  writes: Promise<void>;
  watchdog: ReturnType<typeof setTimeout> | undefined;
  idle: ReturnType<typeof setTimeout> | undefined;
  done: Promise<void>;
}

const encoder = new TextEncoder();

/** Sends the service's messages to the relay. */
export class Delivery {
  readonly #core: ServiceCore;
  #session: Session | undefined;
  #hostIndex = 0;
  /** A session failed since the last delivery: retries wait for their backoff. */
  #relayDown = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #repliesSinceGc = 0;

  constructor(core: ServiceCore) {
    this.#core = core;
  }

  /** Sends what is due; expires what is too old; plans the next retry. */
  pump(): void {
    const core = this.#core;
    if (core.stopping) return;
    const now = Date.now();
    const settings = core.ctx.settings;
    const s0 = this.#session;
    // What the window has room for (all of it, to defer, with no relay).
    const room = settings.hosts.length === 0
      ? Infinity
      : s0?.ending
      ? 0
      : WINDOW - (s0?.inflight.length ?? 0);
    const { expired, due, more } = planPump(
      core.book.items.values(),
      now,
      settings.maxAgeMs,
      room,
    );
    for (const item of expired) {
      item.busy = true;
      core.track(expire(core, item).then(() => this.pump()));
    }
    if (settings.hosts.length === 0) {
      // Accepting mail before `setup` is fine; it waits for a relay.
      const line = `4.3.5 ${core.ctx.program}: no relay configured (host in the config file)`;
      for (const item of due) defer(core, item, line, "-");
      this.#planRetry(now, false);
      return;
    }
    let s = s0;
    let left = more;
    for (const item of due) {
      if (s && (s.ending || s.inflight.length >= WINDOW)) {
        left = true;
        break;
      }
      if (!s) s = this.#openSession();
      this.#send(s, item);
      if (s.written >= FRAMES_PER_SESSION || Date.now() - s.opened > SESSION_MAX_AGE_MS) {
        this.#endSession(s);
      }
    }
    this.#planRetry(now, left);
  }

  /**
   * Arms the retry timer for the next message due or expiring. Not needed
   * while a session runs with due messages left (`dueLeft`): its next
   * reply pumps again, and no scan of the whole book is made per reply.
   */
  #planRetry(now: number, dueLeft: boolean): void {
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (dueLeft && this.#session) return;
    const core = this.#core;
    const next = nextRetryAt(core.book.items.values(), now, core.ctx.settings.maxAgeMs);
    if (next === Infinity || (this.#session && next <= now)) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.pump();
    }, retryDelayMs(next, now));
  }

  #openSession(): Session {
    const { ctx } = this.#core;
    const s = ctx.settings;
    const host = s.hosts[this.#hostIndex % s.hosts.length]!;
    const bs = spawnBatchSession(s, host, {
      sshPath: ctx.sshPath,
      env: ctx.env,
      program: ctx.program,
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
    session.done = this.#core.track(this.#run(session));
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
    s.writes = s.writes.then(async () => {
      try {
        await this.#core.queue.copyBody(
          item.entry,
          s.bs.writer,
          encoder.encode(`${frameHeader(frameWordsOf(item.entry.header))}\n`),
        );
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
    const { ctx } = this.#core;
    s.watchdog = setTimeout(() => {
      s.watchdog = undefined;
      s.timedOut = true;
      ctx.log("warning", { event: "relay-timeout", host: s.host });
      kill(s);
    }, ctx.settings.sshTimeout * 1000);
  }

  #endSession(s: Session): void {
    if (s.ending) return;
    s.ending = true;
    if (s.idle !== undefined) clearTimeout(s.idle);
    s.idle = undefined;
    s.writes = s.writes.then(async () => {
      await s.bs.writer.write(encoder.encode("END\n")).catch(() => {});
      await s.bs.writer.close().catch(() => {});
    });
  }

  /** A session's life: its replies, then what it left unanswered. */
  async #run(s: Session): Promise<void> {
    const garbled = await this.#readReplies(s);
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
    const end = { garbled, status, stderr };
    if (settleEndedSession(this.#core, s, end, this.#hostIndex) === "next-relay") {
      this.#hostIndex++;
    } else {
      this.#hostIndex = 0;
      this.#relayDown = true;
    }
    this.pump();
  }

  /** Reads a session's replies in order; true when the relay answered out of turn. */
  async #readReplies(s: Session): Promise<boolean> {
    for await (const line of s.bs.lines) {
      const reply = parseReply(line);
      const item = s.inflight[0];
      if (!replyFits(reply, item)) {
        kill(s);
        return true;
      }
      s.inflight.shift();
      s.answered++;
      this.#arm(s);
      await this.#handleReply(s, item!, reply!.code, `${reply!.status} ${reply!.text}`);
      if (++this.#repliesSinceGc >= REPLIES_PER_GC) {
        this.#repliesSinceGc = 0;
        collectGarbage();
      }
      if (s.inflight.length === 0 && !s.ending) {
        this.pump();
        if (s.inflight.length === 0 && !s.ending && this.#session === s) {
          s.idle = setTimeout(
            () => this.#endSession(s),
            this.#core.ctx.settings.sessionIdle * 1000,
          );
        }
      } else if (!s.ending) {
        this.pump();
      }
    }
    return false;
  }

  async #handleReply(s: Session, item: Item, code: number, line: string): Promise<void> {
    if (code === 0) {
      markDelivered(this.#core, item, line, s.host);
      if (this.#relayDown) {
        // The relay is back: what waits for its backoff goes now.
        this.#relayDown = false;
        for (const other of this.#core.book.items.values()) if (!other.busy) other.forced = true;
      }
    } else if (isTemporary(code)) {
      defer(this.#core, item, line, s.host);
    } else {
      await giveUp(this.#core, item, line, "failed");
    }
  }

  /** Ends the session (killed after 10 s) and waits for it; no retry is planned any more. */
  async stop(): Promise<void> {
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    const s = this.#session;
    if (!s) return;
    this.#endSession(s);
    const killer = setTimeout(() => kill(s), 10_000);
    await s.done;
    clearTimeout(killer);
  }
}

function kill(s: Session): void {
  try {
    s.bs.child.kill();
  } catch { /* gone */ }
}
