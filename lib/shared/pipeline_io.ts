/**
 * The relay's effectful pipeline: spool the peer's message to a private,
 * already-unlinked file while counting and hashing it, then stream it into
 * sendmail with a cleared environment. Nothing reaches sendmail until the
 * whole message is in and verified.
 *
 * @module
 */

import { DataError, TempError } from "./errors.ts";
import { MemoryFile, type SpoolFile } from "./memory_file.ts";
import { hexOf, Sha256 } from "./sha256.ts";

/** A message held in the spool. */
export interface Spooled {
  /**
   * The spool file, open, positioned anywhere; already unlinked. Or, with
   * {@link SpoolOptions.inMemory}, a message that fit in one read buffer.
   */
  file: SpoolFile;
  size: number;
  sha256: string;
}

/** Limits for spooling. */
export interface SpoolOptions {
  dir: string;
  maxSize: number;
  idleTimeoutMs: number;
  /** Declared size: more bytes than this is an error as soon as it happens. */
  declaredSize?: number | undefined;
  /** Spool file name prefix (default "rsendmail": the relay's). */
  prefix?: string;
  /** The whole message must arrive within this (idle time alone restarts on every byte). */
  deadlineMs?: number | undefined;
  /** After the first minute, fewer bytes a second than this on average ends the message. */
  minRate?: number | undefined;
  /** The process ends after this message (see {@link SendmailOptions.shortLived}). */
  shortLived?: boolean;
  /**
   * Hold a message that fits in one read buffer (64 KiB) in memory: no file
   * is created unless more comes (the relay's one-message path and its batch
   * frames, where a file's create, unlink, write and read-back cost more
   * than the message).
   */
  inMemory?: boolean;
}

/** How long a message may take before `minRate` applies. */
const MIN_RATE_GRACE_MS = 60_000;

/** A byte source read into a caller's buffer (Deno.stdin, Deno.FsFile …). */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

const CHUNK = 65536;

/** Spare read buffers: a long-running service reuses them instead of growing the heap. */
const POOL: Uint8Array[] = [];

/** A 64 KiB buffer from the pool (give it back with {@link giveChunk}). */
export function takeChunk(): Uint8Array {
  return POOL.pop() ?? new Uint8Array(CHUNK);
}

/** Returns a buffer taken with {@link takeChunk}. */
export function giveChunk(buffer: Uint8Array): void {
  if (buffer.length === CHUNK && POOL.length < 8) POOL.push(buffer);
}

/**
 * Adapts a ReadableStream to a ByteReader (for sources Deno only offers as
 * streams, such as a child's stdout).
 */
export function readerFromStream(stream: ReadableStream<Uint8Array>): ByteReader {
  const reader = stream.getReader();
  let rest: Uint8Array = new Uint8Array(0);
  return {
    async read(p) {
      if (rest.length === 0) {
        const { value, done } = await reader.read();
        if (done) return null;
        rest = value;
      }
      const n = Math.min(p.length, rest.length);
      p.set(rest.subarray(0, n));
      rest = rest.subarray(n);
      return n;
    },
  };
}

/**
 * A reader that yields `prefix` first, then what `rest` yields (or ends):
 * bytes already read (nullmailer's envelope head), a header to prepend, or a
 * whole message held in memory.
 */
export function prefixedReader(prefix: Uint8Array, rest?: ByteReader): ByteReader {
  let held = prefix;
  return {
    read(p) {
      if (held.length === 0) return rest ? rest.read(p) : Promise.resolve(null);
      const n = Math.min(p.length, held.length);
      p.set(held.subarray(0, n));
      held = held.subarray(n);
      return Promise.resolve(n);
    },
  };
}

/**
 * Reads `input` to its end into a fresh 0600 file in `dir`, unlinked at once
 * so that it cannot linger whatever happens to the process (or, with
 * `inMemory`, into memory when it fits in one read buffer).
 *
 * @throws {DataError} Over the size limit (5.3.4) or over the declared size.
 * @throws {TempError} No byte for `idleTimeoutMs` (4.4.2), or spool I/O failed.
 */
export async function spoolMessage(input: ByteReader, options: SpoolOptions): Promise<Spooled> {
  let file = options.inMemory ? undefined : await createSpoolFile(options);
  const hash = new Sha256();
  const limit = Math.min(options.maxSize, options.declaredSize ?? Infinity);
  let size = 0;
  // One buffer per spool (from the pool): each chunk is hashed and written
  // before the next read. Without a file yet, bytes gather in it until it is
  // full (then they go to a file) or the message ends (then it stays here).
  const buffer = takeChunk();
  let held = 0;
  const started = Date.now();
  const deadline = options.deadlineMs === undefined ? Infinity : started + options.deadlineMs;
  const watch = options.shortLived ? signalWatchdog(options.idleTimeoutMs, deadline) : undefined;
  try {
    for (;;) {
      const left = deadline - Date.now();
      const into = buffer.subarray(held);
      // A timer per read, cleared at once (AbortSignal.timeout cannot be: a
      // long-running service would hold thousands of them).
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = watch ? await watch.race(input.read(into)) : await Promise.race([
        input.read(into),
        new Promise<"idle">((resolve) => {
          timer = setTimeout(
            () => resolve("idle"),
            Math.max(0, Math.min(options.idleTimeoutMs, left)),
          );
        }),
      ]).finally(() => clearTimeout(timer));
      if (n === "idle") {
        throw new TempError(
          Date.now() >= deadline
            ? "message not complete within the time limit"
            : "timed out waiting for the message",
          "4.4.2",
        );
      }
      if (n === null) break;
      size += n;
      const took = Date.now() - started;
      if (options.minRate && took > MIN_RATE_GRACE_MS && size < (options.minRate * took) / 1000) {
        throw new TempError("message arriving too slowly", "4.4.2");
      }
      if (size > limit) {
        throw size > options.maxSize
          ? new DataError("message too big", "5.3.4")
          : new DataError("message longer than its declared size", "5.6.0");
      }
      let chunk: Uint8Array;
      if (file === undefined) {
        held += n;
        if (held < buffer.length) continue;
        // More than a buffer: from here on it is a file like any other.
        file = await createSpoolFile(options);
        chunk = buffer;
        held = 0;
      } else {
        chunk = buffer.subarray(0, n);
      }
      hash.update(chunk);
      await writeAll(file, chunk);
    }
  } catch (err) {
    file?.close();
    giveChunk(buffer);
    if (err instanceof DataError || err instanceof TempError) throw err;
    throw new TempError("cannot spool message", "4.3.0", String(err));
  }
  if (file !== undefined) {
    giveChunk(buffer);
    return { file, size, sha256: hash.hex() };
  }
  const bytes = buffer.slice(0, held);
  giveChunk(buffer);
  // One native digest of the whole message: cheaper, cold, than the
  // incremental hash a file needs.
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return { file: new MemoryFile(bytes), size, sha256: hexOf(digest) };
}

/**
 * A fresh 0600 file in `options.dir`, unlinked at once so that it cannot
 * linger whatever happens to the process (only a kill between the two calls
 * can leave an empty file behind).
 */
async function createSpoolFile(options: SpoolOptions): Promise<Deno.FsFile> {
  const path = `${options.dir}/${options.prefix ?? "rsendmail"}-${crypto.randomUUID()}`;
  try {
    const file = await Deno.open(path, { read: true, write: true, createNew: true, mode: 0o600 });
    try {
      await Deno.remove(path);
    } catch (err) {
      file.close();
      throw err;
    }
    return file;
  } catch (err) {
    throw new TempError("cannot spool message", "4.3.0", String(err));
  }
}

/**
 * The idle and deadline timer of one short-lived spool, on
 * `AbortSignal.timeout` (which costs a process nothing to start, where its
 * first `setTimeout` costs milliseconds): one signal at a time, re-armed when
 * it fires early because bytes came meanwhile. Such a signal cannot be
 * cleared, which is why only a process that ends after the message uses it.
 */
function signalWatchdog(idleMs: number, deadline: number) {
  let last = Date.now();
  const idle = new Promise<"idle">((resolve) => {
    const arm = (ms: number) =>
      AbortSignal.timeout(Math.max(1, ms)).addEventListener("abort", () => {
        const due = Math.min(last + idleMs, deadline);
        if (Date.now() >= due) resolve("idle");
        else arm(due - Date.now());
      }, { once: true });
    arm(Math.min(idleMs, deadline - last));
  });
  return {
    async race(read: Promise<number | null>): Promise<number | null | "idle"> {
      const n = await Promise.race([read, idle]);
      last = Date.now();
      return n;
    },
  };
}

/** Writes all of `data` (a file write may be short). */
export async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) {
    done += await file.write(data.subarray(done));
  }
}

/** How a child ended. */
export interface SpawnResult {
  /** Exit code, or undefined when killed by a signal. */
  code: number | undefined;
  signal: string | undefined;
  timedOut: boolean;
  /** The first bytes of the child's stderr, for the log. */
  stderr: string;
  /** The first bytes of its stdout ("" unless captureStdout). */
  stdout: string;
}

/** How to run sendmail. */
export interface SendmailOptions {
  timeoutMs: number;
  /** The child's whole environment (default SENDMAIL_ENV). */
  env?: Readonly<Record<string, string>>;
  /** Keep the first bytes of stdout (default: stdout is /dev/null). */
  captureStdout?: boolean;
  /**
   * The process ends after this child (the relay's one message): its
   * timers are `AbortSignal.timeout` ones, free to start but never cleared.
   * Otherwise they are cleared as soon as the child is done, so a
   * long-running caller holds none per message.
   */
  shortLived?: boolean;
  /**
   * Called once the child has its whole input: work that may overlap its
   * run (e.g. starting a logger) without holding up what it reads.
   */
  onFed?: () => void;
}

/** The only environment sendmail sees: no MAIL_CONFIG, no LD_*. */
export const SENDMAIL_ENV: Readonly<Record<string, string>> = {
  PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  LANG: "C",
};
const STDERR_CAP = 4096;
/** How long a finished child's pipes may stay open (held by a grandchild). */
const PIPE_GRACE_MS = 500;

/**
 * Runs `argv` (an absolute program path first) with the spooled message on
 * its stdin, a cleared environment and a timeout. No shell.
 *
 * @throws {TempError} When the program cannot be started at all.
 */
export async function runWithSpool(
  argv: readonly string[],
  spool: Spooled,
  options: SendmailOptions,
): Promise<SpawnResult> {
  const [program, ...args] = argv;
  const timeout = childTimeout(options.timeoutMs, options.shortLived === true);
  const signal = timeout.signal;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program!, {
      args,
      clearEnv: true,
      env: { ...(options.env ?? SENDMAIL_ENV) },
      stdin: "piped",
      stdout: options.captureStdout ? "piped" : "null",
      stderr: "piped",
      signal,
    }).spawn();
  } catch (err) {
    timeout.clear();
    const notAllowed = err instanceof Deno.errors.NotCapable ||
      err instanceof Deno.errors.PermissionDenied;
    throw new TempError(
      notAllowed ? "sendmail not permitted by this build" : "cannot run sendmail",
      "4.3.5",
      String(err),
    );
  }
  const feed = feedSpool(spool, child.stdin);
  const stderr = readCapped(child.stderr, STDERR_CAP);
  const stdout = options.captureStdout ? readCapped(child.stdout, STDERR_CAP) : undefined;
  if (options.onFed) void feed.then(options.onFed);
  let piped = false;
  const pipes = Promise.all([feed, stderr.done, stdout?.done]).then(() => piped = true);
  const status = await child.status.finally(timeout.clear);
  // The child is gone, but a grandchild it left behind (postdrop, a shell's
  // sleep) may still hold its pipes open: wait a moment for them, never for
  // the grandchild, or a hung sendmail would outlive the timeout.
  if (!piped) {
    const grace = childTimeout(PIPE_GRACE_MS, options.shortLived === true);
    await Promise.race([
      pipes,
      new Promise((resolve) => grace.signal.addEventListener("abort", resolve, { once: true })),
    ]);
    grace.clear();
  }
  return {
    code: status.signal === null ? status.code : undefined,
    signal: status.signal ?? undefined,
    timedOut: signal.aborted,
    stderr: stderr.text(),
    stdout: stdout?.text() ?? "",
  };
}

/** A signal aborted after `ms`; `clear()` stops its timer (a short-lived one is left to run). */
function childTimeout(ms: number, shortLived: boolean): { signal: AbortSignal; clear(): void } {
  if (shortLived) return { signal: AbortSignal.timeout(ms), clear() {} };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/**
 * Writes the whole spool into `sink` from its start and closes the sink, but
 * never the spool: the same spool can feed another child (relay failover).
 */
async function feedSpool(spool: Spooled, sink: WritableStream<Uint8Array>): Promise<void> {
  const writer = sink.getWriter();
  // From the pool: a batch feeds thousands of children without a new 64 KiB each.
  const buffer = takeChunk();
  try {
    await spool.file.seek(0, Deno.SeekMode.Start);
    // Each write is awaited before the buffer is read into again.
    for (;;) {
      const n = await spool.file.read(buffer);
      if (n === null) break;
      await writer.write(buffer.subarray(0, n));
    }
    await writer.close();
  } catch {
    // The child exited early (EPIPE) or was killed: its status tells why.
    writer.releaseLock();
  } finally {
    giveChunk(buffer);
  }
}

/**
 * Reads a stream to its end, keeping the first `cap` characters; text() is
 * what came so far. Everything after the cap is read and dropped, so a
 * peer that floods a pipe neither grows memory nor blocks its writer.
 */
export function readCapped(
  stream: ReadableStream<Uint8Array>,
  cap: number,
): { done: Promise<void>; text(): string } {
  const decoder = new TextDecoder();
  let text = "";
  const done = (async () => {
    try {
      for await (const chunk of stream) {
        if (text.length < cap) text += decoder.decode(chunk, { stream: true });
      }
    } catch {
      // the pipe broke: keep what came
    }
  })();
  return { done, text: () => text.slice(0, cap) };
}
