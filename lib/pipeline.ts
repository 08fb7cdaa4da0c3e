/**
 * The relay's effectful pipeline: spool the peer's message to a private,
 * already-unlinked file while counting and hashing it, then stream it into
 * sendmail with a cleared environment. Nothing reaches sendmail until the
 * whole message is in and verified.
 *
 * @module
 */

import { DataError, TempError } from "./errors.ts";
import { Sha256 } from "./sha256.ts";

/** A message held in the spool. */
export interface Spooled {
  /** The spool file, open, positioned anywhere; already unlinked. */
  file: Deno.FsFile;
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
}

/**
 * Reads `input` to its end into a fresh 0600 file in `dir`, unlinked at once
 * so that it cannot linger whatever happens to the process.
 *
 * @throws {DataError} Over the size limit (5.3.4) or over the declared size.
 * @throws {TempError} No byte for `idleTimeoutMs` (4.4.2), or spool I/O failed.
 */
export async function spoolMessage(
  input: ReadableStream<Uint8Array>,
  options: SpoolOptions,
): Promise<Spooled> {
  const path = `${options.dir}/rsendmail-${crypto.randomUUID()}`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, {
      read: true,
      write: true,
      createNew: true,
      mode: 0o600,
    });
    await Deno.remove(path);
  } catch (err) {
    throw new TempError("cannot spool message", "4.3.0", String(err));
  }
  const hash = new Sha256();
  const limit = Math.min(options.maxSize, options.declaredSize ?? Infinity);
  let size = 0;
  const reader = input.getReader();
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const idle = new Promise<"idle">((resolve) => {
        timer = setTimeout(() => resolve("idle"), options.idleTimeoutMs);
      });
      const chunk = await Promise.race([reader.read(), idle]);
      clearTimeout(timer);
      if (chunk === "idle") {
        throw new TempError("timed out waiting for the message", "4.4.2");
      }
      if (chunk.done) break;
      size += chunk.value.length;
      if (size > limit) {
        throw size > options.maxSize
          ? new DataError("message too big", "5.3.4")
          : new DataError("message longer than its declared size", "5.6.0");
      }
      hash.update(chunk.value);
      await writeAll(file, chunk.value);
    }
  } catch (err) {
    file.close();
    if (err instanceof DataError || err instanceof TempError) throw err;
    throw new TempError("cannot spool message", "4.3.0", String(err));
  } finally {
    reader.releaseLock();
  }
  return { file, size, sha256: hash.hex() };
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
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
}

/** How to run sendmail. */
export interface SendmailOptions {
  timeoutMs: number;
  /** The child's whole environment (default SENDMAIL_ENV). */
  env?: Readonly<Record<string, string>>;
}

/** The only environment sendmail sees: no MAIL_CONFIG, no LD_*. */
export const SENDMAIL_ENV: Readonly<Record<string, string>> = {
  PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  LANG: "C",
};
const STDERR_CAP = 4096;

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
  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    abort.abort();
  }, options.timeoutMs);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program!, {
      args,
      clearEnv: true,
      env: { ...(options.env ?? SENDMAIL_ENV) },
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
      signal: abort.signal,
    }).spawn();
  } catch (err) {
    clearTimeout(timer);
    const notAllowed = err instanceof Deno.errors.NotCapable ||
      err instanceof Deno.errors.PermissionDenied;
    throw new TempError(
      notAllowed ? "sendmail not permitted by this build" : "cannot run sendmail",
      "4.3.5",
      String(err),
    );
  }
  const feed = (async () => {
    await spool.file.seek(0, Deno.SeekMode.Start);
    try {
      await spool.file.readable.pipeTo(child.stdin);
    } catch {
      // sendmail exited early (EPIPE): its status tells why.
    }
  })();
  const stderr = readCapped(child.stderr, STDERR_CAP);
  const status = await child.status;
  clearTimeout(timer);
  await feed;
  return {
    code: status.signal === null ? status.code : undefined,
    signal: status.signal ?? undefined,
    timedOut,
    stderr: await stderr,
  };
}

async function readCapped(
  stream: ReadableStream<Uint8Array>,
  cap: number,
): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    if (text.length < cap) text += decoder.decode(chunk, { stream: true });
  }
  return text.slice(0, cap);
}
