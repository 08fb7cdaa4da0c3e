/**
 * The end-to-end test bed: every test file, every other tests/e2e/_*.ts
 * helper and scripts/bench*.ts start sshd, the relay's Postfix, rsyslogd,
 * local accounts and keys through this one module. In order:
 *
 * - paths of the built programs ({@link RSENDMAIL}, {@link SSHSENDMAIL});
 * - processes: {@link run} (argv, no shell), {@link waitFor}, {@link killPid};
 * - local accounts: {@link ensureUser}, {@link account};
 * - the relay's SSH side: a private OpenSSH sshd ({@link startRelay}, or
 *   {@link startNsRelay} in its own mount namespace) with its host key,
 *   client keys ({@link Relay.addKey}) and ssh runs against it
 *   ({@link ssh}, {@link hold});
 * - the system Postfix as a loopback-only relay for relay.test
 *   ({@link startPostfix}) and its Maildirs ({@link takeMail},
 *   {@link takeByToken});
 * - a private rsyslogd on /dev/log ({@link startSyslog}).
 *
 * Everything runs as root on 127.0.0.1. Daemons are started so that they
 * detach from the test process (they daemonize and write a pid file), so no
 * Deno child-process resource stays open between tests: a bed started in one
 * test may be stopped in another without disabling the resource sanitizer.
 * Every daemon is stopped by its PID. The scenarios built on this bed (the
 * satellite service, standalone senders, the satellite Postfix…) live
 * beside it; tests/README.md lists them.
 *
 * @module
 */

import { STATE_DIR } from "../../lib/shared/layout.ts";
import { quoteWords } from "../../lib/shared/words.ts";

// ------------------------------------------------------------------ paths

/** Absolute path of the repository. */
export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
/** The built relay side. */
export const RSENDMAIL = `${ROOT}/dist/rsendmail`;
/** The built client. */
export const SSHSENDMAIL = `${ROOT}/dist/sshsendmail`;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

// -------------------------------------------------------------- processes

/** Result of a finished helper command. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Captured stdout, decoded as UTF-8. */
  stdout: string;
  /** Captured stderr, decoded as UTF-8. */
  stderr: string;
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Bytes (or text) fed to stdin; stdin is /dev/null without it. */
  stdin?: Uint8Array | string;
  /** Throw unless the exit code is 0 (default true). */
  check?: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/**
 * Runs a program (argv array, no shell) to completion and returns its exit
 * code and output. Throws on a non-zero exit unless `check` is false.
 */
export async function run(
  cmd: string,
  args: string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const command = new Deno.Command(cmd, {
    args,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(opts.env === undefined ? {} : { env: opts.env }),
  });
  const child = command.spawn();
  // Collect output while feeding stdin, so neither side can block the other.
  const output = child.output();
  if (opts.stdin !== undefined) {
    const data = typeof opts.stdin === "string" ? encoder.encode(opts.stdin) : opts.stdin;
    const writer = child.stdin.getWriter();
    try {
      await writer.write(data);
      await writer.close();
    } catch {
      // The program may exit without reading everything; its status tells.
    }
  }
  const out = await output;
  const res = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  if ((opts.check ?? true) && res.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited ${res.code}: ${res.stderr}${res.stdout}`,
    );
  }
  return res;
}

/**
 * An empty file at `path`, owned by `user` and last modified `ageMs` ago: a
 * relay's session file (`--max-sessions`), as one that is alive or died left it.
 */
export async function plantAged(path: string, user: string, ageMs: number): Promise<string> {
  await Deno.writeTextFile(path, "");
  await run("/usr/bin/chown", [`${user}:`, path]);
  const then = new Date(Date.now() - ageMs);
  await Deno.utime(path, then, then);
  return path;
}

/**
 * The BUILT dist/rsendmail as a forced command of `user`: `request` in
 * SSH_ORIGINAL_COMMAND, the rest of the environment cleared (as its
 * launcher leaves it), `admin` as the key's options, `stdin` the peer's.
 */
export function runRelayAs(
  user: string,
  request: string,
  admin: string[],
  stdin: string | Uint8Array,
): Promise<RunResult> {
  return run("/usr/bin/setpriv", relayAsArgs(user, request, admin), { stdin, check: false });
}

/**
 * {@link runRelayAs}'s relay, left running: its stdin is the test's to
 * write and close (a peer that stalls), its output discarded. The pid is
 * the relay's own (setpriv and env exec it).
 */
export function spawnRelayAs(user: string, request: string, admin: string[]): Deno.ChildProcess {
  return new Deno.Command("/usr/bin/setpriv", {
    args: relayAsArgs(user, request, admin),
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

function relayAsArgs(user: string, request: string, admin: string[]): string[] {
  return [
    `--reuid=${user}`,
    `--regid=${user}`,
    "--init-groups",
    "/usr/bin/env",
    "-i",
    `SSH_ORIGINAL_COMMAND=${request}`,
    "SSH_CONNECTION=127.0.0.1 40000 127.0.0.1 22",
    RSENDMAIL,
    ...admin,
  ];
}

function runSync(cmd: string, args: string[], check = true): RunResult {
  const out = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const res = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  if (check && res.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited ${res.code}: ${res.stderr}${res.stdout}`,
    );
  }
  return res;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `check` is true; throws after timeoutMs (default 15 s). */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/**
 * The bytes of `/proc/<pid>/<name>` (empty when the process is gone). Deno
 * reads /proc only with --allow-all, so cat(1) reads it.
 */
export async function procFile(pid: number, name: string): Promise<Uint8Array> {
  const out = await new Deno.Command("/bin/cat", {
    args: [`/proc/${pid}/${name}`],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return out.stdout;
}

/**
 * True while `pid` runs (a zombie counts as gone). Read through cat(1):
 * Deno's own `Deno.stat("/proc/<pid>")` needs --allow-all and fails
 * otherwise, which would read as "gone" at once.
 */
export async function pidAlive(pid: number): Promise<boolean> {
  const stat = decoder.decode(await procFile(pid, "stat"));
  // Field 3 (after the parenthesised comm) is the state; Z = zombie.
  const close = stat.lastIndexOf(")");
  return close >= 0 && stat.slice(close + 2, close + 3) !== "Z";
}

async function readPid(file: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      const pid = parseInt((await Deno.readTextFile(file)).trim(), 10);
      if (pid > 0) return pid;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (Date.now() > deadline) throw new Error(`no pid file ${file}`);
    await sleep(20);
  }
}

/** Sends SIGTERM to pid, waits for it to exit, SIGKILL after timeoutMs. */
export async function killPid(pid: number, timeoutMs = 5000): Promise<void> {
  try {
    Deno.kill(pid, "SIGTERM");
  } catch {
    return; // already gone
  }
  const deadline = Date.now() + timeoutMs;
  while (await pidAlive(pid)) {
    if (Date.now() > deadline) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
      await sleep(50);
      return;
    }
    await sleep(20);
  }
}

/**
 * A TCP port on 127.0.0.1 that nobody listens on (bound and released): free
 * to listen on, refused when connected to.
 */
export function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * argv that runs the /bin/sh `script` (with -e) in a private mount
 * namespace (`unshare -m`, propagation private): its mounts are seen by it
 * and its children alone.
 */
export function inMountNamespace(script: string): string[] {
  return ["/usr/bin/unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-ec", script];
}

async function canConnect(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------- bytes, files

/** Joins text (as UTF-8) and bytes into one array. */
export function concat(...parts: (string | Uint8Array)[]): Uint8Array {
  const bytes = parts.map((p) => typeof p === "string" ? encoder.encode(p) : p);
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/** SHA-256 of bytes, lower-case hex. */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(data)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** True when `path` exists (even as a dangling link). */
export async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

// --------------------------------------------------------------- accounts

/** A local account. */
export interface Account {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** The local account `name`, or undefined if it does not exist. */
function lookUp(name: string): Account | undefined {
  const res = runSync("/usr/bin/getent", ["passwd", name], false);
  if (res.code !== 0) return undefined;
  const f = res.stdout.trim().split(":");
  return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "/" };
}

/**
 * Creates a local account (home under /home, login shell `shell`) if it is
 * missing, and returns its home directory.
 */
export function ensureUser(user: string, shell = "/bin/sh"): string {
  let a = lookUp(user);
  if (a === undefined) {
    const res = runSync("/usr/sbin/useradd", ["-m", "-s", shell, user], false);
    // 9 = name in use: a concurrent creation won the race.
    if (res.code !== 0 && res.code !== 9) {
      throw new Error(`useradd ${user} failed: ${res.stderr}`);
    }
    a = lookUp(user);
    if (a === undefined) throw new Error(`account ${user} missing`);
  }
  return a.home;
}

/**
 * Looks up a local account, creating it if missing: like {@link ensureUser},
 * or with `system`, a system account with its own group, home
 * /var/spool/sshsendmail (not created) and no login shell, as the packages
 * make the service account.
 */
export async function account(name: string, system = false): Promise<Account> {
  let a = lookUp(name);
  if (!a) {
    if (system) {
      await run("/usr/sbin/useradd", [
        "--system",
        "--user-group",
        "--home-dir",
        "/var/spool/sshsendmail",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        name,
      ], { check: false });
    } else {
      ensureUser(name);
    }
    a = lookUp(name);
    if (!a) throw new Error(`cannot create account ${name}`);
  }
  return a;
}

/** Numeric uid of an existing local account; throws if there is none. */
export function uidOf(user: string): Promise<number> {
  const a = lookUp(user);
  if (a === undefined || !Number.isInteger(a.uid)) {
    return Promise.reject(new Error(`no account ${user}`));
  }
  return Promise.resolve(a.uid);
}

// ------------------------------------------------------ the relay's sshd

/** A running private sshd acting as the relay's SSH side. */
export interface Relay {
  /** sshd port on 127.0.0.1. */
  port: number;
  /** Always "127.0.0.1". */
  host: string;
  /** Relay account that keys log in as ("rsmrelay"). */
  user: string;
  /** Private temp dir of this relay (keys, configs, `sshd.pid`, `sshd.log`). */
  dir: string;
  /** PID of the sshd listener. */
  pid: number;
  /** Path of a known_hosts file holding this sshd's host key for [127.0.0.1]:port. */
  knownHosts: string;
  /** Path of sshd's own log (`-E`), useful when a login fails. */
  log: string;
  /**
   * The `--state-dir` of this relay's forced commands ({@link Relay.addKey}
   * adds it to dist/rsendmail's when they name none): the relay's
   * duplicate record and limits, `<stateDir>/rsendmail-<uid>/<label>`,
   * stay in the bed and go with it, never in the machine's /var/tmp.
   */
  stateDir: string;
  /**
   * Adds a fresh ed25519 client key with these authorized_keys options (e.g.
   * `restrict,command="/path/x --label k1"`, or "" for none) and returns the
   * private key path. A command of dist/rsendmail without `--state-dir`
   * gets `--state-dir` {@link Relay.stateDir} first. sshd re-reads
   * authorized_keys per connection, so keys can be added while it runs.
   * With `owner`, the key pair is chowned to that local account (for an ssh
   * client that runs as, e.g., `mail`).
   */
  addKey(options: string, owner?: string): Promise<string>;
  /**
   * argv for /usr/bin/ssh with -T, -e none, BatchMode=yes, IdentitiesOnly,
   * the identity, UserKnownHostsFile=knownHosts, StrictHostKeyChecking=yes,
   * port, user@host, ready to append the remote command words.
   */
  sshArgv(identity: string): string[];
  /** Kills sshd by PID and removes dir. */
  stop(): Promise<void>;
}

/** A relay whose sshd runs in its own mount namespace. */
export interface NsRelay extends Relay {
  /** Runs argv inside the relay's mount namespace (as root). */
  inside(argv: string[]): Promise<RunResult>;
}

/** Options of {@link startRelay}. */
export interface RelayOptions {
  /** sshd_config lines appended last (Match blocks go there). */
  extraConfig?: string;
}

const RELAY_USER = "rsmrelay";

async function keygen(path: string, comment: string): Promise<void> {
  await run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path]);
}

/**
 * Starts a private sshd on 127.0.0.1 and a free high port, with its own host
 * key, config, pid file and authorized_keys (for the account "rsmrelay",
 * created if missing) in a fresh temp dir. Resolves once the port accepts
 * connections.
 */
export async function startRelay(o: RelayOptions = {}): Promise<Relay> {
  return await launchRelay(o, undefined);
}

/**
 * Starts a relay like {@link startRelay}, but sshd runs inside `unshare -m`
 * after `setup(dir)` (a /bin/sh snippet of mounts) ran in that namespace:
 * test scaffolding that changes what the relay's sessions see (a fake
 * /usr/sbin/sendmail, a tiny /tmp…) without touching the machine. Its dir
 * lives under /var/tmp, so a tmpfs over /tmp in the namespace hides none of
 * its files.
 */
export async function startNsRelay(setup: (dir: string) => string): Promise<NsRelay> {
  const relay = await launchRelay({}, setup);
  return {
    ...relay,
    inside(argv: string[]): Promise<RunResult> {
      return run("/usr/bin/nsenter", [`--mount=/proc/${relay.pid}/ns/mnt`, "--", ...argv], {
        check: false,
      });
    },
  };
}

async function launchRelay(
  o: RelayOptions,
  namespace: ((dir: string) => string) | undefined,
): Promise<Relay> {
  ensureUser(RELAY_USER, "/bin/sh");
  // Accounts made by useradd have a locked password ("!"); with UsePAM no,
  // sshd refuses locked accounts even for key logins. "*" = no password.
  const shadow = runSync("/usr/bin/getent", ["shadow", RELAY_USER], false);
  if (shadow.stdout.split(":")[1]?.startsWith("!")) {
    runSync("/usr/sbin/usermod", ["-p", "*", RELAY_USER]);
  }
  await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });

  const dir = await Deno.makeTempDir(
    namespace === undefined
      ? { prefix: "rsm-relay-" }
      : { dir: "/var/tmp", prefix: "rsm-relay-ns-" },
  );
  // sshd reads authorized_keys as the target user: let it traverse.
  await Deno.chmod(dir, 0o711);
  const hostKey = `${dir}/ssh_host_ed25519_key`;
  await keygen(hostKey, "rsm-relay-host");
  const authorizedKeys = `${dir}/authorized_keys`;
  await Deno.writeTextFile(authorizedKeys, "");
  await Deno.chmod(authorizedKeys, 0o644);
  // The relay's state: root's directory, holding only the relay account's
  // private top (made here, so no one creates inside a directory of another).
  const stateDir = `${dir}/state`;
  await Deno.mkdir(stateDir, { mode: 0o711 });
  await Deno.chmod(stateDir, 0o711);
  const relayUid = await uidOf(RELAY_USER);
  const stateTop = `${stateDir}/rsendmail-${relayUid}`;
  await Deno.mkdir(stateTop, { mode: 0o700 });
  await Deno.chown(stateTop, relayUid, null);
  const pidFile = `${dir}/sshd.pid`;
  const log = `${dir}/sshd.log`;
  const config = `${dir}/sshd_config`;
  const knownHosts = `${dir}/known_hosts`;
  const hostPub = (await Deno.readTextFile(`${hostKey}.pub`)).trim().split(" ");
  const sshd = ["/usr/sbin/sshd", "-f", config, "-E", log];

  let port = 0;
  let pid = 0;
  for (let attempt = 0;; attempt++) {
    port = closedPort();
    await Deno.writeTextFile(
      config,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${hostKey}`,
        `PidFile ${pidFile}`,
        // The bed's own file first; the account's ~/.ssh/authorized_keys
        // too, for `sshsendmail setup --install-with`.
        `AuthorizedKeysFile ${authorizedKeys} .ssh/authorized_keys`,
        "AuthorizedPrincipalsFile none",
        `AllowUsers ${RELAY_USER}`,
        "PermitRootLogin no",
        "StrictModes no",
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "PermitUserEnvironment no",
        "X11Forwarding no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "LogLevel VERBOSE",
        "MaxStartups 100",
        "MaxSessions 100",
        "LoginGraceTime 30",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        // Match blocks go last (they run to the end of the file).
        ...(o.extraConfig === undefined ? [] : [o.extraConfig]),
        "",
      ].join("\n"),
    );
    await Deno.writeTextFile(
      knownHosts,
      `[127.0.0.1]:${port} ${hostPub[0]} ${hostPub[1]}\n`,
    );
    await Deno.chmod(knownHosts, 0o644);
    await Deno.remove(pidFile).catch(() => {});
    // Without -D sshd daemonizes (stdio to /dev/null) and writes PidFile
    // once it listens; -E keeps its log in the relay dir.
    const argv = namespace === undefined
      ? sshd
      : inMountNamespace(`${namespace(dir)}\nexec ${sshd.join(" ")}`);
    const res = await run(argv[0]!, argv.slice(1), { check: false });
    if (res.code !== 0) {
      const text = await Deno.readTextFile(log).catch(() => "");
      throw new Error(`sshd failed (${res.code}): ${res.stderr}${text}`);
    }
    try {
      pid = await readPid(pidFile, 5000);
    } catch (e) {
      const text = await Deno.readTextFile(log).catch(() => "");
      if (attempt < 3 && /Address already in use|Cannot bind/.test(text)) {
        continue; // lost the port race
      }
      throw new Error(`sshd did not start: ${e}\n${text}`);
    }
    break;
  }
  const deadline = Date.now() + 5000;
  while (!(await canConnect(port))) {
    if (Date.now() > deadline) {
      await killPid(pid);
      throw new Error(`sshd on port ${port} not accepting connections`);
    }
    await sleep(20);
  }

  let keyCount = 0;
  let stopped = false;
  return {
    port,
    host: "127.0.0.1",
    user: RELAY_USER,
    dir,
    pid,
    knownHosts,
    log,
    stateDir,
    async addKey(options: string, owner?: string): Promise<string> {
      const n = ++keyCount;
      const key = `${dir}/client_key_${n}`;
      await keygen(key, `rsm-test-${n}`);
      const pub = (await Deno.readTextFile(`${key}.pub`)).trim();
      const line = options === "" ? pub : `${withStateDir(options, stateDir)} ${pub}`;
      await Deno.writeTextFile(authorizedKeys, `${line}\n`, { append: true });
      if (owner !== undefined) {
        runSync("/usr/bin/chown", [owner, key, `${key}.pub`]);
      }
      return key;
    },
    sshArgv(identity: string): string[] {
      return [
        "/usr/bin/ssh",
        "-F",
        "/dev/null",
        "-T",
        "-e",
        "none",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-i",
        identity,
        "-o",
        `UserKnownHostsFile=${knownHosts}`,
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        "-p",
        String(port),
        `${RELAY_USER}@127.0.0.1`,
      ];
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      await killPid(pid);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * Runs argv as the local account `user` (its uid and gid, no supplementary
 * groups): work inside a directory that account owns.
 */
export function runAsAccount(user: string, argv: string[]): Promise<RunResult> {
  const as = [`--reuid=${user}`, `--regid=${user}`, "--clear-groups", "--"];
  return run("/usr/bin/setpriv", [...as, ...argv], { check: false });
}

/** `<stateDir>/rsendmail-<uid>`: the relay account's own directory in its state directory. */
async function relayStateTop(relay: Pick<Relay, "stateDir" | "user">): Promise<string> {
  return `${relay.stateDir}/rsendmail-${await uidOf(relay.user)}`;
}

/** `<stateDir>/rsendmail-<uid>/<name>`: a label's record, or its `<label>.limits`, in this relay's state. */
export async function relayStatePath(
  relay: Pick<Relay, "stateDir" | "user">,
  name: string,
): Promise<string> {
  return `${await relayStateTop(relay)}/${name}`;
}

/**
 * `options` with `--state-dir stateDir` first in dist/rsendmail's forced
 * command, unless it names a state directory itself or runs something else.
 */
export function withStateDir(options: string, stateDir: string): string {
  const forced = `command="${RSENDMAIL}`;
  const end = options.indexOf(forced) + forced.length;
  if (end < forced.length || options.includes("--state-dir")) return options;
  if (options[end] !== " " && options[end] !== '"') return options;
  return `${options.slice(0, end)} --state-dir ${stateDir}${options.slice(end)}`;
}

/** `rsendmail-*` names in `dir` (the relay's spool must never leave one in /tmp). */
export async function spoolNames(dir = "/tmp"): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.startsWith("rsendmail-")) names.push(e.name);
  return names;
}

/**
 * Removes the lines `sshsendmail setup --install-with` added (their comment
 * is `sshsendmail@…`) from the relay account's ~/.ssh/authorized_keys, which
 * every bed relay reads besides its own file, and the state their labels
 * left in the default state directory (such a line names none), and the
 * account's `rsendmail-<uid>` there once empty: removed as the relay
 * account, whose directory it is.
 */
export async function removeInstalledKeys(relay: Pick<Relay, "user">): Promise<void> {
  const installed = `/home/${relay.user}/.ssh/authorized_keys`;
  const lines = (await Deno.readTextFile(installed).catch(() => "")).split("\n");
  const ours = (l: string) => l.includes("sshsendmail@");
  await Deno.writeTextFile(installed, lines.filter((l) => !ours(l)).join("\n")).catch(() => {});
  const labels = lines.filter(ours).flatMap((l) => {
    const label = / --label ([A-Za-z0-9_-][A-Za-z0-9._-]*) /.exec(l)?.[1];
    return label === undefined ? [] : [label, `${label}.limits`];
  });
  if (labels.length === 0) return;
  const top = await relayStateTop({ stateDir: STATE_DIR, user: relay.user });
  await runAsAccount(relay.user, ["/bin/rm", "-rf", "--", ...labels.map((n) => `${top}/${n}`)]);
  // The account's own directory too, when nothing else is left in it.
  await runAsAccount(relay.user, ["/bin/rmdir", "--ignore-fail-on-non-empty", "--", top]);
}

// ------------------------------------------------------ ssh to a relay

/** Outcome of one ssh call, with its duration. */
export interface SshResult extends RunResult {
  ms: number;
}

/** What the peer sends: words (quoted here) or a raw command string, or nothing. */
export type Request = string[] | { raw: string } | null;

function remoteArgs(request: Request): string[] {
  if (request === null) return [];
  return Array.isArray(request) ? [quoteWords(request)] : [request.raw];
}

/** argv of `ssh [options] host [command]` for `key`. */
export function sshCommand(
  target: Pick<Relay, "sshArgv">,
  key: string,
  request: Request,
  options: string[] = [],
): string[] {
  const argv = target.sshArgv(key);
  const host = argv.pop()!;
  return [...argv, ...options, host, ...remoteArgs(request)];
}

/** Runs ssh to completion with `stdin` (or /dev/null). */
export async function ssh(
  target: Pick<Relay, "sshArgv">,
  key: string,
  request: Request,
  stdin?: Uint8Array | string,
  options: string[] = [],
  env?: Record<string, string>,
): Promise<SshResult> {
  const [cmd, ...args] = sshCommand(target, key, request, options);
  const started = performance.now();
  const res = await run(cmd!, args, {
    check: false,
    ...(stdin === undefined ? {} : { stdin }),
    ...(env === undefined ? {} : { env }),
  });
  return { ...res, ms: performance.now() - started };
}

/** A child whose stdin the test drives. */
export interface Held {
  child: Deno.ChildProcess;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  done: Promise<SshResult>;
  write(data: Uint8Array | string): Promise<void>;
  /** Closes stdin, ignoring a pipe the other side already closed. */
  close(): Promise<void>;
}

/** Spawns `argv` with a piped stdin the test writes by hand. */
export function hold(argv: string[], env?: Record<string, string>): Held {
  const [cmd, ...args] = argv;
  const child = new Deno.Command(cmd!, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    ...(env === undefined ? {} : { env }),
  }).spawn();
  const started = performance.now();
  const done = child.output().then((out) => ({
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
    ms: performance.now() - started,
  }));
  const writer = child.stdin.getWriter();
  let closed = false;
  return {
    child,
    writer,
    done,
    async write(data) {
      await writer.write(typeof data === "string" ? encoder.encode(data) : data);
    },
    async close() {
      if (closed) return;
      closed = true;
      await writer.close().catch(() => writer.abort().catch(() => {}));
    },
  };
}

// ---------------------------------------------------------------- Postfix

/** A Maildir of a local account on the relay. */
export interface Mailbox {
  /** Local account name. */
  user: string;
  /** Path of the Maildir (`<home>/Maildir`). */
  dir: string;
}

/** The system Postfix, configured as a loopback-only relay for relay.test. */
export interface Postfix {
  /** Maildir of a local account (created if missing). */
  mailbox(user: string): Mailbox;
  /** Stops Postfix (master PID), waiting until it is gone. */
  stop(): Promise<void>;
  /** The local mail domain: "relay.test". */
  domain: string;
}

const POSTFIX_DOMAIN = "relay.test";
/** main.cf settings applied with `postconf -e` (only those that differ). */
const POSTFIX_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ["myhostname", POSTFIX_DOMAIN],
  ["mydomain", POSTFIX_DOMAIN],
  ["myorigin", "$myhostname"],
  ["mydestination", "$myhostname, localhost"],
  ["inet_interfaces", "loopback-only"],
  ["inet_protocols", "ipv4"],
  ["mynetworks", "127.0.0.0/8"],
  ["relayhost", ""],
  ["home_mailbox", "Maildir/"],
  ["maillog_file", "/var/log/postfix-test.log"],
];

let postfixPromise: Promise<Postfix> | undefined;

/** True when the system Postfix (/etc/postfix) is running. */
export async function postfixRunning(): Promise<boolean> {
  const res = await run("/usr/sbin/postfix", ["-c", "/etc/postfix", "status"], {
    check: false,
  });
  return res.code === 0;
}

function mailboxOf(user: string): Mailbox {
  const home = ensureUser(user, "/usr/sbin/nologin");
  return { user, dir: `${home}/Maildir` };
}

async function doStartPostfix(): Promise<Postfix> {
  for (const u of ["rcpt1", "rcpt2"]) ensureUser(u, "/usr/sbin/nologin");
  const current = await run("/usr/sbin/postconf", [
    "-c",
    "/etc/postfix",
    "-h",
    ...POSTFIX_SETTINGS.map(([k]) => k),
  ]);
  const values = current.stdout.split("\n");
  const changes = POSTFIX_SETTINGS
    .filter(([_, v], i) => values[i] !== v)
    .map(([k, v]) => `${k}=${v}`);
  if (changes.length > 0) {
    await run("/usr/sbin/postconf", ["-c", "/etc/postfix", "-e", ...changes]);
  }
  await run("/usr/bin/newaliases", []);
  if (await postfixRunning()) {
    if (changes.length > 0) {
      await run("/usr/sbin/postfix", ["-c", "/etc/postfix", "reload"]);
    }
  } else {
    // What Debian's systemd unit runs first: syncs the chroot
    // (/var/spool/postfix/etc, lib) for the chrooted services.
    await run("/usr/lib/postfix/configure-instance.sh", ["-"]);
    await run("/usr/sbin/postfix", ["-c", "/etc/postfix", "start"]);
  }
  return {
    domain: POSTFIX_DOMAIN,
    mailbox: mailboxOf,
    async stop(): Promise<void> {
      postfixPromise = undefined;
      const pidFile = "/var/spool/postfix/pid/master.pid";
      const pid = await readPid(pidFile, 0).catch(() => 0);
      await run("/usr/sbin/postfix", ["-c", "/etc/postfix", "stop"], {
        check: false,
      });
      if (pid > 0) await killPid(pid, 10000);
    },
  };
}

/**
 * Configures and starts the system Postfix as a loopback-only relay:
 * myhostname relay.test, mydestination relay.test + localhost,
 * inet_interfaces loopback-only (IPv4 only), home_mailbox = Maildir/,
 * maillog_file = /var/log/postfix-test.log (so Postfix does not log to
 * /dev/log). Local test accounts rcpt1, rcpt2 (and any name passed to
 * mailbox()) are created if missing. Idempotent if already started by this
 * process; reloads a Postfix already running with other settings.
 */
export function startPostfix(): Promise<Postfix> {
  if (postfixPromise === undefined) {
    postfixPromise = doStartPostfix();
    postfixPromise.catch(() => {
      postfixPromise = undefined;
    });
  }
  return postfixPromise;
}

// ---------------------------------------------------------------- Maildirs

/** Maildir entries taken (or expected gone) already, per Maildir path. */
const seenMail = new Map<string, Set<string>>();

function seenOf(box: Mailbox): Set<string> {
  let s = seenMail.get(box.dir);
  if (s === undefined) {
    s = new Set();
    seenMail.set(box.dir, s);
  }
  return s;
}

async function listNew(box: Mailbox): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(`${box.dir}/new`)) {
      if (e.isFile) names.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  // Maildir names start with the delivery time in seconds; then sort by mtime.
  const withTime = await Promise.all(names.map(async (n) => {
    const st = await Deno.stat(`${box.dir}/new/${n}`).catch(() => undefined);
    return { n, t: st?.mtime?.getTime() ?? 0 };
  }));
  withTime.sort((a, b) => a.t - b.t || (a.n < b.n ? -1 : a.n > b.n ? 1 : 0));
  return withTime.map((x) => x.n);
}

/**
 * Waits until the Maildir has a new message not seen before (delivered into
 * Maildir/new), returns its raw bytes (oldest first) and removes it; throws
 * after timeoutMs (default 15000).
 */
export async function takeMail(
  box: Mailbox,
  timeoutMs = 15000,
): Promise<Uint8Array> {
  const seen = seenOf(box);
  const deadline = Date.now() + timeoutMs;
  while (true) {
    for (const name of await listNew(box)) {
      if (seen.has(name)) continue;
      seen.add(name);
      const path = `${box.dir}/new/${name}`;
      const data = await Deno.readFile(path);
      await Deno.remove(path).catch(() => {});
      return data;
    }
    if (Date.now() > deadline) {
      throw new Error(`no mail for ${box.user} within ${timeoutMs} ms`);
    }
    await sleep(50);
  }
}

/**
 * Asserts nothing new arrives within ms (default 1500): throws if any message
 * not taken before is (or shows up) in Maildir/new, quoting its start.
 */
export async function expectNoMail(box: Mailbox, ms = 1500): Promise<void> {
  const seen = seenOf(box);
  const deadline = Date.now() + ms;
  while (true) {
    for (const name of await listNew(box)) {
      if (seen.has(name)) continue;
      const data = await Deno.readFile(`${box.dir}/new/${name}`).catch(() => new Uint8Array());
      throw new Error(
        `unexpected mail for ${box.user}: ${decoder.decode(data.subarray(0, 400))}`,
      );
    }
    if (Date.now() >= deadline) return;
    await sleep(50);
  }
}

/** Removes all messages (new/ and cur/) from the Maildir. */
export async function clearMailbox(box: Mailbox): Promise<void> {
  for (const sub of ["new", "cur"]) {
    try {
      for await (const e of Deno.readDir(`${box.dir}/${sub}`)) {
        await Deno.remove(`${box.dir}/${sub}/${e.name}`, { recursive: true })
          .catch(() => {});
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  seenOf(box).clear();
}

/** A fresh token to find one message among others in a shared Maildir. */
export function token(label: string): string {
  return `${label}-${crypto.randomUUID().slice(0, 12)}`;
}

/** Where `needle` first occurs in `hay` (from `from` on), or -1. */
export function indexOfBytes(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  outer: for (let i = from; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * The first message in box's Maildir/new holding `needle`, removed from
 * there; undefined when there is none.
 */
async function findToken(box: Mailbox, needle: string): Promise<Uint8Array | undefined> {
  const want = encoder.encode(needle);
  let entries: Deno.DirEntry[] = [];
  try {
    entries = await Array.fromAsync(Deno.readDir(`${box.dir}/new`));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  for (const e of entries) {
    if (!e.isFile) continue;
    const path = `${box.dir}/new/${e.name}`;
    const data = await Deno.readFile(path).catch(() => new Uint8Array());
    if (indexOfBytes(data, want) >= 0) {
      await Deno.remove(path).catch(() => {});
      return data;
    }
  }
  return undefined;
}

/**
 * Waits for the message holding `needle` in box's Maildir/new, removes it
 * and returns its raw bytes. Throws after timeoutMs. Other tests share
 * Postfix, so a message is found by what it holds, never by arrival order.
 */
export async function takeBytes(
  box: Mailbox,
  needle: string,
  timeoutMs = 15000,
): Promise<Uint8Array> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const data = await findToken(box, needle);
    if (data !== undefined) return data;
    if (Date.now() > deadline) {
      throw new Error(`no mail holding ${needle} for ${box.user} within ${timeoutMs} ms`);
    }
    await sleep(50);
  }
}

/** {@link takeBytes}, decoded as UTF-8. */
export async function takeByToken(
  box: Mailbox,
  needle: string,
  timeoutMs = 15000,
): Promise<string> {
  return decoder.decode(await takeBytes(box, needle, timeoutMs));
}

/** Throws if a message holding `needle` is (or shows up within ms) in box. */
export async function expectNoToken(box: Mailbox, needle: string, ms = 1500): Promise<void> {
  const deadline = Date.now() + ms;
  while (true) {
    const data = await findToken(box, needle);
    if (data !== undefined) {
      throw new Error(`unexpected mail for ${box.user}: ${decoder.decode(data).slice(0, 400)}`);
    }
    if (Date.now() >= deadline) return;
    await sleep(50);
  }
}

// ----------------------------------------------------------------- syslog

/** A private rsyslogd that writes facility mail to `file`. */
export interface Syslog {
  /** The file that receives facility mail, one `<severity> <tag><msg>` line per message. */
  file: string;
  /** Kills rsyslogd by PID and removes /dev/log. */
  stop(): Promise<void>;
  /** Lines appended since last call (complete lines only). */
  newLines(): Promise<string[]>;
  /**
   * Polls newLines() until a line contains `needle` (string) or matches it
   * (RegExp); returns every line read meanwhile (the match is the last one);
   * lines after the match are left for the next newLines() call. Throws after timeoutMs (default 5000) with the lines seen.
   */
  waitForLine(needle: string | RegExp, timeoutMs?: number): Promise<string[]>;
}

const DEV_LOG = "/dev/log";

/** Deno demands --allow-all for any /dev path but /dev/null: use rm(1). */
async function removeDevLog(): Promise<void> {
  await run("/bin/rm", ["-f", DEV_LOG]);
}

/**
 * Starts a real rsyslogd (own config file, own pid file and work dir in a
 * temp dir) whose imuxsock listens on /dev/log (no rate limiting) and writes
 * facility mail (all priorities) to `file`, one line per message:
 * `<severity-text> <syslogtag><msg>` (control characters escaped by rsyslog
 * as usual, e.g. `#012` for LF). rsyslogd daemonizes; stop() kills it by PID
 * and removes /dev/log.
 */
export async function startSyslog(): Promise<Syslog> {
  const dir = await Deno.makeTempDir({ prefix: "rsm-syslog-" });
  const file = `${dir}/mail.log`;
  const pidFile = `${dir}/rsyslogd.pid`;
  const conf = `${dir}/rsyslog.conf`;
  await Deno.writeTextFile(file, "");
  await Deno.writeTextFile(
    conf,
    [
      `global(workDirectory="${dir}")`,
      `module(load="imuxsock" SysSock.Name="${DEV_LOG}" SysSock.RateLimit.Interval="0")`,
      `template(name="rsmRaw" type="string" string="%syslogseverity-text% %syslogtag%%msg%\\n")`,
      `mail.* action(type="omfile" file="${file}" template="rsmRaw")`,
      "",
    ].join("\n"),
  );
  await removeDevLog();
  // Without -n rsyslogd forks and the parent exits at once. Its stdio must
  // not be pipes: the daemon keeps them open for about a second.
  const status = await new Deno.Command("/usr/sbin/rsyslogd", {
    args: ["-f", conf, "-i", pidFile],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  let pid = 0;
  try {
    if (status.code !== 0) throw new Error(`exit ${status.code}`);
    pid = await readPid(pidFile, 5000);
    const deadline = Date.now() + 5000;
    while (
      (await run("/usr/bin/test", ["-S", DEV_LOG], { check: false })).code
    ) {
      if (Date.now() > deadline) throw new Error(`no socket ${DEV_LOG}`);
      await sleep(20);
    }
  } catch (e) {
    if (pid > 0) await killPid(pid);
    const check = await run("/usr/sbin/rsyslogd", ["-N1", "-f", conf], {
      check: false,
    });
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(
      `rsyslogd did not start: ${e}\n${check.stderr}${check.stdout}`,
    );
  }

  let offset = 0;
  let stopped = false;
  // Lines read by waitForLine after its match, handed out next.
  let pending: string[] = [];
  const newLines = async (): Promise<string[]> => {
    const data = await Deno.readFile(file);
    const end = data.lastIndexOf(0x0a) + 1;
    const lines = pending;
    pending = [];
    if (end <= offset) return lines;
    const text = decoder.decode(data.subarray(offset, end));
    offset = end;
    return lines.concat(text.split("\n").slice(0, -1));
  };
  return {
    file,
    newLines,
    async waitForLine(
      needle: string | RegExp,
      timeoutMs = 5000,
    ): Promise<string[]> {
      const got: string[] = [];
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const lines = await newLines();
        for (const [i, line] of lines.entries()) {
          got.push(line);
          const hit = typeof needle === "string" ? line.includes(needle) : needle.test(line);
          if (hit) {
            pending = lines.slice(i + 1);
            return got;
          }
        }
        if (Date.now() > deadline) {
          throw new Error(
            `no syslog line matching ${needle} within ${timeoutMs} ms; got:\n${got.join("\n")}`,
          );
        }
        await sleep(30);
      }
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      await killPid(pid);
      await removeDevLog();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
