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
}

/** A message-by-message batch session. */
export interface BatchChannel {
  /** Sends one frame (request words without the program) and its body. */
  send(words: string[], spool: Spooled): Promise<BatchReply | Failure>;
  /** Ends the batch and the session. */
  close(): Promise<void>;
}

const CHUNK = 65536;
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

/** Opens lazily: nothing is spawned until the first send. */
export function openBatchChannel(settings: ClientSettings, o: ChannelOptions): BatchChannel {
  let session: BatchSession | undefined;
  let hostIndex = 0;
  let answered = 0;
  let timedOut = false;
  const encoder = new TextEncoder();

  const end = async (s: BatchSession): Promise<Failure | undefined> => {
    await s.writer.close().catch(() => {});
    const status = await s.child.status;
    return classifyExit(status.code, await s.stderr, o.program);
  };

  const attempt = async (
    s: BatchSession,
    words: string[],
    spool: Spooled,
  ): Promise<BatchReply | undefined> => {
    try {
      await s.writer.write(encoder.encode(`${frameHeader(words)}\n`));
      await spool.file.seek(0, Deno.SeekMode.Start);
      const buffer = new Uint8Array(CHUNK);
      for (;;) {
        const n = await spool.file.read(buffer);
        if (n === null) break;
        await s.writer.write(buffer.subarray(0, n));
      }
    } catch {
      // The session is gone: no reply will come.
    }
    const next = await nextLine(s.lines, settings.sshTimeout * 1000);
    if (next === "timeout") {
      timedOut = true;
      try {
        s.child.kill();
      } catch { /* gone already */ }
      return undefined;
    }
    return next.done ? undefined : parseReply(next.value);
  };

  return {
    async send(words, spool) {
      for (;;) {
        session ??= spawnBatchSession(settings, settings.hosts[hostIndex]!, o);
        const reply = await attempt(session, words, spool);
        if (reply) {
          answered++;
          return reply;
        }
        const ended = await end(session);
        const failure = timedOut || !ended
          ? {
            line: `4.4.2 ${o.program}: ${
              timedOut
                ? `no answer from the relay within ssh_timeout (${settings.sshTimeout} s)`
                : "relay ended the session"
            }`,
            sysexit: 75,
            nullmailer: 16,
            connectPhase: false,
          }
          : ended;
        timedOut = false;
        session = undefined;
        if (failure.connectPhase && answered === 0 && hostIndex + 1 < settings.hosts.length) {
          hostIndex++;
          continue;
        }
        return failure;
      }
    },
    async close() {
      if (!session) return;
      await session.writer.write(encoder.encode("END\n")).catch(() => {});
      await end(session);
      session = undefined;
    },
  };
}
