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

import { type ClientSettings, ConfigError } from "./client_config.ts";
import { blobOf, ed25519Blob, fingerprint } from "./openssh_key.ts";
import type { Failure } from "./ssh_command.ts";
import { PolicyError } from "../shared/errors.ts";
import { editConfig } from "./config_edit.ts";
import { type Account, ensureKey, handKey, serviceAccount, sha256 } from "./setup_key_io.ts";
import { installKey, recordHostKey } from "./setup_relay_io.ts";
import {
  describeEdit,
  parseSetupOptions,
  planSetup,
  SETUP_USAGE,
  type SetupPlan,
  setupValues,
} from "./setup_plan.ts";

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

/** Runs `sshsendmail setup …`. Returns the exit code; throws MailError on a fault. */
export async function runSetup(argv: readonly string[], ctx: SetupContext): Promise<number> {
  // node:util loads here, not at every start of the client (~10 ms).
  const values = parseSetupOptions(argv, (await import("node:util")).parseArgs);
  if (values.help) {
    await ctx.say(SETUP_USAGE.trimEnd());
    return 0;
  }
  const plan = planSetup(values, ctx.hostname);
  const { s, target } = plan;
  await ctx.say(`sshsendmail setup: relay ${target}${s.port ? ` port ${s.port}` : ""}`);
  const account = await serviceAccount();
  const keyLine = await stepKey(s, ctx, account);
  await stepHostKey(plan, ctx, account);
  await stepAuthorize(plan, ctx, keyLine);
  await stepConfig(s, target, ctx);
  if (values.test === undefined) {
    await ctx.say("[5/5] test message: skipped (run: sshsendmail --test ADDRESS)");
    return 0;
  }
  return await runTest(s, values.test, ctx, "[5/5] ");
}

/** Step 1: the key pair (made unless there), handed to the service account. */
async function stepKey(
  s: ClientSettings,
  ctx: SetupContext,
  account: Account | undefined,
): Promise<string> {
  const key = await ensureKey(s.identity!, `sshsendmail@${ctx.hostname}`, account);
  const handed = account === undefined ? "" : await handKey(s.identity!, account, key.dirMade);
  const keyPrint = fingerprint(await sha256(blobOf(key.line) ?? ed25519Blob(new Uint8Array(32))));
  await ctx.say(
    `[1/5] key: ${key.made ? "created" : "kept"} ${s.identity} (ssh-ed25519 ${keyPrint})${handed}`,
  );
  return key.line;
}

/**
 * Step 2: the relay's host key, recorded and checked against --fingerprint
 * (or confirmed on a terminal); one refused is not kept.
 */
async function stepHostKey(
  plan: SetupPlan,
  ctx: SetupContext,
  account: Account | undefined,
): Promise<void> {
  const { s, expected } = plan;
  const before = await Deno.readTextFile(s.knownHosts!).catch(() => undefined);
  const prints = await recordHostKey(ctx, s, plan.target, account);
  await ctx.say(`[2/5] relay host key recorded in ${s.knownHosts}: ${prints.join(", ")}`);
  const matches = expected.length > 0 && prints.some((p) => expected.includes(p.split(" ")[1]!));
  const forget = async () => {
    if (before === undefined) await Deno.remove(s.knownHosts!).catch(() => {});
    else await Deno.writeTextFile(s.knownHosts!, before);
  };
  if (expected.length > 0 && !matches) {
    // Nothing is logged in to and nothing is kept: the key is not the relay's.
    await forget();
    throw new PolicyError(
      `setup: the relay's host key is not the one given with --fingerprint (got ${
        prints.join(", ")
      }); nothing was installed`,
      "5.7.0",
    );
  }
  if (matches) {
    await ctx.say("      matches --fingerprint");
    return;
  }
  await ctx.say("      compare on the relay: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub");
  if (!ctx.confirm) {
    await ctx.say("      (no terminal and no --fingerprint: not confirmed; pass --fingerprint)");
  } else if (!(await ctx.confirm("      Is this the relay's host key? [y/N] "))) {
    await forget();
    throw new PolicyError("setup: host key not confirmed; nothing was installed", "5.7.0");
  }
}

/** Step 3: the relay's authorized_keys line, printed or installed. */
async function stepAuthorize(plan: SetupPlan, ctx: SetupContext, keyLine: string): Promise<void> {
  const { values, relayUser } = plan;
  // (checked above with the relay's grammar)
  const authorized = `restrict,command="${plan.forced.join(" ")}" ${keyLine}`;
  const admin = values["install-with"];
  if (admin) {
    const where = await installKey(
      ctx,
      plan.s,
      plan.target,
      admin,
      relayUser,
      authorized,
      values["admin-identity"],
    );
    await ctx.say(`[3/5] authorized_keys line ${where} (through ${admin}@relay):`);
  } else {
    await ctx.say(`[3/5] add this line to ~${relayUser}/.ssh/authorized_keys on the relay:`);
  }
  await ctx.say(`      ${authorized}`);
}

/**
 * Step 4: setup's own lines of the config file. Only they change (the
 * packaged file is a conffile: dpkg keeps the admin's version of it); the
 * previous text is kept beside the key (a directory setup may write).
 */
async function stepConfig(s: ClientSettings, target: string, ctx: SetupContext): Promise<void> {
  const previous = await Deno.readTextFile(ctx.configFile).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new ConfigError(
      `cannot read ${ctx.configFile}: ${err instanceof Error ? err.message.split("\n")[0] : ""}`,
    );
  });
  const edit = editConfig(previous, setupValues(s, target));
  if (!edit.changed) {
    await ctx.say(`[4/5] config: ${ctx.configFile} already says so (unchanged)`);
    return;
  }
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
