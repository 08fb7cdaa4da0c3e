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
import { readCapped, type Spooled } from "../shared/pipeline_io.ts";
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
export async function nextLine(
  lines: AsyncGenerator<string>,
  ms: number,
): Promise<IteratorResult<string> | "timeout"> {
  const signal = AbortSignal.timeout(ms);
  return await Promise.race([
    lines.next(),
    new Promise<"timeout">((resolve) => signal.addEventListener("abort", () => resolve("timeout"))),
  ]);
}

/**
 * Opens lazily (nothing is spawned until the first send) unless `open()` is
 * called: a direct send opens at once, so that ssh's handshake and the
 * relay's start-up overlap the reading and spooling of the message.
 */
export function openBatchChannel(settings: ClientSettings, o: ChannelOptions): BatchChannel {
  let session: BatchSession | undefined;
  let hostIndex = 0;
  let answered = 0;
  let timedOut = false;
  /** The relay printed lines that are not a reply to this frame. */
  let garbled = false;
  /** The session was opened ahead of its first frame and has carried none yet. */
  let ahead = false;
  const encoder = new TextEncoder();
  const spawn = () => spawnBatchSession(settings, settings.hosts[hostIndex]!, o);

  const end = async (s: BatchSession): Promise<Failure | undefined> => {
    await s.writer.close().catch(() => {});
    const status = await s.child.status;
    const stderr = await s.stderr;
    await o.onSessionEnd?.(settings.hosts[hostIndex]!, stderr, status.code);
    return classifyExit(status.code, stderr, o.program);
  };

  const write = async (s: BatchSession, words: string[], spool: Spooled, last: boolean) => {
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
    } catch {
      // The session is gone: no reply will come.
    }
  };

  const attempt = async (
    s: BatchSession,
    words: string[],
    spool: Spooled,
    last: boolean,
  ): Promise<BatchReply | undefined> => {
    // ssh_timeout bounds the whole exchange: a relay that stops reading
    // must not hold the writer for ever.
    const kill = () => {
      timedOut = true;
      try {
        s.child.kill();
      } catch { /* gone already */ }
    };
    garbled = false;
    const signal = AbortSignal.timeout(settings.sshTimeout * 1000);
    signal.addEventListener("abort", kill);
    try {
      await write(s, words, spool, last);
      // Lines before the reply that are not one (a login banner from the
      // relay account's shell start-up files) are skipped, a few at most.
      const id = words.find((w) => w.startsWith("--id="))?.slice("--id=".length);
      for (let skipped = 0; skipped <= MAX_SKIPPED_LINES; skipped++) {
        const next = await nextLine(s.lines, settings.sshTimeout * 1000);
        if (next === "timeout") {
          kill();
          return undefined;
        }
        if (next.done) return undefined;
        const reply = parseReply(next.value);
        if (reply && (id === undefined || reply.id === id || reply.id === "-")) return reply;
        garbled = true;
      }
      return undefined;
    } finally {
      signal.removeEventListener("abort", kill);
    }
  };

  return {
    open() {
      if (session) return;
      session = spawn();
      ahead = true;
    },
    async send(words, spool, last = false) {
      for (;;) {
        session ??= spawn();
        const early = ahead;
        ahead = false;
        const reply = await attempt(session, words, spool, last);
        if (reply && !(early && reply.id === "-")) {
          answered++;
          return reply;
        }
        const ended = await end(session);
        session = undefined;
        // A session opened ahead may have timed out (the relay's idle or
        // session limit) while the message was read: nothing of this frame
        // was taken ("-"), so it goes again once on a fresh session. (The
        // relay's id record absorbs the rare case where it was.)
        if (early && !timedOut && !garbled && !ended?.connectPhase) continue;
        const failure = garbled && !timedOut
          ? ended ?? {
            // rsendmail says nothing but replies: output there is not rsendmail speaking.
            line: `4.5.0 ${o.program}: the relay answered with unexpected output`,
            sysexit: 75,
            nullmailer: 16,
            connectPhase: false,
          }
          : timedOut || !ended
          ? {
            line: `4.4.2 ${o.program}: ${
              timedOut
                ? `no answer from the relay within ssh_timeout (${settings.sshTimeout} s)`
                : "relay ended the session"
            }`,
            sysexit: 75,
            nullmailer: timedOut ? 8 : 16,
            connectPhase: false,
          }
          : ended;
        timedOut = false;
        garbled = false;
        if (failure.connectPhase && answered === 0 && hostIndex + 1 < settings.hosts.length) {
          hostIndex++;
          continue;
        }
        return failure;
      }
    },
    leave() {
      session = undefined;
    },
    async close() {
      if (!session) return;
      await session.writer.write(encoder.encode("END\n")).catch(() => {});
      await end(session);
      session = undefined;
    },
  };
}
