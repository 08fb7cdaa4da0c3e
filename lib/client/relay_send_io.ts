/**
 * Sending one spooled message to the relay over ssh, direct (no service).
 *
 * @module
 */

import type { ClientContext } from "./client_context.ts";
import type { ClientSettings } from "./client_config.ts";
import { CONTROL_PATH, PROGRAM } from "./client_constants.ts";
import { printable } from "./mailq.ts";
import { openBatchChannel } from "./batch_channel_io.ts";
import { frameWordsOf, newMessageId, queueHeader } from "./queue_entry.ts";
import {
  classifyExit,
  type Failure,
  failureOfReply,
  remoteCommand,
  sshArgv,
} from "./ssh_command.ts";
import { sshEnv } from "./ssh_env.ts";
import { writeText } from "./write_text_io.ts";
import { EX_TEMPFAIL } from "../shared/exit_codes.ts";
import { runWithSpool } from "../shared/pipeline_io.ts";
import { type Spooled } from "../shared/spool_io.ts";
import type { SendmailRequest } from "../shared/sendmail_args.ts";

/** Options of {@link sendToRelay}. */
export interface RelaySendOptions {
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

/** A direct send under way: ssh started, waiting for its message. */
export interface DirectSend {
  /** Sends the message; undefined on success. Call once. */
  send(req: SendmailRequest, spool: Spooled, id?: string): Promise<Failure | undefined>;
  /** Ends the session unused (the message could not be read). */
  close(): Promise<void>;
}

/**
 * Starts a direct send before the message is read. With integrity (our
 * relay), ssh and the relay's batch mode start at once, so the handshake
 * and the relay's start-up overlap the reading of the message; the message
 * then goes as one frame with its size, SHA-256 and id. Without integrity
 * (an upstream 1.1.4 relay), the command line carries the request and ssh
 * starts when the message is in.
 */
export async function startDirectSend(
  ctx: ClientContext,
  settings: ClientSettings,
  o: { verbose?: boolean } = {},
): Promise<DirectSend> {
  if (!settings.integrity) {
    return {
      // An upstream relay keeps no record: no id, no size or hash to send.
      send: (req, spool) => sendToRelay(ctx, settings, req, spool, o),
      close: () => Promise.resolve(),
    };
  }
  const channel = openBatchChannel(settings, {
    sshPath: ctx.paths.ssh,
    env: sshEnv(ctx.env),
    program: PROGRAM,
    controlPath: await controlPathOf(ctx, settings),
    onSessionEnd: o.verbose
      ? (host, stderr, code) => writeText(ctx.stderr, verboseLines(host, stderr, code))
      : undefined,
  });
  channel.open();
  return {
    async send(req, spool, id) {
      const header = queueHeader(id ?? newMessageId(ctx.uuid()), req, spool, ctx.now());
      let answer;
      try {
        answer = await channel.send(frameWordsOf(header), spool, true);
      } finally {
        // The relay's answer is the verdict (it recorded the id before
        // answering): ssh's own ending is not waited for, unless -v shows it.
        if (answer !== undefined && "code" in answer && !o.verbose) channel.leave();
        else await channel.close();
      }
      return "code" in answer ? failureOfReply(answer) : answer;
    },
    close: () => channel.close(),
  };
}

/** `-v`: what ssh said (LogLevel=VERBOSE) and how it ended, as sendmail -v shows its dialogue. */
function verboseLines(host: string, stderr: string, code: number | string | undefined): string {
  return `${
    stderr.split("\n").filter(Boolean).map((l) => `${printable(l, 500)}\n`).join("")
  }${PROGRAM}: ${host}: ssh exited ${code}\n`;
}

/**
 * Sends one spooled message to an upstream 1.1.4 relay (`integrity = no`):
 * the request on ssh's command line, the message on its stdin, the relay's
 * exit code and stderr as the answer; each relay in order. Returns
 * undefined on success.
 */
export async function sendToRelay(
  ctx: ClientContext,
  settings: ClientSettings,
  req: SendmailRequest,
  spool: Spooled,
  o: RelaySendOptions = {},
): Promise<Failure | undefined> {
  const remote = remoteCommand(settings, req);
  const controlPath = await controlPathOf(ctx, settings);
  let failure;
  for (const host of settings.hosts) {
    const result = await runWithSpool(
      sshArgv(ctx.paths.ssh, settings, host, remote, controlPath),
      spool,
      {
        timeoutMs: settings.sshTimeout * 1000,
        env: sshEnv(ctx.env),
      },
    );
    if (o.verbose) {
      await writeText(ctx.stderr, verboseLines(host, result.stderr, result.code ?? result.signal));
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
    failure = classifyExit(result.code, result.stderr, PROGRAM);
    if (!failure?.connectPhase) return failure;
  }
  return failure;
}
