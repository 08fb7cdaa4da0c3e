/**
 * sshsendmail: the satellite side (a Postfix pipe(8) transport, a nullmailer 2.x protocol module,
 * a plain `sendmail`). An edge module: it alone builds the ClientContext from Deno, hands it to
 * the mode's handler (lib/client/run_*_io.ts) and calls Deno.exit.
 *
 * @module
 */

import type { ClientContext, ModeHandler } from "./lib/client/client_context.ts";
import { needsParseArgs, parseClientArgs } from "./lib/client/client_args.ts";
import { type Mta, splitClientArgv } from "./lib/client/split_client_argv.ts";
import { PROGRAM } from "./lib/client/client_constants.ts";
import { CLIENT_USAGE } from "./lib/client/client_usage.ts";
import { reportError } from "./lib/client/failure_report.ts";
import { settingsFor } from "./lib/client/load_config_io.ts";
import { invokedPathOf, resolveMode } from "./lib/client/mode.ts";
import { runAdmin, runSetupCommand } from "./lib/client/run_admin_io.ts";
import { runNullmailer } from "./lib/client/run_nullmailer_io.ts";
import { runQueue } from "./lib/client/run_queue_io.ts";
import { runSend } from "./lib/client/run_send_io.ts";
import { runSmtp } from "./lib/client/run_smtp_io.ts";
import { writeText } from "./lib/client/write_text_io.ts";
import { EX_OK, EX_TEMPFAIL } from "./lib/shared/exit_codes.ts";
import { CAT_PATH, LOGGER_PATH, SSH_PATH } from "./lib/shared/layout.ts";

const VERSION = "0.2.0";

/** The real effects, from Deno. */
function denoContext(): ClientContext {
  return {
    args: Deno.args,
    invokedPath: invokedPathOf(Deno.mainModule),
    env: (name) => Deno.env.get(name),
    stdin: Deno.stdin,
    stdout: Deno.stdout,
    stderr: Deno.stderr,
    hostname: () => Deno.hostname(),
    uid: () => Deno.uid() ?? -1,
    pid: Deno.pid,
    now: () => Date.now(),
    uuid: () => crypto.randomUUID(),
    randomBytes: (n) => crypto.getRandomValues(new Uint8Array(n)),
    readTextFile: (path) => Deno.readTextFile(path),
    stat: (path) => Deno.stat(path),
    every: (ms, tick) => clearInterval.bind(undefined, setInterval(tick, ms)),
    paths: { ssh: SSH_PATH, cat: CAT_PATH, logger: LOGGER_PATH },
    addSignalListener: (signal, listener) => Deno.addSignalListener(signal, listener),
  };
}

async function main(ctx: ClientContext): Promise<number> {
  const mode = resolveMode(ctx.invokedPath, ctx.args);
  let caller: Mta = mode.kind === "mail" ? mode.mta : "sendmail";
  let admin = mode.kind === "setup";
  try {
    if (mode.kind === "newaliases") return EX_OK;
    if (mode.kind === "setup") return await runSetupCommand(ctx, mode.argv);
    // node:util (Deno's Node layer, 10–18 ms) loads only for own options in unusual forms.
    const split = splitClientArgv(mode.argv, caller);
    const parseArgs = needsParseArgs(split) ? (await import("node:util")).parseArgs : undefined;
    const args = parseClientArgs(split, parseArgs);
    caller = args.mta;
    admin = !["send", "smtp"].includes(args.command) && caller !== "nullmailer";
    if (args.command === "help" || args.command === "version") {
      const text = args.command === "help" ? CLIENT_USAGE : `${PROGRAM} ${VERSION}\n`;
      await writeText(ctx.stdout, text);
      return EX_OK;
    }
    const settings = await settingsFor(ctx, args);
    const handler: ModeHandler = args.command === "send"
      ? caller === "nullmailer" ? runNullmailer : runSend
      : args.command === "smtp"
      ? runSmtp
      : ["list", "flush", "remove"].includes(args.command)
      ? runQueue
      : runAdmin;
    return await handler(ctx, args, settings);
  } catch (err) {
    const report = reportError(err, { caller, admin, stdin: ctx.stdin, program: PROGRAM });
    await writeText(ctx.stderr, `${report.line}\n`);
    return report.code;
  }
}

if (import.meta.main) {
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    try { // still one line and a deferral, never silence
      Deno.stderr.writeSync(new TextEncoder().encode(`4.3.0 ${PROGRAM}: internal error\n`));
    } catch { /* stderr gone: the exit code still tells */ }
    Deno.exit(EX_TEMPFAIL);
  });
  Deno.exit(await main(denoContext()));
}
