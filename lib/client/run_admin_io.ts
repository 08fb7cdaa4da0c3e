/**
 * The admin's commands: `setup`, `--test`, `--serve` (the delivery
 * service), `--init-spool` and `--migrate`.
 *
 * @module
 */

import type { ClientContext } from "./client_context.ts";
import type { ClientArgs } from "./client_args.ts";
import { type ClientSettings, ConfigError, parseConfigFile } from "./client_config.ts";
import { LOCAL_IDLE_MS, LOCAL_MAX_SIZE, PROGRAM } from "./client_constants.ts";
import { localPolicyOnce } from "./direct_preparer_io.ts";
import { configPath } from "./load_config_io.ts";
import { migrateOldQueue } from "./migrate_io.ts";
import { accountFromPasswd, loginFromPasswd } from "./prepare_local_io.ts";
import { newMessageId } from "./queue_entry.ts";
import { startDirectSend } from "./relay_send_io.ts";
import { loggerSink } from "./logger_sink_io.ts";
import { runService } from "./service_io.ts";
import { runSetup, runTest, type SetupContext } from "./setup_io.ts";
import { initSpool } from "./spool_init_io.ts";
import { sshEnv } from "./ssh_env.ts";
import { dropOptionsOf } from "./submit_to_service_io.ts";
import { testMessage } from "./test_message.ts";
import { writeText } from "./write_text_io.ts";
import { UsageError } from "../shared/errors.ts";
import { EX_OK } from "../shared/exit_codes.ts";
import { SERVICE_USER, SPOOL_DIR } from "../shared/layout.ts";
import { localSpool } from "./local_spool.ts";
import { prefixedReader, spoolMessage } from "../shared/spool_io.ts";
import { parseSendmailArgs } from "../shared/sendmail_args.ts";

/** `sshsendmail --init-spool` (root): makes the service's spool. */
async function initSpoolCommand(ctx: ClientContext, settings: ClientSettings, verbose: boolean) {
  if (ctx.uid() !== 0) throw new UsageError("--init-spool is for root");
  const account = accountFromPasswd(await ctx.readTextFile("/etc/passwd"), SERVICE_USER);
  if (!account) throw new ConfigError(`no account ${SERVICE_USER}: create it first`);
  const done = await initSpool(settings.spool, {
    serviceUid: account.uid,
    serviceGid: account.gid,
  }, ctx.now());
  if (verbose) await writeText(ctx.stdout, done.map((l) => `${PROGRAM}: ${l}\n`).join(""));
  return EX_OK;
}

/** Reads the config again when its mtime changed (the service's reload). */
function configReloader(
  ctx: ClientContext,
  file: string | undefined,
): () => Promise<ClientSettings | undefined> {
  const path = configPath(ctx, file);
  let seen: number | undefined;
  const mtime = async () => (await ctx.stat(path).catch(() => undefined))?.mtime?.getTime();
  mtime().then((t) => (seen = t));
  return async () => {
    const now = await mtime();
    if (now === seen) return undefined;
    seen = now;
    return now === undefined ? undefined : parseConfigFile(await ctx.readTextFile(path), path);
  };
}

/** `sshsendmail --serve`: the delivery service, in the foreground. */
async function serve(ctx: ClientContext, settings: ClientSettings, configFile: string | undefined) {
  const passwd = await ctx.readTextFile("/etc/passwd");
  const me = accountFromPasswd(passwd, loginFromPasswd(passwd, ctx.uid()) ?? "");
  if (!me) throw new ConfigError(`uid ${ctx.uid()} has no /etc/passwd entry`);
  const sink = loggerSink(ctx.paths.logger, PROGRAM, ctx.pid);
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  for (const signal of ["SIGTERM", "SIGINT"] as const) ctx.addSignalListener(signal, stop);
  try {
    await runService({
      settings,
      uid: ctx.uid(),
      gid: me.gid,
      hostname: ctx.hostname(),
      sshPath: ctx.paths.ssh,
      env: sshEnv(ctx.env),
      program: PROGRAM,
      spoolDir: SPOOL_DIR,
      log: sink.log,
      policy: localPolicyOnce(ctx, settings),
    }, { pid: ctx.pid, stopped, reload: configReloader(ctx, configFile) });
  } finally {
    await sink.close();
  }
  return EX_OK;
}

/** The test message of `setup` and `--test`: the way real mail goes (a direct send). */
async function sendTest(ctx: ClientContext, settings: ClientSettings, address: string) {
  const req = parseSendmailArgs(["sendmail", "-i", "--", address]);
  const text = testMessage(ctx.hostname(), address, new Date(ctx.now()));
  const spool = await spoolMessage(prefixedReader(new TextEncoder().encode(text)), {
    ...localSpool(ctx.uid()),
    prefix: "sshsendmail",
    maxSize: LOCAL_MAX_SIZE,
    idleTimeoutMs: LOCAL_IDLE_MS,
  });
  const direct = await startDirectSend(ctx, settings);
  return await direct.send(req, spool, newMessageId(ctx.uuid()));
}

/** Asks a yes/no question on the terminal (setup's host key check). */
async function confirmOnTerminal(ctx: ClientContext, question: string): Promise<boolean> {
  await writeText(ctx.stdout, question);
  const buffer = new Uint8Array(256);
  const n = await ctx.stdin.read(buffer);
  return /^\s*y(es)?\s*$/i.test(new TextDecoder().decode(buffer.subarray(0, n ?? 0)));
}

function setupContextOf(ctx: ClientContext, configFile: string | undefined): SetupContext {
  return {
    sshPath: ctx.paths.ssh,
    env: sshEnv(ctx.env),
    hostname: ctx.hostname(),
    configFile: configPath(ctx, configFile),
    sendTest: (settings, address) => sendTest(ctx, settings, address),
    say: async (line) => {
      await ctx.stdout.write(new TextEncoder().encode(`${line}\n`));
    },
    confirm: ctx.stdin.isTerminal() ? (question) => confirmOnTerminal(ctx, question) : undefined,
  };
}

/** `sshsendmail setup …`: key, relay host key, config (its own options). */
export async function runSetupCommand(ctx: ClientContext, argv: readonly string[]) {
  return await runSetup(argv, setupContextOf(ctx, undefined));
}

/** `--serve`, `--init-spool`, `--migrate` or `--test`, as `args.command` says. */
export async function runAdmin(
  ctx: ClientContext,
  args: ClientArgs,
  settings: ClientSettings,
): Promise<number> {
  switch (args.command) {
    case "serve":
      return await serve(ctx, settings, args.configFile);
    case "init-spool":
      return await initSpoolCommand(ctx, settings, args.verbose);
    case "migrate":
      await migrateOldQueue(settings.spool, ctx.uid(), dropOptionsOf(settings));
      return EX_OK;
    case "test":
      return await runTest(settings, args.testAddress ?? "", setupContextOf(ctx, args.configFile));
    default:
      throw new TypeError(`Cannot run "${args.command}" as an admin command`);
  }
}
