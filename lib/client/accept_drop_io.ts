/**
 * The satellite service's acceptance of one message drop, from a user's
 * `drop/` or root's `root/` (lib/client/service_intake_io.ts,
 * lib/client/root_drops_io.ts): the drop's request line, the message
 * spooled, the sender's local policy applied, and the result written into
 * the queue. Works on a descriptor its caller checked, never on a path.
 * Effectful edge module.
 *
 * @module
 */

import { MailError } from "../shared/errors.ts";
import { prefixedReader, type Spooled, spoolMessage } from "../shared/spool_io.ts";
import { parseSendmailArgs, type SendmailRequest } from "../shared/sendmail_args.ts";
import { normalizeSender } from "./client_args.ts";
import { MAX_DROP_HEADER, parseDropHeader } from "./drop.ts";
import { readHeadLine, syncReader } from "./drop_read_io.ts";
import { loginOfUid, prepareLocal } from "./prepare_local_io.ts";
import { newMessageId, type QueueHeader, queueHeader } from "./queue_entry.ts";
import type { ServiceCore } from "./service_context.ts";

/**
 * Copies a checked message drop (`file`, open, past its checks) into the
 * queue; returns why not, when it cannot. The caller closes `file`.
 */
export async function acceptDrop(
  core: ServiceCore,
  hex: string,
  file: Deno.FsFile,
  uid: number,
): Promise<string | undefined> {
  const { ctx } = core;
  const s = ctx.settings;
  const head = readHeadLine(file, MAX_DROP_HEADER);
  if (!head) return "no request line";
  const words = parseDropHeader(head.line);
  if (!words) return "malformed request line";
  let req;
  try {
    req = normalizeSender(parseSendmailArgs(["sendmail", ...words]));
  } catch (err) {
    return `request refused (${err instanceof MailError ? err.message : "invalid"})`;
  }
  let spool;
  try {
    spool = await spoolMessage(prefixedReader(head.rest, syncReader(file)), {
      dir: ctx.spoolDir,
      prefix: "sshsendmail",
      maxSize: s.maxSize,
      idleTimeoutMs: 60_000,
      // Under 64 KiB (most mail) the copy stays in memory: no spool file to
      // create, write and read back before the queue file is written.
      inMemory: true,
    });
  } catch (err) {
    return err instanceof MailError ? err.message : "cannot read";
  }
  const login = await loginOfUid(uid);
  let prepared;
  try {
    prepared = await prepareLocal(await ctx.policy(), login, req, spool, {
      spool: { dir: ctx.spoolDir, inMemory: true },
      maxSize: s.maxSize + 4096,
      idleTimeoutMs: 60_000,
    });
  } catch (err) {
    spool.file.close();
    return `request refused (${err instanceof MailError ? err.message : "invalid"})`;
  }
  try {
    await enqueue(core, hex, uid, prepared);
    return undefined;
  } finally {
    if (prepared.spool !== spool) prepared.spool.file.close();
    spool.file.close();
  }
}

/** Queues a prepared message and tracks it. */
async function enqueue(
  core: ServiceCore,
  hex: string,
  uid: number,
  prepared: { req: SendmailRequest; spool: Spooled },
): Promise<void> {
  const { ctx, queue, book } = core;
  const id = newMessageId(crypto.randomUUID());
  const header: QueueHeader = {
    ...queueHeader(id, prepared.req, prepared.spool, Date.now()),
    uid,
    drop: hex,
  };
  const path = await queue.enqueue(header, prepared.spool);
  book.add({
    header,
    state: undefined,
    path,
    bodyOffset: new TextEncoder().encode(`${JSON.stringify(header)}\n`).length,
  });
  ctx.log("info", {
    event: "accepted",
    drop: hex,
    id,
    uid,
    sender: `<${header.sender ?? ""}>`,
    rcpts: header.extractRecipients ? "headers" : header.recipients.length,
    size: header.size,
  });
}
