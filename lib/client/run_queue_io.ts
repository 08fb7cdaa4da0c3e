/**
 * The queue commands, answered by the service: `mailq` (`--list`, `-bp`),
 * `sendmail -q` (`--flush`) and `--remove ID`.
 *
 * @module
 */

import type { ClientContext } from "./client_context.ts";
import type { ClientArgs } from "./client_args.ts";
import type { ClientSettings } from "./client_config.ts";
import { PROGRAM } from "./client_constants.ts";
import { formatMailq } from "./mailq.ts";
import { flushSummary, removalId } from "./queue_words.ts";
import { askService } from "./submit_io.ts";
import { writeText } from "./write_text_io.ts";
import { MailError, TempError } from "../shared/errors.ts";
import { EX_NOINPUT, EX_OK, EX_TEMPFAIL } from "../shared/exit_codes.ts";

/** `mailq`: the service's listing of what this user may see. */
async function listQueue(ctx: ClientContext, settings: ClientSettings): Promise<number> {
  const reply = await askService(settings.spool, { op: "list" });
  if (!reply.ok) throw new TempError(reply.error, "4.3.0");
  if (reply.op !== "list") throw new TempError("unexpected answer", "4.3.0");
  await writeText(ctx.stdout, formatMailq(reply.messages, ctx.now()));
  return EX_OK;
}

/** `sendmail -q`, `--flush`: asks the service for a run now and reports it. */
async function flush(ctx: ClientContext, settings: ClientSettings, verbose: boolean) {
  // On a terminal, a progress line while the service drains a backlog.
  const encoder = new TextEncoder();
  const started = ctx.now();
  const stop = ctx.stderr.isTerminal()
    ? ctx.every(1000, () => {
      const s = Math.round((ctx.now() - started) / 1000);
      ctx.stderr.writeSync(encoder.encode(`\r${PROGRAM}: running the queue… ${s} s`));
    })
    : undefined;
  let reply;
  try {
    reply = await askService(settings.spool, { op: "flush" });
  } finally {
    if (stop !== undefined) {
      stop();
      if (ctx.now() - started >= 1000) ctx.stderr.writeSync(encoder.encode("\r\x1b[K"));
    }
  }
  if (!reply.ok) throw new TempError(reply.error, "4.3.0");
  if (reply.op !== "flush") throw new TempError("unexpected answer", "4.3.0");
  if (verbose || ctx.stdout.isTerminal()) await writeText(ctx.stdout, flushSummary(PROGRAM, reply));
  return reply.waiting === 0 ? EX_OK : EX_TEMPFAIL;
}

/** `--remove ID`: one of this user's queued messages (root: any). */
async function removeQueued(settings: ClientSettings, word: string): Promise<number> {
  const id = removalId(word);
  if (id === undefined) {
    throw new MailError("no such message", { exitCode: EX_NOINPUT, status: "5.1.0" });
  }
  const reply = await askService(settings.spool, { op: "remove", id });
  if (!reply.ok) throw new TempError(reply.error, "4.3.0");
  if (reply.op === "remove" && reply.removed) return EX_OK;
  throw new MailError("no such message in the queue", { exitCode: EX_NOINPUT, status: "5.1.0" });
}

/** `--list`, `--flush` or `--remove`, as `args.command` says. */
export async function runQueue(
  ctx: ClientContext,
  args: ClientArgs,
  settings: ClientSettings,
): Promise<number> {
  switch (args.command) {
    case "list":
      return await listQueue(ctx, settings);
    case "flush":
      return await flush(ctx, settings, args.verbose);
    case "remove":
      return await removeQueued(settings, args.removeId ?? "");
    default:
      throw new TypeError(`Cannot run "${args.command}" as a queue command`);
  }
}
