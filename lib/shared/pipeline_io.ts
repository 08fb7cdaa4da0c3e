/**
 * The relay's effectful pipeline, second half: stream a spooled message
 * (spool_io.ts) into sendmail (or ssh) with a cleared environment and a
 * timeout, and read what the child says. Nothing reaches sendmail until the
 * whole message is in and verified.
 *
 * @module
 */

import { TempError } from "./errors.ts";
import { giveChunk, type Spooled, takeChunk } from "./spool_io.ts";
import { fired, startTimeout } from "./timeout_io.ts";

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
  const timeout = startTimeout(options.timeoutMs, options.shortLived === true);
  const signal = timeout.signal;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program!, {
      args,
      clearEnv: true,
      env: { ...(options.env ?? SENDMAIL_ENV) },
      stdin: "piped",
      stdout: "null",
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
  if (options.onFed) void feed.then(options.onFed);
  let piped = false;
  const pipes = Promise.all([feed, stderr.done]).then(() => piped = true);
  const status = await child.status.finally(timeout.clear);
  // The child is gone, but a grandchild it left behind (postdrop, a shell's
  // sleep) may still hold its pipes open: wait a moment for them, never for
  // the grandchild, or a hung sendmail would outlive the timeout.
  if (!piped) {
    const grace = startTimeout(PIPE_GRACE_MS, options.shortLived === true);
    await Promise.race([pipes, fired(grace)]);
    grace.clear();
  }
  return {
    code: status.signal === null ? status.code : undefined,
    signal: status.signal ?? undefined,
    timedOut: signal.aborted,
    stderr: stderr.text(),
  };
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
