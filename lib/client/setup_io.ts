/**
 * `sshsendmail setup`: from nothing to a working satellite, each step
 * reported. Makes a dedicated Ed25519 key (Web Crypto, no ssh-keygen),
 * records the relay's host key and shows its fingerprint, prints (or, over
 * the relay admin's own login, installs) the authorized_keys line, sets
 * its own lines of the config file (lib/config_edit.ts: every other line
 * kept), and sends a test message. When the service account
 * exists, the key is handed to it (its owner, 0600) in a directory that
 * stays root's (0755), and known_hosts is made readable (0644). Runs only
 * ssh. Effectful edge module.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  applySetting,
  type ClientSettings,
  ConfigError,
  defaultSettings,
} from "./client_config.ts";
import {
  blobOf,
  ed25519Blob,
  fingerprint,
  privateKeyFile,
  publicKeyLine,
  seedFromPkcs8,
} from "./openssh_key.ts";
import type { Failure } from "./ssh_command.ts";
import { quoteWords } from "../shared/words.ts";
import { SERVICE_USER } from "../shared/layout.ts";
import { readCapped } from "../shared/pipeline_io.ts";
import { PolicyError, UsageError } from "../shared/errors.ts";
import { parseAdminArgs } from "../shared/relay_config.ts";
import { type ConfigEdit, editConfig, type SetupValues } from "./config_edit.ts";

/** What setup needs from the edge. */
export interface SetupContext {
  sshPath: string;
  env: Record<string, string>;
  hostname: string;
  configFile: string;
  /** Sends a test message with these settings; undefined on success. */
  sendTest(settings: ClientSettings, address: string): Promise<Failure | undefined>;
  say(line: string): Promise<void>;
  /** Asks a yes/no question on a terminal; absent when no terminal is attached. */
  confirm?: ((question: string) => Promise<boolean>) | undefined;
}

const SETUP_OPTIONS = {
  host: { type: "string" },
  port: { type: "string" },
  identity: { type: "string" },
  "known-hosts": { type: "string" },
  rsendmail: { type: "string" },
  label: { type: "string" },
  "allow-sender": { type: "string", multiple: true },
  "max-size": { type: "string" },
  "install-with": { type: "string" },
  "admin-identity": { type: "string" },
  test: { type: "string" },
  fingerprint: { type: "string", multiple: true },
  "max-messages": { type: "string" },
  "max-sessions": { type: "string" },
  help: { type: "boolean" },
} as const;

/** `sshsendmail setup --help`. */
export const SETUP_USAGE =
  `usage: sshsendmail setup --host [USER@]RELAY [--port P] [--fingerprint SHA256:...]
                         [--install-with ADMIN] [--admin-identity FILE] [--test ADDRESS]
                         [--label NAME] [--allow-sender ADDR|@DOMAIN]... [--max-size BYTES]
                         [--max-messages N/PERIOD] [--max-sessions N]
                         [--identity FILE] [--known-hosts FILE] [--rsendmail PATH]
Makes the satellite's key, records and checks the relay's host key, prints
(or with --install-with installs) the relay's authorized_keys line, writes
the relay settings into the config file, and with --test sends a message.
See sshsendmail(8).
`;

/** The rate a satellite's key gets unless setup is told otherwise. */
const DEFAULT_MAX_MESSAGES = "200/hour";
/** Concurrent sessions: the service keeps one; a few more for pipe and -q. */
const DEFAULT_MAX_SESSIONS = "4";

const DEFAULT_DIR = "/etc/sshsendmail";
/** An OpenSSH SHA-256 fingerprint as `ssh-keygen -lf` prints it. */
const FINGERPRINT_REGEXP = /^SHA256:[A-Za-z0-9+/]{43}$/;
/** Words sshd's `$SHELL -c` passes on unchanged (the forced command is not quoted). */
const SHELL_SAFE_REGEXP = /^[A-Za-z0-9@%+=:,./_-]+$/;

/**
 * Checks the forced command setup will print: the relay's own admin
 * grammar must take every word (a value it would refuse makes a relay that
 * defers all mail), and every word must reach it unchanged through the
 * relay account's shell (a `'` would make a line the shell cannot parse).
 */
function checkForcedCommand(words: readonly string[]): void {
  const [, ...admin] = words;
  for (const w of words) {
    if (!SHELL_SAFE_REGEXP.test(w)) {
      throw new ConfigError(
        `setup: "${
          w.replace(/[^ -~]/g, "?").slice(0, 64)
        }" cannot be carried in the forced command`,
      );
    }
  }
  let parsed;
  try {
    parsed = parseAdminArgs(admin);
  } catch (err) {
    throw new ConfigError(`setup: the relay would refuse it: ${(err as Error).message}`);
  }
  if (parsed.rest.length > 0) {
    throw new ConfigError(`setup: the relay would not take "${parsed.rest[0]}" as an option`);
  }
}
const LABEL_REGEXP = /^[A-Za-z0-9._@+-]{1,64}$/;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** The service account's numeric ids (what Deno.chown takes). */
interface Account {
  uid: number;
  gid: number;
}

/** The service account from /etc/passwd, or undefined when it does not exist. */
async function serviceAccount(): Promise<Account | undefined> {
  const passwd = await Deno.readTextFile("/etc/passwd").catch(() => "");
  for (const line of passwd.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (name === SERVICE_USER && /^[0-9]+$/.test(uid ?? "") && /^[0-9]+$/.test(gid ?? "")) {
      return { uid: Number(uid), gid: Number(gid) };
    }
  }
  return undefined;
}

function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/**
 * Makes a directory (and missing parents) that setup writes into: 0700, or
 * 0755 when the service account must reach what it holds (chmod, so the
 * umask does not decide). Returns whether it was made.
 */
async function makeDir(dir: string, account: Account | undefined): Promise<boolean> {
  const missing: string[] = [];
  for (let d = dir; !(await exists(d)); d = dirOf(d)) missing.unshift(d);
  for (const d of missing) {
    await Deno.mkdir(d, { mode: 0o700 });
    if (account !== undefined) await Deno.chmod(d, 0o755);
  }
  return missing.length > 0;
}

/**
 * Hands the private key to the service account: its owner and group, mode
 * 0600. Its directory stays root's; one setup made, or the default one
 * (which setup used to make 0700), becomes 0755 so the account can reach
 * the key without writing there. Returns the words for the step line.
 */
async function handKey(identity: string, account: Account, dirMade: boolean): Promise<string> {
  try {
    const key = await Deno.lstat(identity);
    if (!key.isFile) throw new ConfigError(`${identity} is not a regular file`);
    await Deno.chown(identity, account.uid, account.gid);
    await Deno.chmod(identity, 0o600);
    const dir = dirOf(identity);
    let st = await Deno.lstat(dir);
    if (st.isDirectory && st.uid === 0 && (dirMade || dir === DEFAULT_DIR)) {
      await Deno.chmod(dir, 0o755);
      st = await Deno.lstat(dir);
    }
    const owner = st.uid === 0 ? "root" : `uid ${st.uid}`;
    const mode = ((st.mode ?? 0) & 0o7777).toString(8).padStart(4, "0");
    return `, owned by ${SERVICE_USER} (0600) in ${dir} (${owner}, ${mode})`;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `cannot hand ${identity} to the ${SERVICE_USER} account (run setup as root): ${
        err instanceof Error ? err.message.split("\n")[0] : String(err)
      }`,
    );
  }
}

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(data)));
}

/** Step 1: the key pair; made only if `identity` does not exist yet. */
async function ensureKey(
  identity: string,
  comment: string,
  account: Account | undefined,
): Promise<{ line: string; made: boolean; dirMade: boolean }> {
  if (await exists(identity)) {
    try {
      const line = (await Deno.readTextFile(`${identity}.pub`)).trim();
      return { line, made: false, dirMade: false };
    } catch {
      throw new ConfigError(`${identity} exists but ${identity}.pub does not`);
    }
  }
  const dirMade = await makeDir(dirOf(identity), account);
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const seed = seedFromPkcs8(
    new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey)),
  );
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const check = crypto.getRandomValues(new Uint32Array(1))[0]!;
  await Deno.writeTextFile(identity, privateKeyFile(seed, pub, comment, check), {
    createNew: true,
    mode: 0o600,
  });
  const line = publicKeyLine(pub, comment);
  await Deno.writeTextFile(`${identity}.pub`, `${line}\n`, { mode: 0o644 });
  return { line, made: true, dirMade };
}

async function ssh(ctx: SetupContext, args: string[], stdin?: string) {
  const child = new Deno.Command(ctx.sshPath, {
    args,
    clearEnv: true,
    env: ctx.env,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  // The relay's output is capped: a hostile one may send without end.
  const stdout = readCapped(child.stdout, 1 << 20);
  const stderr = readCapped(child.stderr, 65536);
  const status = await child.status;
  await Promise.all([stdout.done, stderr.done]);
  return { code: status.code, stdout: stdout.text(), stderr: stderr.text() };
}

function firstLine(text: string): string {
  return text.split("\n").map((l) => l.trim()).find(Boolean)?.replace(/[^ -~]/g, "?") ?? "";
}

/**
 * Step 2: connects once without authenticating, so ssh records the relay's
 * host key (accept-new: a changed key is refused), then fingerprints what it
 * recorded.
 */
async function recordHostKey(
  ctx: SetupContext,
  s: ClientSettings,
  host: string,
  account: Account | undefined,
): Promise<string[]> {
  const kh = s.knownHosts!;
  await makeDir(dirOf(kh), account);
  const r = await ssh(ctx, [
    "-T",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=accept-new",
    "-o",
    `UserKnownHostsFile=${kh}`,
    "-o",
    "HashKnownHosts=no",
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "PasswordAuthentication=no",
    "-o",
    "KbdInteractiveAuthentication=no",
    "-o",
    "GSSAPIAuthentication=no",
    "-o",
    `ConnectTimeout=${s.connectTimeout}`,
    ...(s.port ? ["-p", String(s.port)] : []),
    "--",
    host,
    "true",
  ]);
  if (
    /Could not resolve|Connection refused|timed out|IDENTIFICATION HAS CHANGED|No route/i.test(
      r.stderr,
    )
  ) {
    throw new ConfigError(`cannot reach the relay: ${firstLine(r.stderr)}`);
  }
  const name = host.slice(host.indexOf("@") + 1);
  const pattern = s.port && s.port !== 22 ? `[${name}]:${s.port}` : name;
  const prints: string[] = [];
  for (const line of (await Deno.readTextFile(kh).catch(() => "")).split("\n")) {
    const [hosts, type] = line.trim().split(/\s+/);
    if (!hosts || !type || !hosts.split(",").includes(pattern)) continue;
    const blob = blobOf(line);
    if (blob) prints.push(`${type} ${fingerprint(await sha256(blob))}`);
  }
  if (prints.length === 0) throw new ConfigError("the relay's host key was not recorded");
  // The service account reads it (ssh wrote it under the caller's umask).
  if (account !== undefined && (await Deno.lstat(kh)).isFile) await Deno.chmod(kh, 0o644);
  return prints;
}

/** Step 3b: appends the line to the relay user's authorized_keys over the admin's login. */
async function installKey(
  ctx: SetupContext,
  s: ClientSettings,
  host: string,
  admin: string,
  relayUser: string,
  line: string,
  adminIdentity: string | undefined,
): Promise<string> {
  const name = host.slice(host.indexOf("@") + 1);
  // One login for all steps (one password prompt at most), through a
  // control socket in a private directory.
  const private_ = await Deno.makeTempDir({ prefix: "sshsendmail-setup-" });
  try {
    return await installKeyVia(ctx, s, name, admin, relayUser, line, adminIdentity, private_);
  } finally {
    await Deno.remove(private_, { recursive: true }).catch(() => {});
  }
}

async function installKeyVia(
  ctx: SetupContext,
  s: ClientSettings,
  name: string,
  admin: string,
  relayUser: string,
  line: string,
  adminIdentity: string | undefined,
  controlDir: string,
): Promise<string> {
  const base = [
    "-T",
    "-o",
    "ControlMaster=auto",
    "-o",
    `ControlPath=${controlDir}/cm-%C`,
    "-o",
    "ControlPersist=30",
    "-o",
    `UserKnownHostsFile=${s.knownHosts}`,
    "-o",
    "StrictHostKeyChecking=yes",
    ...(adminIdentity ? ["-i", adminIdentity, "-o", "IdentitiesOnly=yes"] : []),
    ...(s.port ? ["-p", String(s.port)] : []),
    "-l",
    admin,
    "--",
    name,
  ];
  const remote = async (words: string[], stdin?: string) =>
    await ssh(ctx, [...base, quoteWords(words)], stdin);
  const pw = await remote(["getent", "passwd", relayUser]);
  const home = pw.stdout.split(":")[5];
  if (pw.code !== 0 || !home || !home.startsWith("/")) {
    throw new ConfigError(
      `no account ${relayUser} on the relay (${firstLine(pw.stderr) || "getent"})`,
    );
  }
  const file = `${home}/.ssh/authorized_keys`;
  const dir = await remote(["install", "-d", "-m", "700", "-o", relayUser, `${home}/.ssh`]);
  if (dir.code !== 0) {
    throw new ConfigError(`cannot prepare ${home}/.ssh: ${firstLine(dir.stderr)}`);
  }
  const present = await remote(["grep", "-qxF", line, file]);
  if (present.code !== 0) {
    const t = await remote(["tee", "-a", file], `${line}\n`);
    if (t.code !== 0) throw new ConfigError(`cannot write ${file}: ${firstLine(t.stderr)}`);
  }
  for (const words of [["chown", relayUser, file], ["chmod", "600", file]]) {
    const r = await remote(words);
    if (r.code !== 0) throw new ConfigError(`cannot fix ${file}: ${firstLine(r.stderr)}`);
  }
  await ssh(ctx, ["-O", "exit", ...base]).catch(() => {});
  return present.code === 0 ? `already in ${file}` : `added to ${file}`;
}

/** The settings setup owns, as it writes them into the config file. */
function setupValues(s: ClientSettings, host: string): SetupValues {
  return {
    host,
    user: undefined, // the user is in host
    port: s.port === undefined ? undefined : String(s.port),
    identity: s.identity,
    known_hosts: s.knownHosts,
  };
}

/** Step 4's report: what changed in the file, every other line kept. */
function describeEdit(edit: ConfigEdit): string {
  const parts: string[] = [];
  const changed = [...edit.replaced, ...edit.appended];
  if (changed.length > 0) parts.push(`set ${changed.join(", ")}`);
  if (edit.removed.length > 0) parts.push(`removed ${edit.removed.join(", ")}`);
  return parts.join("; ");
}

/** Runs `sshsendmail setup …`. Returns the exit code; throws MailError on a fault. */
export async function runSetup(argv: readonly string[], ctx: SetupContext): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: SETUP_OPTIONS, strict: true }));
  } catch (err) {
    throw new UsageError(`setup: ${err instanceof Error ? err.message.split("\n")[0] : ""}`);
  }
  if (values.help) {
    await ctx.say(SETUP_USAGE.trimEnd());
    return 0;
  }
  if (values.host === undefined) throw new UsageError("setup needs --host [USER@]RELAY");
  const s = defaultSettings();
  applySetting(s, "host", values.host);
  const host = s.hosts[0]!;
  if (values.port) applySetting(s, "port", values.port);
  applySetting(s, "identity", values.identity ?? `${DEFAULT_DIR}/id_ed25519`);
  applySetting(s, "known-hosts", values["known-hosts"] ?? `${DEFAULT_DIR}/known_hosts`);
  const relayUser = host.includes("@") ? host.slice(0, host.indexOf("@")) : "rsendmail";
  const target = host.includes("@") ? host : `${relayUser}@${host}`;
  s.hosts = [target];
  const label = values.label ?? ctx.hostname.split(".")[0] ?? "satellite";
  if (!LABEL_REGEXP.test(label)) throw new ConfigError("setup: invalid --label");
  const rsendmail = values.rsendmail ?? "/usr/sbin/rsendmail";
  if (!/^\/[A-Za-z0-9._/-]+$/.test(rsendmail)) {
    throw new ConfigError("setup: invalid --rsendmail");
  }
  // Limits a stolen key meets (refused for now, 4.7.0: an honest queue waits).
  const policy: string[] = [
    "--max-messages",
    values["max-messages"] ?? DEFAULT_MAX_MESSAGES,
    "--max-sessions",
    values["max-sessions"] ?? DEFAULT_MAX_SESSIONS,
  ];
  for (const a of values["allow-sender"] ?? []) policy.push("--allow-sender", a);
  if (values["max-size"]) policy.push("--max-size", values["max-size"]);
  checkForcedCommand([rsendmail, "--label", label, "--require-integrity", ...policy]);
  const expected = values.fingerprint ?? [];
  if (expected.some((f) => !FINGERPRINT_REGEXP.test(f))) {
    throw new ConfigError("setup: --fingerprint wants SHA256:… as ssh-keygen -lf prints it");
  }
  await ctx.say(`sshsendmail setup: relay ${target}${s.port ? ` port ${s.port}` : ""}`);

  const account = await serviceAccount();
  const key = await ensureKey(s.identity!, `sshsendmail@${ctx.hostname}`, account);
  const handed = account === undefined ? "" : await handKey(s.identity!, account, key.dirMade);
  const keyPrint = fingerprint(await sha256(blobOf(key.line) ?? ed25519Blob(new Uint8Array(32))));
  await ctx.say(
    `[1/5] key: ${key.made ? "created" : "kept"} ${s.identity} (ssh-ed25519 ${keyPrint})${handed}`,
  );

  const before = await Deno.readTextFile(s.knownHosts!).catch(() => undefined);
  const prints = await recordHostKey(ctx, s, target, account);
  await ctx.say(`[2/5] relay host key recorded in ${s.knownHosts}: ${prints.join(", ")}`);
  const matches = expected.length > 0 && prints.some((p) => expected.includes(p.split(" ")[1]!));
  if (expected.length > 0 && !matches) {
    // Nothing is logged in to and nothing is kept: the key is not the relay's.
    if (before === undefined) await Deno.remove(s.knownHosts!).catch(() => {});
    else await Deno.writeTextFile(s.knownHosts!, before);
    throw new PolicyError(
      `setup: the relay's host key is not the one given with --fingerprint (got ${
        prints.join(", ")
      }); nothing was installed`,
      "5.7.0",
    );
  }
  if (matches) {
    await ctx.say("      matches --fingerprint");
  } else if (ctx.confirm) {
    await ctx.say("      compare on the relay: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub");
    if (!(await ctx.confirm("      Is this the relay's host key? [y/N] "))) {
      if (before === undefined) await Deno.remove(s.knownHosts!).catch(() => {});
      else await Deno.writeTextFile(s.knownHosts!, before);
      throw new PolicyError("setup: host key not confirmed; nothing was installed", "5.7.0");
    }
  } else {
    await ctx.say("      compare on the relay: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub");
    await ctx.say("      (no terminal and no --fingerprint: not confirmed; pass --fingerprint)");
  }

  const forced = [rsendmail, "--label", label, "--require-integrity", ...policy].join(" ");
  // (checked above with the relay's grammar)
  const authorized = `restrict,command="${forced}" ${key.line}`;
  if (values["install-with"]) {
    const where = await installKey(
      ctx,
      s,
      target,
      values["install-with"],
      relayUser,
      authorized,
      values["admin-identity"],
    );
    await ctx.say(`[3/5] authorized_keys line ${where} (through ${values["install-with"]}@relay):`);
  } else {
    await ctx.say(`[3/5] add this line to ~${relayUser}/.ssh/authorized_keys on the relay:`);
  }
  await ctx.say(`      ${authorized}`);

  // Only setup's own lines change (the packaged file is a conffile: dpkg
  // keeps the admin's version of it); the previous text is kept beside
  // the key (a directory setup may write).
  const previous = await Deno.readTextFile(ctx.configFile).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new ConfigError(
      `cannot read ${ctx.configFile}: ${err instanceof Error ? err.message.split("\n")[0] : ""}`,
    );
  });
  const edit = editConfig(previous, setupValues(s, target));
  if (!edit.changed) {
    await ctx.say(`[4/5] config: ${ctx.configFile} already says so (unchanged)`);
  } else {
    const keyDir = s.identity!.slice(0, s.identity!.lastIndexOf("/"));
    const backup = `${keyDir}/sshsendmail.conf.previous`;
    if (previous !== undefined) await Deno.writeTextFile(backup, previous, { mode: 0o644 });
    // In place: the file keeps its inode, owner and mode (0644 when new).
    await Deno.writeTextFile(ctx.configFile, edit.text, { mode: 0o644 });
    await ctx.say(
      `[4/5] config: wrote ${ctx.configFile} (${describeEdit(edit)}${
        previous === undefined ? "" : `; every other line kept; previous kept as ${backup}`
      })`,
    );
  }

  if (values.test === undefined) {
    await ctx.say("[5/5] test message: skipped (run: sshsendmail --test ADDRESS)");
    return 0;
  }
  return await runTest(s, values.test, ctx, "[5/5] ");
}

/** Sends a test message and reports it (`sshsendmail --test ADDR`, setup's last step). */
export async function runTest(
  s: ClientSettings,
  address: string,
  ctx: SetupContext,
  prefix = "",
): Promise<number> {
  const failure = await ctx.sendTest(s, address);
  if (failure === undefined) {
    await ctx.say(`${prefix}test message to ${address}: accepted by the relay`);
    return 0;
  }
  await ctx.say(`${prefix}test message to ${address}: FAILED: ${failure.line}`);
  return failure.sysexit;
}
