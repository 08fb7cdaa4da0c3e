/**
 * One `ssh relay rsendmail --batch` process and the two halves of its
 * protocol: frames written (header line, body, `END`) and reply lines read
 * back, each read bounded by a timer. Used by the `-bs` and `--flush`
 * channel (lib/client/batch_channel_io.ts) and the satellite service's
 * delivery (lib/client/service_delivery_io.ts). Effectful edge module.
 *
 * @module
 */

import { type BatchReply, frameHeader, parseReply } from "../shared/batch.ts";
import type { ClientSettings } from "./client_config.ts";
import { readCapped } from "../shared/pipeline_io.ts";
import { giveChunk, type Spooled, takeChunk } from "../shared/spool_io.ts";
import { fired, startTimeout } from "../shared/timeout_io.ts";
import { sshArgv } from "./ssh_command.ts";
import { quoteWords } from "../shared/words.ts";
import { writeJoined } from "../shared/write_joined.ts";

/** How to reach the relay. */
export interface ChannelOptions {
  sshPath: string;
  env: Record<string, string>;
  program: string;
  controlPath?: string | undefined;
  /** Told when a session ended: its host, ssh's stderr and exit code (`-v`). */
  onSessionEnd?: ((host: string, stderr: string, code: number) => Promise<void> | void) | undefined;
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

/**
 * Writes one frame and its body, with `last` `END` behind it and EOF, in as
 * few writes as fit 64 KiB (lib/shared/write_joined.ts). False when the
 * session is gone.
 */
export async function writeFrame(
  s: BatchSession,
  words: string[],
  spool: Spooled,
  last: boolean,
): Promise<boolean> {
  const encoder = new TextEncoder();
  const buffer = takeChunk();
  try {
    await spool.file.seek(0, Deno.SeekMode.Start);
    await writeJoined(
      s.writer,
      encoder.encode(`${frameHeader(words)}\n`),
      spool.file,
      last ? encoder.encode("END\n") : new Uint8Array(0),
      buffer,
    );
    if (last) await s.writer.close();
    return true;
  } catch {
    return false; // the session is gone: no reply will come
  } finally {
    giveChunk(buffer);
  }
}

/** How reading a frame's reply ended. */
export interface ReplyRead {
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
export async function readReply(
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
