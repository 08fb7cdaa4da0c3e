/**
 * The nullmailer 2.x protocol module: options on stdin up to an empty
 * line, the envelope and message on fd 3; to the service (`queue` in the
 * options) or straight to the relay over ssh.
 *
 * @module
 */

import type { ClientContext } from "./client_context.ts";
import type { ClientArgs } from "./client_args.ts";
import { normalizeSender } from "./client_args.ts";
import { type ClientSettings, ConfigError } from "./client_config.ts";
import { LOCAL_IDLE_MS, LOCAL_MAX_SIZE } from "./client_constants.ts";
import { reportFailure } from "./failure_report.ts";
import { loadConfig } from "./load_config_io.ts";
import { parseEnvelope, parseNullmailerOptions } from "./nullmailer.ts";
import { startDirectSend } from "./relay_send_io.ts";
import { submitToService } from "./submit_to_service_io.ts";
import { writeText } from "./write_text_io.ts";
import { DataError, TempError } from "../shared/errors.ts";
import { EX_OK } from "../shared/exit_codes.ts";
import { localSpool } from "./local_spool.ts";
import {
  type ByteReader,
  prefixedReader,
  readerFromStream,
  type Spooled,
  spoolMessage,
} from "../shared/spool_io.ts";
import { parseSendmailArgs, type SendmailRequest } from "../shared/sendmail_args.ts";

/**
 * Reads nullmailer's options block from stdin up to its empty line, without
 * waiting for EOF (nullmailer may keep the pipe open).
 */
async function readOptionsBlock(input: ByteReader, cap: number): Promise<string> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(4096);
  let text = "";
  for (;;) {
    const n = await input.read(buffer);
    if (n === null) return text;
    text += decoder.decode(buffer.subarray(0, n), { stream: true });
    if (text.startsWith("\n") || text.includes("\n\n")) return text;
    if (text.length > cap) throw new ConfigError("nullmailer options block too long");
  }
}

const UNREADABLE = "cannot read the message on fd 3";

/**
 * The envelope and message from fd 3, which Deno cannot open itself;
 * cat (inherited fd 3) streams it.
 */
async function readEnvelope(ctx: ClientContext): Promise<
  { req: SendmailRequest; body: ByteReader; done: Promise<boolean> }
> {
  const cat = new Deno.Command(ctx.paths.cat, {
    args: ["/dev/fd/3"],
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const fd3 = readerFromStream(cat.stdout);
  let head: Uint8Array = new Uint8Array(0);
  let envelope;
  const buffer = new Uint8Array(65536);
  while (!(envelope = parseEnvelope(head))) {
    const n = await fd3.read(buffer);
    if (n === null) {
      // cat could not read fd 3 (a local fault: nullmailer tries again) or it held no envelope.
      if (!(await cat.status).success) throw new TempError(UNREADABLE, "4.3.0");
      throw new DataError("no envelope on fd 3", "5.5.2");
    }
    const next = new Uint8Array(head.length + n);
    next.set(head);
    next.set(buffer.subarray(0, n), head.length);
    head = next;
  }
  const body = prefixedReader(head.subarray(envelope.bodyStart), fd3);
  const req = normalizeSender(
    parseSendmailArgs(["sendmail", "-f", envelope.sender, "--", ...envelope.recipients]),
  );
  return { req, body, done: cat.status.then((s) => s.success) };
}

/**
 * The whole message, spooled, and only once cat read fd 3 to its end: a
 * message cut short by a read error is never handed on (nullmailer sends
 * it again).
 */
async function readMessage(ctx: ClientContext): Promise<{ req: SendmailRequest; spool: Spooled }> {
  const { req, body, done } = await readEnvelope(ctx);
  const spool = await spoolMessage(body, {
    ...localSpool(ctx.uid()),
    prefix: "sshsendmail",
    maxSize: LOCAL_MAX_SIZE,
    idleTimeoutMs: LOCAL_IDLE_MS,
    // nullmailer runs the module once per message: no setTimeout for its idle timer.
    shortLived: true,
  });
  if (!await done) {
    spool.file.close();
    throw new TempError(UNREADABLE, "4.3.0");
  }
  return { req, spool };
}

/** One nullmailer delivery (the settings come from its options block, not argv). */
export async function runNullmailer(
  ctx: ClientContext,
  _args: ClientArgs,
  _settings: ClientSettings,
): Promise<number> {
  const settings = parseNullmailerOptions(await readOptionsBlock(ctx.stdin, 1 << 16));
  if (settings.queue) {
    // Through the satellite service: /etc/sshsendmail.conf names its spool.
    const local = await loadConfig(ctx, undefined, false);
    const { req, spool } = await readMessage(ctx);
    try {
      await spool.file.seek(0, Deno.SeekMode.Start);
      await submitToService(ctx, local, req, spool.file);
    } finally {
      spool.file.close();
    }
    return EX_OK;
  }
  // ssh starts now: its handshake overlaps the reading of the message.
  const direct = await startDirectSend(ctx, settings);
  const { req, spool } = await readMessage(ctx).catch(async (err) => {
    await direct.close();
    throw err;
  });
  const failure = await direct.send(req, spool);
  if (failure === undefined) return EX_OK;
  const report = reportFailure("nullmailer", failure);
  await writeText(ctx.stderr, `${report.line}\n`);
  return report.code;
}
