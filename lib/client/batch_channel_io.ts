/**
 * One SSH session to the relay in batch mode, used message by message: each
 * send writes one frame and waits for its reply, so a caller (the `-bs`
 * SMTP session) can answer each message with the relay's verdict while all
 * of them share one connection. Effectful edge module.
 *
 * @module
 */

import { type BatchReply, frameHeader, parseReply } from "../shared/batch.ts";
import type { ClientSettings } from "./client_config.ts";
import { readCapped } from "../shared/pipeline_io.ts";
import { type Spooled } from "../shared/spool_io.ts";
import { fired, startTimeout } from "../shared/timeout_io.ts";
import { classifyExit, type Failure, sshArgv } from "./ssh_command.ts";
import { quoteWords } from "../shared/words.ts";

/** How to reach the relay. */
export interface ChannelOptions {
  sshPath: string;
  env: Record<string, string>;
  program: string;
  controlPath?: string | undefined;
  /** Told when a session ended: its host, ssh's stderr and exit code (`-v`). */
  onSessionEnd?: ((host: string, stderr: string, code: number) => Promise<void> | void) | undefined;
}

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

const CHUNK = 65536;
/** Lines that are not a reply (a banner) skipped before a reply. */
const MAX_SKIPPED_LINES = 64;
/** Most of ssh's stderr kept (the first lines name the cause). */
const STDERR_CAP = 65536;

/** One `ssh relay rsendmail --batch` process and its pipes. */
export interface BatchSession {
  child: Deno.ChildProcess;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  /** The relay's reply lines. */
  lines: AsyncGenerator<string>;
  stderr: Promise<string>;
}

/** Starts ssh to `host` running the relay in batch mode (used by -bs and --flush). */
export function spawnBatchSession(
  settings: ClientSettings,
  host: string,
  o: ChannelOptions,
): BatchSession {
  const remote = quoteWords([settings.relayCommand, "--batch"]);
  const child = new Deno.Command(o.sshPath, {
    args: sshArgv(o.sshPath, settings, host, remote, o.controlPath).slice(1),
    clearEnv: true,
    env: o.env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // ssh's and the relay's diagnostics: a hostile relay may send gigabytes.
  const stderr = readCapped(child.stderr, STDERR_CAP);
  return {
    child,
    writer: child.stdin.getWriter(),
    lines: linesOf(child.stdout),
    stderr: stderr.done.then(() => stderr.text()),
  };
}

/**
 * LF-terminated lines of a relay's stdout (a relay talking garbage ends it).
 * Read into one buffer of the caller's (a BYOB reader): a default reader
 * of Deno's pipe allocates a fresh 64 KiB buffer for every read, one per
 * reply line, which a long-lived service pays for in memory.
 */
export async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const reader = stream.getReader({ mode: "byob" });
  let buffer = new Uint8Array(CHUNK);
  let rest = "";
  let ended = false;
  try {
    for (;;) {
      const { value, done } = await reader.read(buffer);
      if (done) {
        ended = true;
        return;
      }
      rest += decoder.decode(value, { stream: true });
      // The read took the buffer over: the same memory comes back in `value`.
      buffer = new Uint8Array(value.buffer);
      let nl;
      while ((nl = rest.indexOf("\n")) >= 0) {
        yield rest.slice(0, nl);
        rest = rest.slice(nl + 1);
      }
      if (rest.length > 65536) return;
    }
  } finally {
    // Left early (garbage, or the caller stopped reading): cancelled, as a
    // for-await over the stream would.
    if (!ended) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/**
 * The next line, or "timeout" when none comes within `ms` (a relay that
 * accepted and then hangs).
 */
async function nextLine(
  lines: AsyncGenerator<string>,
  ms: number,
  cold: boolean,
): Promise<IteratorResult<string> | "timeout"> {
  // A session's first frame runs on a cold timer (see timeout_io.ts); later
  // frames on cleared ones, so a long `-bs` session keeps no timer of an
  // answered frame alive for ssh_timeout.
  const timeout = startTimeout(ms, cold);
  try {
    return await Promise.race([lines.next(), fired(timeout).then(() => "timeout" as const)]);
  } finally {
    timeout.clear();
  }
}

/** Writes one frame and its body; with `last`, `END` behind it and EOF. False when the session is gone. */
async function writeFrame(
  s: BatchSession,
  words: string[],
  spool: Spooled,
  last: boolean,
): Promise<boolean> {
  const encoder = new TextEncoder();
  try {
    await s.writer.write(encoder.encode(`${frameHeader(words)}\n`));
    await spool.file.seek(0, Deno.SeekMode.Start);
    const buffer = new Uint8Array(CHUNK);
    for (;;) {
      const n = await spool.file.read(buffer);
      if (n === null) break;
      await s.writer.write(buffer.subarray(0, n));
    }
    if (last) {
      await s.writer.write(encoder.encode("END\n"));
      await s.writer.close();
    }
    return true;
  } catch {
    return false; // the session is gone: no reply will come
  }
}

/** How reading a frame's reply ended. */
interface ReplyRead {
  reply?: BatchReply;
  /** No line within the time limit. */
  timedOut: boolean;
  /** Lines came that are not a reply to this frame (garbage, or too long a banner). */
  garbled: boolean;
}

/**
 * The reply to the frame with `id`. Lines before it that are not one (a
 * login banner from the relay account's shell start-up files) are skipped,
 * a few at most; a reply naming another message is not this one's.
 */
async function readReply(
  lines: AsyncGenerator<string>,
  id: string | undefined,
  ms: number,
  cold: boolean,
): Promise<ReplyRead> {
  let garbled = false;
  for (let skipped = 0; skipped <= MAX_SKIPPED_LINES; skipped++) {
    const next = await nextLine(lines, ms, cold);
    if (next === "timeout") return { timedOut: true, garbled };
    if (next.done) return { timedOut: false, garbled };
    const reply = parseReply(next.value);
    if (reply && (id === undefined || reply.id === id || reply.id === "-")) {
      return { reply, timedOut: false, garbled };
    }
    garbled = true;
  }
  return { timedOut: false, garbled: true };
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
