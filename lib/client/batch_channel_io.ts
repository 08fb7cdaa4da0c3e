/**
 * One SSH session to the relay in batch mode, used message by message: each
 * send writes one frame and waits for its reply, so a caller (the `-bs`
 * SMTP session) can answer each message with the relay's verdict while all
 * of them share one connection. Effectful edge module.
 *
 * @module
 */

import { type BatchReply } from "../shared/batch.ts";
import type { ClientSettings } from "./client_config.ts";
import { type Spooled } from "../shared/spool_io.ts";
import { startTimeout } from "../shared/timeout_io.ts";
import {
  type BatchSession,
  type ChannelOptions,
  readReply,
  type ReplyRead,
  spawnBatchSession,
  writeFrame,
} from "./batch_session_io.ts";
import { classifyExit, type Failure } from "./ssh_command.ts";

export type { ChannelOptions };

/** A message-by-message batch session. */
export interface BatchChannel {
  /** Starts the session now, ahead of the first send. */
  open(): void;
  /**
   * Sends one frame (request words without the program) and its body; with
   * `last`, ends the batch right behind it (the relay sees EOF as a single
   * send would, and answers).
   */
  send(words: string[], spool: Spooled, last?: boolean): Promise<BatchReply | Failure>;
  /** Ends the batch and the session. */
  close(): Promise<void>;
  /**
   * Lets a session whose batch was ended (`send(…, true)`) and answered
   * finish on its own: ssh exits when the relay has, unwaited.
   */
  leave(): void;
}

/** Why a session gave no reply: ssh's own ending (`ended`) or what the reading saw. */
function sessionFailure(
  read: ReplyRead,
  ended: Failure | undefined,
  program: string,
  sshTimeout: number,
): Failure {
  if (read.garbled && !read.timedOut) {
    // rsendmail says nothing but replies: output there is not rsendmail speaking.
    return ended ?? {
      line: `4.5.0 ${program}: the relay answered with unexpected output`,
      sysexit: 75,
      nullmailer: 16,
      connectPhase: false,
    };
  }
  if (ended && !read.timedOut) return ended;
  return {
    line: `4.4.2 ${program}: ${
      read.timedOut
        ? `no answer from the relay within ssh_timeout (${sshTimeout} s)`
        : "relay ended the session"
    }`,
    sysexit: 75,
    nullmailer: read.timedOut ? 8 : 16,
    connectPhase: false,
  };
}

/** The channel: one session at a time, the next host after a connect failure. */
class Channel implements BatchChannel {
  #session: BatchSession | undefined;
  #hostIndex = 0;
  #answered = 0;
  /** The session was opened ahead of its first frame and has carried none yet. */
  #ahead = false;

  constructor(readonly settings: ClientSettings, readonly o: ChannelOptions) {}

  #spawn(): BatchSession {
    return spawnBatchSession(this.settings, this.settings.hosts[this.#hostIndex]!, this.o);
  }

  async #end(s: BatchSession): Promise<Failure | undefined> {
    await s.writer.close().catch(() => {});
    const status = await s.child.status;
    const stderr = await s.stderr;
    await this.o.onSessionEnd?.(this.settings.hosts[this.#hostIndex]!, stderr, status.code);
    return classifyExit(status.code, stderr, this.o.program);
  }

  /** One frame out, its reply in; ssh_timeout bounds the whole exchange (a relay that stops reading too). */
  async #attempt(s: BatchSession, words: string[], spool: Spooled, last: boolean) {
    const ms = this.settings.sshTimeout * 1000;
    let killed = false;
    const kill = () => {
      killed = true;
      try {
        s.child.kill();
      } catch { /* gone already */ }
    };
    const cold = this.#answered === 0;
    const timeout = startTimeout(ms, cold);
    timeout.signal.addEventListener("abort", kill, { once: true });
    try {
      await writeFrame(s, words, spool, last);
      const id = words.find((w) => w.startsWith("--id="))?.slice("--id=".length);
      const read = await readReply(s.lines, id, ms, cold);
      if (read.timedOut) kill();
      return { ...read, timedOut: read.timedOut || killed };
    } finally {
      timeout.clear();
    }
  }

  open(): void {
    if (this.#session) return;
    this.#session = this.#spawn();
    this.#ahead = true;
  }

  async send(words: string[], spool: Spooled, last = false): Promise<BatchReply | Failure> {
    for (;;) {
      const session = this.#session ??= this.#spawn();
      const early = this.#ahead;
      this.#ahead = false;
      const read = await this.#attempt(session, words, spool, last);
      if (read.reply && !(early && read.reply.id === "-")) {
        this.#answered++;
        return read.reply;
      }
      const ended = await this.#end(session);
      this.#session = undefined;
      // A session opened ahead may have timed out (the relay's idle or
      // session limit) while the message was read: nothing of this frame
      // was taken ("-"), so it goes again once on a fresh session. (The
      // relay's id record absorbs the rare case where it was.)
      if (early && !read.timedOut && !read.garbled && !ended?.connectPhase) continue;
      const failure = sessionFailure(read, ended, this.o.program, this.settings.sshTimeout);
      const more = this.#hostIndex + 1 < this.settings.hosts.length;
      if (failure.connectPhase && this.#answered === 0 && more) {
        this.#hostIndex++;
        continue;
      }
      return failure;
    }
  }

  leave(): void {
    this.#session = undefined;
  }

  async close(): Promise<void> {
    const session = this.#session;
    if (!session) return;
    await session.writer.write(new TextEncoder().encode("END\n")).catch(() => {});
    await this.#end(session);
    this.#session = undefined;
  }
}

/**
 * Opens lazily (nothing is spawned until the first send) unless `open()` is
 * called: a direct send opens at once, so that ssh's handshake and the
 * relay's start-up overlap the reading and spooling of the message.
 */
export function openBatchChannel(settings: ClientSettings, o: ChannelOptions): BatchChannel {
  return new Channel(settings, o);
}
