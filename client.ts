/**
 * sshsendmail: the satellite side. A Postfix pipe(8) transport, a
 * nullmailer 2.x protocol module, and a plain `sendmail` for cron, mutt,
 * mailx, git send-email, Emacs and PHP. Spools the message locally, sends
 * it with its size and SHA-256 over ssh to the relay's rsendmail, and maps
 * every outcome to the exit code its caller understands.
 *
 * This is an edge module: it alone reads Deno.args, the environment, stdin
 * and fd 3, and calls Deno.exit.
 *
 * @module
 */

import { type Mta, normalizeSender, parseClientArgs } from "./lib/client_args.ts";
import {
  ClientConfigError,
  type ClientSettings,
  DEFAULT_CONFIG_FILE,
  parseConfigFile,
} from "./lib/client_config.ts";
import { DataError, MailError, TempError, toMailError, UsageError } from "./lib/errors.ts";
import { EX_NOINPUT, EX_OK, EX_TEMPFAIL, isTemporary } from "./lib/exit_codes.ts";
import { CAT_PATH, QUEUE_ROOT, SPOOL_DIR, SSH_PATH } from "./lib/layout.ts";
import { flushQueue } from "./lib/flush.ts";
import { openQueue, type Queue } from "./lib/queue.ts";
import { backoffMs, formatAge, newMessageId, queueHeader } from "./lib/queue_entry.ts";
import { runSetup, runTest, type SetupContext } from "./lib/setup.ts";
import { openBatchChannel } from "./lib/batch_channel.ts";
import { frameWordsOf } from "./lib/flush.ts";
import {
  hasFromHeader,
  type LocalPolicy,
  parseAliases,
  qualify,
  rewriteRecipients,
} from "./lib/local_mail.ts";
import { serveSmtp } from "./lib/smtp_server.ts";
import { NM, parseEnvelope, parseNullmailerOptions } from "./lib/nullmailer.ts";
import {
  type ByteReader,
  prefixedReader,
  readerFromStream,
  runWithSpool,
  type Spooled,
  spoolMessage,
} from "./lib/pipeline.ts";
import { parseSendmailArgs, type SendmailRequest } from "./lib/sendmail_args.ts";
import { classifyExit, remoteCommand, sshArgv } from "./lib/ssh_command.ts";

const PROGRAM = "sshsendmail";
const VERSION = "0.2.0";
/** Local spool limits: the relay enforces the real size limit. */
const LOCAL_MAX_SIZE = 2 ** 40;
const LOCAL_IDLE_MS = 3_600_000;
/** SIZE advertised in -bs mode (the relay's own limit decides in the end). */
const SMTP_MAX_SIZE = 52_428_800;
/** ssh's connection-sharing socket, private to the user (ssh expands %d and %C). */
const CONTROL_PATH = "%d/.ssh/sshsendmail-%C";

const USAGE = `usage: sshsendmail [--host [USER@]HOST]... [--user U] [--port P] [--identity KEY]
                   [--known-hosts FILE] [--ssh-option K=V]... [--reuse] [--mta postfix|nullmailer]
                   [sendmail options] [--] RECIPIENT...
Sends the message on stdin through ssh to a relay running rsendmail.
Without --host, settings come from /etc/sshsendmail.conf or $SSHSENDMAIL_CONFIG.
See sshsendmail(8).
`;

/** The name this program was invoked as (a symlink keeps its own name). */
function invokedPath(): string {
  const main = Deno.mainModule;
  return main.startsWith("file://") ? decodeURIComponent(new URL(main).pathname) : main;
}

/**
 * nullmailer runs its protocol modules from its own directory with no
 * arguments; with --host the caller is a Postfix pipe; else plain sendmail.
 */
function defaultMta(path: string, argv: readonly string[]): Mta {
  if (/\/nullmailer\//.test(path)) return "nullmailer";
  return argv.some((a) => a === "--host" || a.startsWith("--host=")) ? "postfix" : "sendmail";
}

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
    if (text.length > cap) throw new ClientConfigError("nullmailer options block too long");
  }
}

async function loadConfig(file: string | undefined): Promise<ClientSettings> {
  const path = file ?? Deno.env.get("SSHSENDMAIL_CONFIG") ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    throw new ClientConfigError(`no relay configured: cannot read ${path}`);
  }
  const settings = parseConfigFile(text);
  if (settings.hosts.length === 0) throw new ClientConfigError(`no host in ${path}`);
  return settings;
}

/**
 * nullmailer mode: the envelope and message come from fd 3, which Deno
 * cannot open itself; /bin/cat (inherited fd 3) streams it.
 */
async function readNullmailerMessage(): Promise<{ req: SendmailRequest; spool: Spooled }> {
  const cat = new Deno.Command(CAT_PATH, {
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
    if (n === null) throw new DataError("no envelope on fd 3", "5.5.2");
    const next = new Uint8Array(head.length + n);
    next.set(head);
    next.set(buffer.subarray(0, n), head.length);
    head = next;
  }
  const body = prefixedReader(head.subarray(envelope.bodyStart), fd3);
  const req = normalizeSender(
    parseSendmailArgs(["sendmail", "-f", envelope.sender, "--", ...envelope.recipients]),
  );
  const spool = await spoolMessage(body, {
    dir: SPOOL_DIR,
    prefix: "sshsendmail",
    maxSize: LOCAL_MAX_SIZE,
    idleTimeoutMs: LOCAL_IDLE_MS,
  });
  const status = await cat.status;
  if (!status.success) throw new TempError("cannot read the message on fd 3", "4.3.0");
  return { req, spool };
}

function sshEnv(): Record<string, string> {
  const env: Record<string, string> = { PATH: "/usr/bin:/bin", LANG: "C" };
  for (const name of ["HOME", "USER", "LOGNAME", "SSH_AUTH_SOCK"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) env[name] = v;
  }
  return env;
}

/** Sends one spooled message, trying each relay in order. Returns undefined on success. */
async function send(
  settings: ClientSettings,
  req: SendmailRequest,
  spool: Spooled,
  id?: string,
) {
  const remote = remoteCommand(
    settings,
    req,
    settings.integrity ? { size: spool.size, sha256: spool.sha256, id } : undefined,
  );
  const controlPath = settings.reuse && await hasSshDir() ? CONTROL_PATH : undefined;
  let failure;
  for (const host of settings.hosts) {
    const result = await runWithSpool(
      sshArgv(SSH_PATH, settings, host, remote, controlPath),
      spool,
      { timeoutMs: settings.sshTimeout * 1000, env: sshEnv(), captureStdout: settings.integrity },
    );
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

/**
 * Postfix pipe(8) takes the delivery status from a status code at the start
 * of the output, not from the exit code: a `5.x.x` line bounces even with
 * exit 75. A deferral (71, 75) therefore always says `4.x.x`.
 */
function matchClass(line: string, code: number): string {
  return code === EX_TEMPFAIL || code === 71 ? line.replace(/^5\./, "4.") : line;
}

function nullmailerCode(err: MailError): number {
  if (err instanceof ClientConfigError) return NM.config;
  if (err instanceof UsageError) return NM.usage;
  if (err instanceof DataError) return NM.msgRefused;
  return NM.tempFail;
}

/** This process's uid (Linux always has one). */
function myUid(): number {
  return Deno.uid() ?? -1;
}

/** The queue directory of this user (or the configured one). */
function queueDirOf(settings: ClientSettings): string {
  return settings.queueDir ?? `${QUEUE_ROOT}/${myUid()}`;
}

/** Every queue to work on: this user's, or with --all (root) every user's. */
async function queuesFor(settings: ClientSettings, all: boolean): Promise<Queue[]> {
  if (!all) return [await openQueue(queueDirOf(settings), myUid())];
  const queues: Queue[] = [];
  for await (const e of Deno.readDir(QUEUE_ROOT)) {
    if (!e.isDirectory) continue;
    const dir = `${QUEUE_ROOT}/${e.name}`;
    const owner = (await Deno.lstat(dir)).uid;
    if (owner !== null) queues.push(await openQueue(dir, owner));
  }
  return queues;
}

async function listQueue(settings: ClientSettings, all: boolean): Promise<number> {
  const now = Date.now();
  const rows: string[] = [];
  for (const queue of await queuesFor(settings, all)) {
    for (const e of await queue.list()) {
      const h = e.header;
      rows.push(
        [
          h.id,
          formatAge(now - h.created).padStart(7),
          String(h.size).padStart(9),
          `<${h.sender ?? ""}>`,
          h.recipients.join(", ") || "(-t)",
          e.state ? `[${e.state.attempts}x] ${e.state.lastError}` : "",
        ].join("  "),
      );
    }
  }
  const out = rows.length === 0
    ? "Mail queue is empty\n"
    : `ID                                 AGE      SIZE  SENDER  RECIPIENTS  LAST ERROR\n${
      rows.join("\n")
    }\n-- ${rows.length} message${rows.length === 1 ? "" : "s"} in queue\n`;
  await Deno.stdout.write(new TextEncoder().encode(out));
  return EX_OK;
}

async function flush(settings: ClientSettings, all: boolean, due: boolean): Promise<number> {
  let failure: string | undefined;
  for (const queue of await queuesFor(settings, all)) {
    const lock = await queue.lock();
    try {
      const result = await flushQueue(queue, settings, {
        sshPath: SSH_PATH,
        env: sshEnv(),
        program: PROGRAM,
        hostname: Deno.hostname(),
        maxAgeMs: settings.maxAgeMs,
        now: Date.now(),
        force: !due,
        controlPath: settings.reuse && await hasSshDir() ? CONTROL_PATH : undefined,
      });
      if (result.failure) failure = result.failure.line;
    } finally {
      lock.close();
    }
  }
  if (failure === undefined) return EX_OK;
  await Deno.stderr.write(new TextEncoder().encode(`${failure}\n`));
  return EX_TEMPFAIL;
}

/**
 * Standalone mode: a message the relay cannot take now goes into the
 * offline queue and the caller hears success. Returns false when it could
 * not be queued (the caller then hears the relay's failure).
 */
async function enqueue(
  settings: ClientSettings,
  req: SendmailRequest,
  spool: Spooled,
  id: string,
  lastError: string,
): Promise<boolean> {
  try {
    const queue = await openQueue(queueDirOf(settings), myUid());
    const now = Date.now();
    await queue.enqueue(queueHeader(id, req, spool, now), spool);
    // The first attempt was this send: --list shows why it waits.
    await queue.setState(id, { attempts: 1, lastError, nextAttempt: now + backoffMs(1) });
    return true;
  } catch {
    return false;
  }
}

/** ssh keeps its control socket in ~/.ssh; without that directory, no reuse. */
async function hasSshDir(): Promise<boolean> {
  const home = Deno.env.get("HOME");
  if (!home) return false;
  try {
    return (await Deno.stat(`${home}/.ssh`)).isDirectory;
  } catch {
    return false;
  }
}

/** Reads a file's text, or undefined when it cannot be read. */
async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
}

/** The login name of this process's uid, from /etc/passwd (Deno has no getpwuid). */
async function loginName(): Promise<string> {
  const uid = String(myUid());
  for (const line of (await readText("/etc/passwd"))?.split("\n") ?? []) {
    const f = line.split(":");
    if (f[2] === uid && f[0]) return f[0];
  }
  return Deno.env.get("LOGNAME") ?? Deno.env.get("USER") ?? "root";
}

/** The standalone mode's local policy: mail domain, local names, adminaddr, aliases. */
let policyCache: Promise<LocalPolicy> | undefined;

/** The local policy, read once per process (a -bs session sends many messages). */
function localPolicy(settings: ClientSettings): Promise<LocalPolicy> {
  policyCache ??= readLocalPolicy(settings);
  return policyCache;
}

let loginCache: Promise<string> | undefined;

async function readLocalPolicy(settings: ClientSettings): Promise<LocalPolicy> {
  const host = Deno.hostname().toLowerCase();
  const mailname = (await readText("/etc/mailname"))?.trim().toLowerCase();
  const domain = settings.domain ?? (mailname || host);
  const aliases = settings.aliasesFile === undefined ? new Map<string, string[]>() : parseAliases(
    (await readText(settings.aliasesFile)) ??
      (() => {
        throw new ClientConfigError(`cannot read aliases file ${settings.aliasesFile}`);
      })(),
  );
  return {
    adminaddr: settings.adminaddr,
    aliases,
    domain,
    localDomains: [
      ...new Set(["localhost", "localhost.localdomain", host, host.split(".")[0]!, domain]),
    ],
  };
}

/**
 * Standalone mode does what a whole MTA would do before mail leaves: local
 * recipients to adminaddr/aliases, the envelope sender qualified (login@domain
 * when there is no -f), and a From: header added only when there is none.
 */
async function prepareLocal(
  settings: ClientSettings,
  req: SendmailRequest,
  spool: Spooled,
): Promise<{ req: SendmailRequest; spool: Spooled }> {
  const policy = await localPolicy(settings);
  const sender = qualify(req.sender ?? await (loginCache ??= loginName()), policy.domain);
  const recipients = rewriteRecipients(req.recipients, policy);
  const checked = parseSendmailArgs([
    "sendmail",
    "-f",
    sender,
    ...(req.extractRecipients ? ["-t"] : []),
    "--",
    ...recipients,
  ]);
  const head = new Uint8Array(65536);
  await spool.file.seek(0, Deno.SeekMode.Start);
  const n = (await spool.file.read(head)) ?? 0;
  if (hasFromHeader(new TextDecoder().decode(head.subarray(0, n))) || sender === "") {
    return { req: checked, spool };
  }
  await spool.file.seek(0, Deno.SeekMode.Start);
  const from = new TextEncoder().encode(`From: ${sender}\n`);
  const withFrom = await spoolMessage(prefixedReader(from, spool.file), {
    dir: SPOOL_DIR,
    prefix: "sshsendmail",
    maxSize: LOCAL_MAX_SIZE,
    idleTimeoutMs: LOCAL_IDLE_MS,
  });
  return { req: checked, spool: withFrom }; // the caller closes both spools
}

/** `sshsendmail -bs`: an SMTP session whose messages share one batch session. */
async function smtp(settings: ClientSettings): Promise<number> {
  const channel = openBatchChannel(settings, {
    sshPath: SSH_PATH,
    env: sshEnv(),
    program: PROGRAM,
    controlPath: settings.reuse && await hasSshDir() ? CONTROL_PATH : undefined,
  });
  try {
    await serveSmtp(Deno.stdin, Deno.stdout, {
      options: { hostname: Deno.hostname(), maxSize: SMTP_MAX_SIZE, maxRecipients: 1000 },
      idleMs: 300_000,
      spoolDir: SPOOL_DIR,
      async deliver(envelope, received) {
        const base: SendmailRequest = {
          sender: envelope.sender,
          extractRecipients: false,
          recipients: envelope.recipients,
          size: undefined,
          sha256: undefined,
          id: undefined,
        };
        const { req, spool } = await prepareLocal(settings, base, received);
        // A spool made by prepareLocal (From: added) is this function's to
        // close, after the queue may have read it too.
        try {
          const id = newMessageId(crypto.randomUUID());
          const header = queueHeader(id, req, spool, Date.now());
          const answer = await channel.send(frameWordsOf(header), spool);
          if ("code" in answer && answer.code === 0) return `250 2.0.0 Ok: sent as ${id}`;
          const temporary = "code" in answer ? isTemporary(answer.code) : true;
          const line = "code" in answer ? `${answer.status} ${answer.text}` : answer.line;
          if (!temporary) {
            return `${/^5\.[17]\./.test(line) ? 550 : 554} ${line}`;
          }
          if (settings.queue && await enqueue(settings, req, spool, id, line)) {
            return `250 2.0.0 Ok: queued as ${id} (relay: ${line.replace(/^\d\.\d+\.\d+ /, "")})`;
          }
          return `451 ${line.replace(/^5\./, "4.")}`;
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

/** The test message of `setup` and `--test`. */
async function sendTest(settings: ClientSettings, address: string) {
  const req = parseSendmailArgs(["sendmail", "-i", "--", address]);
  const host = Deno.hostname();
  const text = [
    `From: sshsendmail <root@${host}>`,
    `To: <${address}>`,
    `Subject: sshsendmail test from ${host}`,
    `Date: ${new Date().toUTCString()}`,
    "",
    `This test message left ${host} through sshsendmail and the relay's rsendmail.`,
    "",
  ].join("\n");
  const spool = await spoolMessage(prefixedReader(new TextEncoder().encode(text)), {
    dir: SPOOL_DIR,
    prefix: "sshsendmail",
    maxSize: LOCAL_MAX_SIZE,
    idleTimeoutMs: LOCAL_IDLE_MS,
  });
  return await send(settings, req, spool, newMessageId(crypto.randomUUID()));
}

function setupContext(configFile: string | undefined): SetupContext {
  return {
    sshPath: SSH_PATH,
    env: sshEnv(),
    hostname: Deno.hostname(),
    configFile: configFile ?? Deno.env.get("SSHSENDMAIL_CONFIG") ?? DEFAULT_CONFIG_FILE,
    sendTest,
    say: async (line) => {
      await Deno.stdout.write(new TextEncoder().encode(`${line}\n`));
    },
  };
}

async function main(): Promise<number> {
  const path = invokedPath();
  const name = path.slice(path.lastIndexOf("/") + 1);
  let mta: Mta = defaultMta(path, Deno.args);
  try {
    if (name === "newaliases") return EX_OK;
    if (Deno.args[0] === "setup") {
      mta = "sendmail";
      return await runSetup(Deno.args.slice(1), setupContext(undefined));
    }
    const args = parseClientArgs(name === "mailq" ? ["--list", ...Deno.args] : Deno.args, mta);
    mta = args.mta;
    if (args.command === "help") {
      await Deno.stdout.write(new TextEncoder().encode(USAGE));
      return EX_OK;
    }
    if (args.command === "version") {
      await Deno.stdout.write(new TextEncoder().encode(`${PROGRAM} ${VERSION}\n`));
      return EX_OK;
    }
    let settings = args.settings;
    if (mta !== "nullmailer" && !args.configured) settings = await loadConfig(args.configFile);
    switch (args.command) {
      case "list":
        return await listQueue(settings, args.all);
      case "flush":
        return await flush(settings, args.all, args.due);
      case "smtp":
        return await smtp(settings);
      case "test":
        return await runTest(settings, args.testAddress ?? "", setupContext(args.configFile));
      case "remove": {
        const queue = await openQueue(queueDirOf(settings), myUid());
        if (await queue.remove(args.removeId ?? "")) return EX_OK;
        throw new MailError(EX_NOINPUT, "5.1.0", "no such message in the queue");
      }
    }
    let req = args.request;
    let spool: Spooled;
    if (mta === "nullmailer") {
      settings = parseNullmailerOptions(await readOptionsBlock(Deno.stdin, 1 << 16));
      ({ req, spool } = await readNullmailerMessage());
    } else {
      spool = await spoolMessage(Deno.stdin, {
        dir: SPOOL_DIR,
        prefix: "sshsendmail",
        maxSize: LOCAL_MAX_SIZE,
        idleTimeoutMs: LOCAL_IDLE_MS,
      });
    }
    if (mta === "sendmail") ({ req, spool } = await prepareLocal(settings, req!, spool));
    const id = mta === "sendmail" ? newMessageId(crypto.randomUUID()) : undefined;
    const failure = await send(settings, req!, spool, id);
    if (failure === undefined) return EX_OK;
    const code = mta === "nullmailer" ? failure.nullmailer : failure.sysexit;
    if (
      mta === "sendmail" && id !== undefined && settings.queue && isTemporary(code) &&
      await enqueue(settings, req!, spool, id, failure.line)
    ) {
      return EX_OK; // queued: the flush delivers it when the relay is back
    }
    const line = mta === "nullmailer" ? failure.line : matchClass(failure.line, code);
    await Deno.stderr.write(new TextEncoder().encode(`${line}\n`));
    return code;
  } catch (err) {
    const error = toMailError(err);
    const line = error.publicLine(PROGRAM);
    if (mta === "nullmailer") {
      await Deno.stderr.write(new TextEncoder().encode(`${line}\n`));
      return nullmailerCode(error);
    }
    // Postfix bounces every code but 71 and 75: a fault of the pipe line or
    // of this machine must defer; only a malformed address bounces.
    const code = mta === "postfix" && !(error instanceof DataError) ? EX_TEMPFAIL : error.exitCode;
    await Deno.stderr.write(new TextEncoder().encode(`${matchClass(line, code)}\n`));
    return code;
  }
}

if (import.meta.main) {
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    // Still one line and a deferral, never silence.
    try {
      Deno.stderr.writeSync(new TextEncoder().encode(`4.3.0 ${PROGRAM}: internal error\n`));
    } catch {
      // stderr gone: the exit code still tells
    }
    Deno.exit(EX_TEMPFAIL);
  });
  Deno.exit(await main());
}
