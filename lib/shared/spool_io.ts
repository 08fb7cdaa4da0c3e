/**
 * The spool: a message read to its end under a size limit, an idle time and
 * a deadline, counted and hashed, into a private, already-unlinked file (or
 * memory, when it is small); and the byte readers and reused buffers it is
 * read with. pipeline_io.ts streams a spool into a child.
 *
 * @module
 */

import { DataError, TempError } from "./errors.ts";
import { MemoryFile, type SpoolFile } from "./memory_file.ts";
import { hexOf, Sha256 } from "./sha256.ts";
import { fired, startTimeout } from "./timeout_io.ts";

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
   * than the message). `"whole"`: never a file, however large (up to
   * `maxSize`): a process running as root spools nothing in `/tmp`, a
   * directory every account writes.
   */
  inMemory?: boolean | "whole";
  /**
   * With `inMemory: true`, how large a message may grow in memory (its
   * buffer doubling from 64 KiB) before it goes to a file; default 64 KiB,
   * one read buffer. Held whole, a message is hashed by Web Crypto's native
   * digest at its end, which is several times faster than the incremental
   * hash a file needs (about 2 against 13 ms a MiB here).
   */
  memoryMax?: number;
  /**
   * The clock (ms since the epoch) that the deadline and `minRate` read
   * (default Date.now; tests pass their own). The short-lived watchdog's
   * timers keep the real one.
   */
  clock?: () => number;
}

/** How long a message may take before `minRate` applies. */
const MIN_RATE_GRACE_MS = 60_000;

/** A byte source read into a caller's buffer (Deno.stdin, Deno.FsFile …). */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

const CHUNK = 65536;

/** Spare read buffers: a long-running service reuses them instead of growing the heap. */
const POOL: Uint8Array<ArrayBuffer>[] = [];

/** A 64 KiB buffer from the pool (give it back with {@link giveChunk}). */
export function takeChunk(): Uint8Array<ArrayBuffer> {
  return POOL.pop() ?? new Uint8Array(CHUNK);
}

/** Returns a buffer taken with {@link takeChunk}. */
export function giveChunk(buffer: Uint8Array<ArrayBuffer>): void {
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
 * `inMemory`, into memory when it fits in one read buffer; with `"whole"`,
 * into memory always).
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
  let buffer = takeChunk();
  let held = 0;
  const clock = options.clock ?? Date.now;
  const started = clock();
  const deadline = options.deadlineMs === undefined ? Infinity : started + options.deadlineMs;
  const watch = options.shortLived ? signalWatchdog(options.idleTimeoutMs, deadline) : undefined;
  try {
    for (;;) {
      const left = deadline - clock();
      const into = buffer.subarray(held);
      let n: number | null | "idle";
      if (watch) n = await watch.race(input.read(into));
      else {
        // A timer per read, cleared at once (a cold one cannot be: a
        // long-running service would hold thousands of them).
        const timeout = startTimeout(Math.max(0, Math.min(options.idleTimeoutMs, left)), false);
        n = await Promise.race([input.read(into), fired(timeout).then(() => "idle" as const)])
          .finally(timeout.clear);
      }
      if (n === "idle") {
        throw new TempError(
          clock() >= deadline
            ? "message not complete within the time limit"
            : "timed out waiting for the message",
          "4.4.2",
        );
      }
      if (n === null) break;
      size += n;
      const took = clock() - started;
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
        if (options.inMemory === "whole" || buffer.length * 2 <= (options.memoryMax ?? CHUNK)) {
          // Twice the room; the pool's buffer goes back (a grown one is not pooled).
          const bigger = new Uint8Array(buffer.length * 2);
          bigger.set(buffer);
          giveChunk(buffer);
          buffer = bigger;
          continue;
        }
        // More than memory may hold: from here on it is a file like any other.
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
  // A grown buffer is not pooled: it can be the message itself.
  const bytes = buffer.length === CHUNK ? buffer.slice(0, held) : buffer.subarray(0, held);
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

/** As {@link writeAll}, synchronously. */
export function writeAllSync(file: Deno.FsFile, data: Uint8Array): void {
  for (let done = 0; done < data.length;) done += file.writeSync(data.subarray(done));
}

/** Removes `path` if it is there; a path already gone (or not ours to remove) is no error. */
export function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Gone already, or not ours: nothing more to do.
  }
}
