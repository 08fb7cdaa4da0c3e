/**
 * Sending one spooled message to the relay over ssh, direct (no service).
 *
 * @module
 */

import type { ClientContext } from "./client_context.ts";
import type { ClientSettings } from "./client_config.ts";
import { CONTROL_PATH, PROGRAM } from "./client_constants.ts";
import { printable } from "./mailq.ts";
import { classifyExit, type Failure, remoteCommand, sshArgv } from "./ssh_command.ts";
import { sshEnv } from "./ssh_env.ts";
import { writeText } from "./write_text_io.ts";
import { EX_TEMPFAIL } from "../shared/exit_codes.ts";
import { runWithSpool, type Spooled } from "../shared/pipeline_io.ts";
import type { SendmailRequest } from "../shared/sendmail_args.ts";

/** Options of {@link sendToRelay}. */
export interface RelaySendOptions {
  /** The message id the relay records (its duplicate check). */
  id?: string | undefined;
  /** `-v`: ssh's diagnostics and how it ended go to stderr. */
  verbose?: boolean;
}

/** ssh keeps its control socket in ~/.ssh; without that directory, no reuse. */
async function hasSshDir(ctx: ClientContext): Promise<boolean> {
  const home = ctx.env("HOME");
  if (!home) return false;
  try {
    return (await ctx.stat(`${home}/.ssh`)).isDirectory;
  } catch {
    return false;
  }
}

/** ssh's control socket when the settings ask for reuse and ~/.ssh exists. */
export async function controlPathOf(
  ctx: ClientContext,
  settings: ClientSettings,
): Promise<string | undefined> {
  return settings.reuse && await hasSshDir(ctx) ? CONTROL_PATH : undefined;
}

/** Sends one spooled message, trying each relay in order. Returns undefined on success. */
export async function sendToRelay(
  ctx: ClientContext,
  settings: ClientSettings,
  req: SendmailRequest,
  spool: Spooled,
  o: RelaySendOptions = {},
): Promise<Failure | undefined> {
  const remote = remoteCommand(
    settings,
    req,
    settings.integrity ? { size: spool.size, sha256: spool.sha256, id: o.id } : undefined,
  );
  const controlPath = await controlPathOf(ctx, settings);
  let failure;
  for (const host of settings.hosts) {
    const result = await runWithSpool(
      sshArgv(ctx.paths.ssh, settings, host, remote, controlPath),
      spool,
      {
        timeoutMs: settings.sshTimeout * 1000,
        env: sshEnv(ctx.env),
        captureStdout: settings.integrity,
      },
    );
    if (o.verbose) {
      // -v: what ssh said (LogLevel=VERBOSE) and how it ended, as sendmail -v shows its dialogue.
      await writeText(
        ctx.stderr,
        `${
          result.stderr.split("\n").filter(Boolean).map((l) => `${printable(l, 500)}\n`).join("")
        }${PROGRAM}: ${host}: ssh exited ${result.code ?? result.signal}\n`,
      );
    }
    // ssh catches SIGTERM and exits 255: a timeout is known by the signal, not the status.
    if (result.code === undefined || result.timedOut) {
      return {
        line: `4.4.2 ${PROGRAM}: ${
          result.timedOut
            ? `no answer from the relay within ssh_timeout (${settings.sshTimeout} s)`
            : "ssh was killed"
        }`,
        sysexit: EX_TEMPFAIL,
        nullmailer: 8,
        connectPhase: false,
      };
    }
    if (result.code === 0 && result.stdout !== "") {
      // rsendmail is silent on success: output there is not rsendmail speaking.
      // Defer (the relay's duplicate record absorbs a repeat if it did deliver).
      return {
        line: `4.5.0 ${PROGRAM}: the relay answered with unexpected output`,
        sysexit: EX_TEMPFAIL,
        nullmailer: 16,
        connectPhase: false,
      };
    }
    failure = classifyExit(result.code, result.stderr, PROGRAM);
    if (!failure?.connectPhase) return failure;
  }
  return failure;
}
