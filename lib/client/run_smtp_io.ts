/**
 * `sshsendmail -bs`: an SMTP session on stdin/stdout (PHP frameworks);
 * each message goes to the service (queue = yes) or, direct, to the relay
 * over one batch ssh session.
 *
 * @module
 */

import type { ClientContext } from "./client_context.ts";
import type { ClientArgs } from "./client_args.ts";
import type { ClientSettings } from "./client_config.ts";
import { PROGRAM, SMTP_MAX_SIZE } from "./client_constants.ts";
import { openBatchChannel } from "./batch_channel_io.ts";
import { directPreparer } from "./direct_preparer_io.ts";
import { smtpReplyOf } from "./failure_report.ts";
import { frameWordsOf, newMessageId, queueHeader } from "./queue_entry.ts";
import { controlPathOf } from "./relay_send_io.ts";
import { serveSmtp } from "./smtp_server_io.ts";
import { sshEnv } from "./ssh_env.ts";
import { submitToService } from "./submit_to_service_io.ts";
import { DataError, toMailError } from "../shared/errors.ts";
import { EX_OK } from "../shared/exit_codes.ts";
import { localSpool } from "./local_spool.ts";
import { parseSendmailArgs, type SendmailRequest } from "../shared/sendmail_args.ts";

/** How long the client may stay silent between commands and inside DATA. */
const IDLE_MS = 300_000;
/** Recipients one message may have. */
const MAX_RECIPIENTS = 1000;

/** Each message to the service. */
async function smtpToService(ctx: ClientContext, settings: ClientSettings): Promise<number> {
  await serveSmtp(ctx.stdin, ctx.stdout, {
    options: { hostname: ctx.hostname(), maxSize: settings.maxSize, maxRecipients: MAX_RECIPIENTS },
    idleMs: IDLE_MS,
    spool: localSpool(ctx.uid()),
    async deliver(envelope, received) {
      const req = parseSendmailArgs(["sendmail", "--", ...envelope.recipients]);
      await received.file.seek(0, Deno.SeekMode.Start);
      try {
        const hex = await submitToService(
          ctx,
          settings,
          { ...req, sender: envelope.sender },
          received.file,
        );
        return `250 2.0.0 Ok: queued as ${hex}`;
      } catch (err) {
        const e = toMailError(err);
        return e instanceof DataError ? `554 ${e.status} ${e.message}` : `451 4.3.0 ${e.message}`;
      }
    },
  });
  return EX_OK;
}

/** Each message to the relay, over one batch session. */
async function smtpToRelay(ctx: ClientContext, settings: ClientSettings): Promise<number> {
  const channel = openBatchChannel(settings, {
    sshPath: ctx.paths.ssh,
    env: sshEnv(ctx.env),
    program: PROGRAM,
    controlPath: await controlPathOf(ctx, settings),
  });
  const prepare = directPreparer(ctx, settings);
  try {
    await serveSmtp(ctx.stdin, ctx.stdout, {
      options: { hostname: ctx.hostname(), maxSize: SMTP_MAX_SIZE, maxRecipients: MAX_RECIPIENTS },
      idleMs: IDLE_MS,
      spool: localSpool(ctx.uid()),
      async deliver(envelope, received) {
        const base: SendmailRequest = {
          sender: envelope.sender,
          extractRecipients: false,
          recipients: envelope.recipients,
          size: undefined,
          sha256: undefined,
          id: undefined,
        };
        const { req, spool } = await prepare(base, received);
        // A spool made by prepare (From: added) is this function's to close.
        try {
          const id = newMessageId(ctx.uuid());
          const header = queueHeader(id, req, spool, ctx.now());
          return smtpReplyOf(await channel.send(frameWordsOf(header), spool), id);
        } finally {
          if (spool !== received) spool.file.close();
        }
      },
    });
  } finally {
    await channel.close();
  }
  return EX_OK;
}

/** An SMTP session to its QUIT. */
export function runSmtp(
  ctx: ClientContext,
  _args: ClientArgs,
  settings: ClientSettings,
): Promise<number> {
  return settings.queue ? smtpToService(ctx, settings) : smtpToRelay(ctx, settings);
}
