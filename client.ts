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

import { resolveMode } from "./lib/client/mode.ts";
import {
  type Mta,
  normalizeSender,
  OWN_OPTION_ERROR,
  parseClientArgs,
} from "./lib/client/client_args.ts";
import {
  type ClientSettings,
  ConfigError,
  DEFAULT_CONFIG_FILE,
  defaultSettings,
  parseConfigFile,
} from "./lib/client/client_config.ts";
import {
  DataError,
  MailError,
  PolicyError,
  TempError,
  toMailError,
  UsageError,
} from "./lib/shared/errors.ts";
import { type FailureFact, type FailureKind, heardBy } from "./lib/client/exit_policy.ts";
import { EX_NOINPUT, EX_OK, EX_TEMPFAIL, isTemporary } from "./lib/shared/exit_codes.ts";
import {
  CAT_PATH,
  LOGGER_PATH,
  SERVICE_USER,
  SPOOL_DIR,
  SPOOL_ROOT,
  SSH_PATH,
} from "./lib/shared/layout.ts";
import { frameWordsOf, newMessageId, queueHeader } from "./lib/client/queue_entry.ts";
import { runSetup, runTest, type SetupContext } from "./lib/client/setup_io.ts";
import { openBatchChannel } from "./lib/client/batch_channel_io.ts";
import { type LocalPolicy, missingHeaders } from "./lib/client/local_mail.ts";
import {
  accountFromPasswd,
  loginFromPasswd,
  loginOfUid,
  prepareLocal,
  readLocalPolicy,
} from "./lib/client/prepare_local_io.ts";
import { initSpool } from "./lib/client/spool_init_io.ts";
import { loggerSink, runService } from "./lib/client/service_io.ts";
import { askService, dropMessage } from "./lib/client/submit_io.ts";
import { formatMailq, printable } from "./lib/client/mailq.ts";
import { migrateOldQueue } from "./lib/client/migrate_io.ts";
import { serveSmtp } from "./lib/client/smtp_server_io.ts";
import { parseEnvelope, parseNullmailerOptions } from "./lib/client/nullmailer.ts";
import {
  type ByteReader,
  prefixedReader,
  readerFromStream,
  runWithSpool,
  type Spooled,
  spoolMessage,
} from "./lib/shared/pipeline_io.ts";
import { parseSendmailArgs, type SendmailRequest } from "./lib/shared/sendmail_args.ts";
import { requestWords } from "./lib/shared/request_codec.ts";
import { classifyExit, type Failure, remoteCommand, sshArgv } from "./lib/client/ssh_command.ts";

const PROGRAM = "sshsendmail";
const VERSION = "0.2.0";
/** Local spool limits: the relay enforces the real size limit. */
const LOCAL_MAX_SIZE = 2 ** 40;
const LOCAL_IDLE_MS = 3_600_000;
/** SIZE advertised in -bs mode (the relay's own limit decides in the end). */
const SMTP_MAX_SIZE = 52_428_800;
/** ssh's connection-sharing socket, private to the user (ssh expands %d and %C). */
const CONTROL_PATH = "%d/.ssh/sshsendmail-%C";

const USAGE =
  `usage: sshsendmail [SENDMAIL OPTIONS] [--] RECIPIENT...   a message on stdin (any user)
       sshsendmail -bs [-i] [-f ADDR]                 SMTP on stdin/stdout (PHP frameworks)
       sshsendmail -t [-i] [-f ADDR]                  recipients from the headers
       mailq | sshsendmail -bp | --list               your queued messages (root: all)
       sshsendmail -q [-v] | --flush                  ask the service to run the queue now
       sshsendmail --remove ID                        drop one of your queued messages
       sshsendmail --test ADDRESS                     send a test message through the relay
       sshsendmail setup --host [USER@]RELAY ...      key, relay host key, config (see setup --help)
       sshsendmail --serve                            the delivery service (its account; systemd)
       sshsendmail --init-spool | --migrate           make the spool (root) | hand over an old queue
       sshsendmail --host [USER@]HOST [--user U] [--port P] [--identity KEY] [--known-hosts FILE]
                   [--ssh-option K=V]... [--reuse] [--no-integrity] [--connect-timeout S]
                   [--relay-command NAME] [-f SENDER] [--] RECIPIENT...   Postfix pipe(8)
       (run as .../nullmailer/sshsendmail: a nullmailer 2.x protocol module)
Common: --config FILE (default /etc/sshsendmail.conf, or $SSHSENDMAIL_CONFIG), --mta
postfix|nullmailer|sendmail, --help, --version. Sendmail options: -f/-r ADDR, -t, -i, -oi,
-oem/-oep/-oee/-oeq/-oew, -odi/-odb, -om, -bm, -B8BITMIME/-B7BIT, -F NAME, -N DSN, -R RET, -v.
See sshsendmail(8).
`;

/** The name this program was invoked as (a symlink keeps its own name). */
function invokedPath(): string {
  const main = Deno.mainModule;
  return main.startsWith("file://") ? decodeURIComponent(new URL(main).pathname) : main;
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
    if (text.length > cap) throw new ConfigError("nullmailer options block too long");
  }
}

/**
 * Reads the config file. Submitting to the service and asking it need no
 * relay, so a missing default file means the defaults; sending directly
 * or serving needs a host.
 */
async function loadConfig(file: string | undefined, needHost: boolean): Promise<ClientSettings> {
  const explicit = file ?? Deno.env.get("SSHSENDMAIL_CONFIG");
  const path = explicit ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    if (explicit === undefined && !needHost) return defaultSettings();
    throw new ConfigError(`no relay configured: cannot read ${path}`);
  }
  const settings = parseConfigFile(text, path);
  if ((needHost || !settings.queue) && settings.hosts.length === 0) {
    throw new ConfigError(`no host in ${path}`);
  }
  return settings;
}

/**
 * nullmailer mode: the envelope and message come from fd 3, which Deno
 * cannot open itself; /bin/cat (inherited fd 3) streams it.
 */
async function readNullmailerEnvelope(): Promise<
  { req: SendmailRequest; body: ByteReader; done: Promise<boolean> }
> {
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
  return { req, body, done: cat.status.then((s) => s.success) };
}

/** nullmailer mode, direct: the message spooled for ssh. */
async function readNullmailerMessage(): Promise<{ req: SendmailRequest; spool: Spooled }> {
  const { req, body, done } = await readNullmailerEnvelope();
  const spool = await spoolMessage(body, {
    dir: SPOOL_DIR,
    prefix: "sshsendmail",
    maxSize: LOCAL_MAX_SIZE,
    idleTimeoutMs: LOCAL_IDLE_MS,
  });
  if (!await done) throw new TempError("cannot read the message on fd 3", "4.3.0");
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

/**
 * The id a Postfix pipe delivery carries: Postfix's queue id and this
 * delivery's envelope, hashed. A retry of the same delivery gets the same
 * id (the relay answers "already delivered" instead of sending it twice);
 * another recipient of the same queue file gets another.
 */
async function pipeMessageId(queueId: string, req: SendmailRequest): Promise<string> {
  if (!/^[A-Za-z0-9]{1,64}$/.test(queueId)) throw new ConfigError("invalid --queue-id");
  const text = [queueId, req.sender ?? "", ...req.recipients].join("\0");
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)),
  );
  return `m${Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** `-v` on a direct send: ssh's diagnostics go to stderr. */
let verboseSend = false;

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
    if (verboseSend) {
      // -v: what ssh said (LogLevel=VERBOSE) and how it ended, as sendmail -v shows its dialogue.
      await write(
        Deno.stderr,
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

/** The kind of a thrown error, for the exit policy. */
function kindOf(error: MailError): FailureKind {
  if (error instanceof ConfigError) return "config";
  if (error instanceof UsageError) return "usage";
  if (error instanceof DataError) return "data";
  if (error instanceof PolicyError) return "policy";
  return "temporary";
}

/** A send's failure (ssh's or the relay's) as a fact for the exit policy. */
function factOf(failure: Failure): FailureFact {
  return {
    kind: isTemporary(failure.sysexit) ? "temporary" : "relay",
    sysexit: failure.sysexit,
    nullmailer: failure.nullmailer,
    line: failure.line,
  };
}

/** This process's uid (Linux always has one). */
function myUid(): number {
  return Deno.uid() ?? -1;
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

/** The standalone mode's local policy, read once per process (a -bs session sends many). */
let policyCache: Promise<LocalPolicy> | undefined;

function localPolicy(settings: ClientSettings): Promise<LocalPolicy> {
  policyCache ??= readLocalPolicy(settings, Deno.hostname());
  return policyCache;
}

let loginCache: Promise<string> | undefined;

/** Direct mode: the caller's own local policy, applied before the message leaves. */
async function prepareDirect(
  settings: ClientSettings,
  req: SendmailRequest,
  spool: Spooled,
): Promise<{ req: SendmailRequest; spool: Spooled }> {
  const login = await (loginCache ??= loginOfUid(myUid()));
  return await prepareLocal(await localPolicy(settings), login, req, spool, {
    spoolDir: SPOOL_DIR,
    maxSize: LOCAL_MAX_SIZE,
    idleTimeoutMs: LOCAL_IDLE_MS,
  });
}

/** The sendmail words a drop carries for a request (the service parses them again). */
function dropWords(req: SendmailRequest): string[] {
  return requestWords({ ...req, size: undefined, sha256: undefined, id: undefined });
}

/** Hands one message to the satellite service (any local user). */
async function submit(settings: ClientSettings, req: SendmailRequest, body: ByteReader) {
  // Mail a user queued under the old per-user layout goes to the service first.
  if (settings.spool === SPOOL_ROOT) {
    await migrateOldQueue(settings.spool, myUid(), dropOptions(settings)).catch(() => {});
  }
  return await dropMessage(
    settings.spool,
    dropWords(req),
    await withSubmissionHeaders(settings, body),
    dropOptions(settings),
  );
}

/** The message with `Date:` and `Message-ID:` added where it has none (read ahead ≤ 64 KiB). */
async function withSubmissionHeaders(
  settings: ClientSettings,
  body: ByteReader,
): Promise<ByteReader> {
  const head = new Uint8Array(65536);
  let got = 0;
  for (;;) {
    const n = await body.read(head.subarray(got));
    if (n === null) break;
    got += n;
    const text = new TextDecoder().decode(head.subarray(0, got));
    if (got === head.length || /\r?\n\r?\n/.test(text) || /^\r?\n/.test(text)) break;
  }
  const text = new TextDecoder().decode(head.subarray(0, got));
  const id = Array.from(
    crypto.getRandomValues(new Uint8Array(12)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
  const domain = settings.domain ?? Deno.hostname().toLowerCase();
  const added = new TextEncoder().encode(missingHeaders(text, new Date(), id, domain));
  const bytes = new Uint8Array(added.length + got);
  bytes.set(added);
  bytes.set(head.subarray(0, got), added.length);
  return prefixedReader(bytes, body);
}

function dropOptions(settings: ClientSettings) {
  return { maxSize: settings.maxSize, idleTimeoutMs: LOCAL_IDLE_MS };
}

async function write(stream: { write(p: Uint8Array): Promise<number> }, text: string) {
  const bytes = new TextEncoder().encode(text);
  for (let done = 0; done < bytes.length;) done += await stream.write(bytes.subarray(done));
}

/** `mailq`: the service's listing of what this user may see. */
async function listQueue(settings: ClientSettings): Promise<number> {
  const reply = await askService(settings.spool, { op: "list" });
  if (!reply.ok) throw new TempError(reply.error, "4.3.0");
  if (reply.op !== "list") throw new TempError("unexpected answer", "4.3.0");
  await write(Deno.stdout, formatMailq(reply.messages, Date.now()));
  return EX_OK;
}

/** `sendmail -q`, `--flush`: asks the service for a run now and reports it. */
async function flush(settings: ClientSettings, verbose: boolean): Promise<number> {
  // On a terminal, a progress line while the service drains a backlog.
  const terminal = Deno.stderr.isTerminal();
  const started = Date.now();
  const progress = terminal
    ? setInterval(() => {
      const s = Math.round((Date.now() - started) / 1000);
      Deno.stderr.writeSync(new TextEncoder().encode(`\r${PROGRAM}: running the queue… ${s} s`));
    }, 1000)
    : undefined;
  let reply;
  try {
    reply = await askService(settings.spool, { op: "flush" });
  } finally {
    if (progress !== undefined) {
      clearInterval(progress);
      if (Date.now() - started >= 1000) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
    }
  }
  if (!reply.ok) throw new TempError(reply.error, "4.3.0");
  if (reply.op !== "flush") throw new TempError("unexpected answer", "4.3.0");
  if (verbose || Deno.stdout.isTerminal()) {
    await write(
      Deno.stdout,
      `${PROGRAM}: delivered ${reply.delivered}, deferred ${reply.deferred}, failed ${reply.failed}, expired ${reply.expired}; ${reply.waiting} waiting${
        reply.lastError ? ` (${printable(reply.lastError)})` : ""
      }\n`,
    );
  }
  return reply.waiting === 0 ? EX_OK : EX_TEMPFAIL;
}

/** `--remove ID`: one of this user's queued messages (root: any). */
async function removeQueued(settings: ClientSettings, id: string): Promise<number> {
  const wanted = /^[0-9a-f]{10}$/i.test(id) ? id.toUpperCase() : id;
  if (!/^(m[0-9a-f]{32}|[0-9A-F]{10})$/.test(wanted)) {
    throw new MailError("no such message", { exitCode: EX_NOINPUT, status: "5.1.0" });
  }
  const reply = await askService(settings.spool, { op: "remove", id: wanted });
  if (!reply.ok) throw new TempError(reply.error, "4.3.0");
  if (reply.op === "remove" && reply.removed) return EX_OK;
  throw new MailError("no such message in the queue", { exitCode: EX_NOINPUT, status: "5.1.0" });
}

/** `sshsendmail --init-spool` (root): makes the service's spool. */
async function initSpoolCommand(settings: ClientSettings, verbose: boolean): Promise<number> {
  if (myUid() !== 0) throw new UsageError("--init-spool is for root");
  const account = accountFromPasswd(await Deno.readTextFile("/etc/passwd"), SERVICE_USER);
  if (!account) throw new ConfigError(`no account ${SERVICE_USER}: create it first`);
  const done = await initSpool(settings.spool, {
    serviceUid: account.uid,
    serviceGid: account.gid,
  }, Date.now());
  if (verbose) await write(Deno.stdout, done.map((l) => `${PROGRAM}: ${l}\n`).join(""));
  return EX_OK;
}

/** Reads the config again when its mtime changed (the service's reload). */
function configReloader(file: string | undefined): () => Promise<ClientSettings | undefined> {
  const path = file ?? Deno.env.get("SSHSENDMAIL_CONFIG") ?? DEFAULT_CONFIG_FILE;
  let seen: number | undefined;
  const mtime = async () => (await Deno.stat(path).catch(() => undefined))?.mtime?.getTime();
  mtime().then((t) => (seen = t));
  return async () => {
    const now = await mtime();
    if (now === seen) return undefined;
    seen = now;
    return now === undefined ? undefined : parseConfigFile(await Deno.readTextFile(path), path);
  };
}

/** `sshsendmail --serve`: the delivery service, in the foreground. */
async function serve(settings: ClientSettings, configFile: string | undefined): Promise<number> {
  const passwd = await Deno.readTextFile("/etc/passwd");
  const me = accountFromPasswd(passwd, loginFromPasswd(passwd, myUid()) ?? "");
  if (!me) throw new ConfigError(`uid ${myUid()} has no /etc/passwd entry`);
  const sink = loggerSink(LOGGER_PATH, PROGRAM, Deno.pid);
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  for (const signal of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(signal, stop);
  try {
    await runService({
      settings,
      uid: myUid(),
      gid: me.gid,
      hostname: Deno.hostname(),
      sshPath: SSH_PATH,
      env: sshEnv(),
      program: PROGRAM,
      spoolDir: SPOOL_DIR,
      log: sink.log,
      policy: () => localPolicy(settings),
    }, { pid: Deno.pid, stopped, reload: configReloader(configFile) });
  } finally {
    await sink.close();
  }
  return EX_OK;
}

/** `sshsendmail -bs`: an SMTP session; each message goes to the service (or, direct, to the relay). */
async function smtp(settings: ClientSettings): Promise<number> {
  if (settings.queue) {
    await serveSmtp(Deno.stdin, Deno.stdout, {
      options: { hostname: Deno.hostname(), maxSize: settings.maxSize, maxRecipients: 1000 },
      idleMs: 300_000,
      spoolDir: SPOOL_DIR,
      async deliver(envelope, received) {
        const req = parseSendmailArgs(["sendmail", "--", ...envelope.recipients]);
        const words = dropWords({ ...req, sender: envelope.sender });
        await received.file.seek(0, Deno.SeekMode.Start);
        try {
          const hex = await submit(settings, { ...req, sender: envelope.sender }, received.file);
          return `250 2.0.0 Ok: queued as ${hex}`;
        } catch (err) {
          const e = toMailError(err);
          void words;
          return e instanceof DataError ? `554 ${e.status} ${e.message}` : `451 4.3.0 ${e.message}`;
        }
      },
    });
    return EX_OK;
  }
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
        const { req, spool } = await prepareDirect(settings, base, received);
        // A spool made by prepareDirect (From: added) is this function's to close.
        try {
          const id = newMessageId(crypto.randomUUID());
          const header = queueHeader(id, req, spool, Date.now());
          const answer = await channel.send(frameWordsOf(header), spool);
          if ("code" in answer && answer.code === 0) return `250 2.0.0 Ok: sent as ${id}`;
          const heard = heardBy(
            "smtp",
            "code" in answer
              ? {
                kind: isTemporary(answer.code) ? "temporary" : "relay",
                sysexit: answer.code,
                line: `${answer.status} ${answer.text}`,
              }
              : factOf(answer),
          );
          return `${heard.code} ${heard.line}`;
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

/** Asks a yes/no question on the terminal (setup's host key check). */
async function confirmOnTerminal(question: string): Promise<boolean> {
  await write(Deno.stdout, question);
  const buffer = new Uint8Array(256);
  const n = await Deno.stdin.read(buffer);
  return /^\s*y(es)?\s*$/i.test(new TextDecoder().decode(buffer.subarray(0, n ?? 0)));
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
    confirm: Deno.stdin.isTerminal() ? confirmOnTerminal : undefined,
  };
}

async function main(): Promise<number> {
  const mode = resolveMode(invokedPath(), Deno.args);
  let mta: Mta = mode.kind === "mail" ? mode.mta : "sendmail";
  let admin = mode.kind === "setup";
  try {
    if (mode.kind === "newaliases") return EX_OK;
    if (mode.kind === "setup") return await runSetup(mode.argv, setupContext(undefined));
    const args = parseClientArgs(mode.argv, mta);
    mta = args.mta;
    admin = !["send", "smtp"].includes(args.command) && mta !== "nullmailer";
    if (args.command === "help") {
      await write(Deno.stdout, USAGE);
      return EX_OK;
    }
    if (args.command === "version") {
      await write(Deno.stdout, `${PROGRAM} ${VERSION}\n`);
      return EX_OK;
    }
    let settings = args.settings;
    if (mta !== "nullmailer" && !args.configured) {
      const needHost = args.command === "test";
      settings = await loadConfig(args.configFile, needHost);
    }
    switch (args.command) {
      case "serve":
        return await serve(settings, args.configFile);
      case "init-spool":
        return await initSpoolCommand(settings, args.verbose);
      case "migrate":
        await migrateOldQueue(settings.spool, myUid(), dropOptions(settings));
        return EX_OK;
      case "list":
        return await listQueue(settings);
      case "flush":
        return await flush(settings, args.verbose);
      case "smtp":
        return await smtp(settings);
      case "test":
        return await runTest(settings, args.testAddress ?? "", setupContext(args.configFile));
      case "remove":
        return await removeQueued(settings, args.removeId ?? "");
    }
    let req = args.request;
    let spool: Spooled;
    if (mta === "nullmailer") {
      settings = parseNullmailerOptions(await readOptionsBlock(Deno.stdin, 1 << 16));
      if (settings.queue) {
        // Through the satellite service: /etc/sshsendmail.conf names its spool.
        const local = await loadConfig(undefined, false);
        const envelope = await readNullmailerEnvelope();
        await submit(local, envelope.req, envelope.body);
        const status = await envelope.done;
        if (!status) throw new TempError("cannot read the message on fd 3", "4.3.0");
        return EX_OK;
      }
      ({ req, spool } = await readNullmailerMessage());
    } else if (mta === "sendmail" && settings.queue) {
      const hex = await submit(settings, req!, Deno.stdin);
      if (args.verbose) {
        await write(
          Deno.stderr,
          `${PROGRAM}: handed to the delivery service as ${hex}; mailq shows it until the relay takes it\n`,
        );
      }
      return EX_OK; // the service delivers it (or tells the sender why not)
    } else {
      spool = await spoolMessage(Deno.stdin, {
        dir: SPOOL_DIR,
        prefix: "sshsendmail",
        maxSize: LOCAL_MAX_SIZE,
        idleTimeoutMs: LOCAL_IDLE_MS,
      });
    }
    if (mta === "sendmail") ({ req, spool } = await prepareDirect(settings, req!, spool));
    if (args.verbose && mta === "sendmail") {
      verboseSend = true;
      if (!settings.sshOptions.some((o) => /^loglevel=/i.test(o))) {
        settings = { ...settings, sshOptions: ["LogLevel=VERBOSE", ...settings.sshOptions] };
      }
    }
    const id = mta === "sendmail"
      ? newMessageId(crypto.randomUUID())
      : mta === "postfix" && args.queueId !== undefined
      ? await pipeMessageId(args.queueId, req!)
      : undefined;
    const failure = await send(settings, req!, spool, id);
    if (failure === undefined) return EX_OK;
    const heard = heardBy(mta, factOf(failure));
    await write(Deno.stderr, `${heard.line}\n`);
    return heard.code;
  } catch (err) {
    let error = toMailError(err);
    if (
      error instanceof UsageError && error.detail === OWN_OPTION_ERROR && !Deno.stdin.isTerminal()
    ) {
      // Typed at a terminal, a bad option of ours is a usage error (64); on a
      // pipe it is a broken pipe line or wrapper (Postfix cannot be told from
      // a misspelt --host): the mail must wait, never bounce.
      error = new ConfigError(error.message);
    }
    if (admin) {
      // An admin's command: plain words, no DSN code (those are for mailers).
      await write(Deno.stderr, `${PROGRAM}: ${printable(error.message, 500)}\n`);
      return error.exitCode;
    }
    const heard = heardBy(mta, {
      kind: kindOf(error),
      sysexit: error.exitCode,
      line: error.publicLine(PROGRAM),
    });
    await write(Deno.stderr, `${heard.line}\n`);
    return heard.code;
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
