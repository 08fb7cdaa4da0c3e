/**
 * `sshsendmail setup`'s steps on the relay, all through ssh: recording the
 * relay's host key, and installing the authorized_keys line over the relay
 * admin's own login. Effectful edge module.
 *
 * @module
 */

import { type ClientSettings, ConfigError } from "./client_config.ts";
import { blobOf, fingerprint } from "./openssh_key.ts";
import { readCapped } from "../shared/pipeline_io.ts";
import { quoteWords } from "../shared/words.ts";
import { type Account, dirOf, makeDir, sha256 } from "./setup_key_io.ts";

/** How setup runs ssh. */
export interface SshContext {
  sshPath: string;
  env: Record<string, string>;
}

/** Runs ssh with `args` (stdin given or none); its output capped. */
export async function ssh(ctx: SshContext, args: string[], stdin?: string) {
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

export function firstLine(text: string): string {
  return text.split("\n").map((l) => l.trim()).find(Boolean)?.replace(/[^ -~]/g, "?") ?? "";
}

/**
 * Step 2: connects once without authenticating, so ssh records the relay's
 * host key (accept-new: a changed key is refused), then fingerprints what it
 * recorded.
 */
export async function recordHostKey(
  ctx: SshContext,
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
  const unreachable =
    /Could not resolve|Connection refused|timed out|IDENTIFICATION HAS CHANGED|No route/i;
  if (unreachable.test(r.stderr)) {
    // The line that says why: ssh frames a changed host key's warning in rows of @.
    const why = r.stderr.split("\n").map((l) => l.replace(/^[@\s]+|[@\s]+$/g, ""))
      .find((l) => unreachable.test(l));
    throw new ConfigError(`cannot reach the relay: ${firstLine(why ?? r.stderr)}`);
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
export async function installKey(
  ctx: SshContext,
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
  ctx: SshContext,
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
