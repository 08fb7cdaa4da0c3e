/**
 * The effectful side of `sshsendmail -bs`: reads SMTP commands on stdin,
 * writes replies on stdout, collects each message (dot-unstuffed, CRLF made
 * LF, so the bytes equal what a command-line send delivers) into a private
 * spool, and hands it to `deliver`, whose answer becomes the reply to the
 * final dot. Effectful edge module.
 *
 * @module
 */

import type { LocalSpool } from "./local_spool.ts";
import { MailError, toMailError } from "../shared/errors.ts";
import { FramedReader } from "../shared/framed_reader.ts";
import { type ByteReader, type Spooled, spoolMessage } from "../shared/spool_io.ts";
import {
  MAX_COMMAND_LINE,
  type SmtpEnvelope,
  type SmtpOptions,
  SmtpSession,
  unstuffLine,
} from "./smtp_session.ts";

/** Longest DATA line accepted. */
export const MAX_DATA_LINE = 1 << 20;

/** What the SMTP server needs from the edge. */
export interface SmtpServerContext {
  options: SmtpOptions;
  /** Idle time allowed between commands and inside DATA. */
  idleMs: number;
  /** Where each message goes (lib/client/local_spool.ts). */
  spool: LocalSpool;
  /** Sends one message; returns the reply line to the final dot. */
  deliver(envelope: SmtpEnvelope, spool: Spooled): Promise<string>;
}

/** Where replies go (Deno.stdout). */
export interface ReplySink {
  write(p: Uint8Array): Promise<number>;
}

class Timeout extends Error {}

async function idle<T>(promise: Promise<T>, ms: number): Promise<T> {
  const signal = AbortSignal.timeout(ms);
  return await Promise.race([
    promise,
    new Promise<never>((_, reject) =>
      signal.addEventListener("abort", () => reject(new Timeout()))
    ),
  ]);
}

/** The DATA section as a byte source: ends at the lone dot (or at EOF: `eof`). */
class DataReader implements ByteReader {
  ended = false;
  eof = false;
  tooLong = false;
  #input: FramedReader;
  #ms: number;
  #pending: Uint8Array = new Uint8Array(0);

  constructor(input: FramedReader, ms: number) {
    this.#input = input;
    this.#ms = ms;
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#pending.length === 0) {
      if (this.ended) return null;
      const raw = await idle(this.#input.readRawLine(MAX_DATA_LINE), this.#ms);
      if (raw === null) {
        this.ended = this.eof = true;
        return null;
      }
      if (raw === "too-long") {
        this.tooLong = true;
        continue;
      }
      const line = unstuffLine(raw);
      if (line === undefined) {
        this.ended = true;
        return null;
      }
      const withLf = new Uint8Array(line.length + 1);
      withLf.set(line);
      withLf[line.length] = 0x0a;
      this.#pending = withLf;
    }
    const n = Math.min(p.length, this.#pending.length);
    p.set(this.#pending.subarray(0, n));
    this.#pending = this.#pending.subarray(n);
    return n;
  }
}

/** Runs one SMTP session to its QUIT (or end of input, or idle timeout). */
export async function serveSmtp(
  input: ByteReader,
  output: ReplySink,
  ctx: SmtpServerContext,
): Promise<void> {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const say = async (lines: string[]) => {
    await output.write(encoder.encode(lines.map((l) => `${l}\r\n`).join("")));
  };
  const session = new SmtpSession(ctx.options);
  const reader = new FramedReader(input);
  await say([session.greeting()]);
  for (;;) {
    let raw;
    try {
      raw = await idle(reader.readRawLine(MAX_COMMAND_LINE), ctx.idleMs);
    } catch (err) {
      if (err instanceof Timeout) await say(["421 4.4.2 idle timeout, closing"]);
      return;
    }
    if (raw === null) return;
    if (raw === "too-long") {
      await say(["500 5.5.2 line too long"]);
      continue;
    }
    const action = session.onLine(decoder.decode(raw).replace(/\r$/, ""));
    await say(action.lines);
    if (action.kind === "quit") return;
    if (action.kind !== "data") continue;
    const data = new DataReader(reader, ctx.idleMs);
    let spool: Spooled | undefined;
    let refusal: string | undefined;
    try {
      spool = await spoolMessage(data, {
        ...ctx.spool,
        prefix: "sshsendmail",
        maxSize: ctx.options.maxSize,
        idleTimeoutMs: ctx.idleMs,
      });
    } catch (err) {
      if (err instanceof Timeout) {
        await say(["421 4.4.2 idle timeout, closing"]);
        return;
      }
      const e = toMailError(err);
      refusal = e.exitCode === 65 ? `552 ${e.status} ${e.message}` : `451 ${e.status} ${e.message}`;
    }
    try {
      const sink = new Uint8Array(4096);
      while ((await data.read(sink)) !== null) { /* drain to the dot */ }
    } catch {
      await say(["421 4.4.2 idle timeout, closing"]);
      return;
    }
    if (data.eof) return; // input ended inside DATA: nothing is sent
    if (data.tooLong) refusal = "500 5.5.2 line too long in message";
    const envelope = session.envelope!;
    session.reset();
    if (refusal !== undefined || spool === undefined) {
      spool?.file.close();
      await say([refusal ?? "451 4.3.0 cannot spool message"]);
      continue;
    }
    try {
      await say([await ctx.deliver(envelope, spool)]);
    } catch (err) {
      const e = err instanceof MailError ? err : toMailError(err);
      await say([`451 ${e.status.replace(/^5/, "4")} ${e.message}`]);
    } finally {
      spool.file.close();
    }
  }
}
