/**
 * The send mode of a sendmail caller (cron, mutt, PHP …) and of a Postfix
 * pipe: one message on stdin, to the service (sendmail, queue = yes) or
 * straight to the relay over ssh.
 *
 * @module
 */

import type { ClientContext } from "./client_context.ts";
import type { ClientArgs } from "./client_args.ts";
import type { ClientSettings } from "./client_config.ts";
import { LOCAL_IDLE_MS, LOCAL_MAX_SIZE, PROGRAM } from "./client_constants.ts";
import { directPreparer } from "./direct_preparer_io.ts";
import { reportFailure } from "./failure_report.ts";
import { pipeMessageId } from "./pipe_message_id.ts";
import { newMessageId } from "./queue_entry.ts";
import { startDirectSend } from "./relay_send_io.ts";
import { submitToService } from "./submit_to_service_io.ts";
import { writeText } from "./write_text_io.ts";
import { EX_OK } from "../shared/exit_codes.ts";
import { localSpool } from "./local_spool.ts";
import { spoolMessage } from "../shared/spool_io.ts";

/** `sendmail [options] [--] recipient…` and the Postfix pipe (`--host …`). */
export async function runSend(
  ctx: ClientContext,
  args: ClientArgs,
  settings: ClientSettings,
): Promise<number> {
  const sendmail = args.mta === "sendmail";
  let req = args.request!;
  if (sendmail && settings.queue) {
    const hex = await submitToService(ctx, settings, req, ctx.stdin);
    if (args.verbose) {
      await writeText(
        ctx.stderr,
        `${PROGRAM}: handed to the delivery service as ${hex}; mailq shows it until the relay takes it\n`,
      );
    }
    return EX_OK; // the service delivers it (or tells the sender why not)
  }
  const verbose = args.verbose && sendmail;
  if (verbose && !settings.sshOptions.some((o) => /^loglevel=/i.test(o))) {
    settings = { ...settings, sshOptions: ["LogLevel=VERBOSE", ...settings.sshOptions] };
  }
  // ssh starts now: its handshake overlaps the reading of the message.
  const direct = await startDirectSend(ctx, settings, { verbose });
  let failure;
  try {
    let spool = await spoolMessage(ctx.stdin, {
      ...localSpool(ctx.uid()),
      prefix: "sshsendmail",
      maxSize: LOCAL_MAX_SIZE,
      idleTimeoutMs: LOCAL_IDLE_MS,
      // One message, then the process ends: its idle timer needs no setTimeout.
      shortLived: true,
    });
    if (sendmail) ({ req, spool } = await directPreparer(ctx, settings, true)(req, spool));
    const id = sendmail
      ? newMessageId(ctx.uuid())
      : args.mta === "postfix" && args.queueId !== undefined
      ? pipeMessageId(args.queueId, req)
      : undefined;
    failure = await direct.send(req, spool, id);
  } catch (err) {
    await direct.close();
    throw err;
  }
  if (failure === undefined) return EX_OK;
  const report = reportFailure(args.mta, failure);
  await writeText(ctx.stderr, `${report.line}\n`);
  return report.code;
}
