/**
 * The private sshd of sections 2 and 4 (tests/e2e/_bed.ts's startRelay):
 * its keys forced to ours and upstream's rsendmail, the bench account's
 * `~/.ssh/config` that names the relay for upstream's client, and the
 * closing of that account's ControlPersist masters.
 *
 * @module
 */

import { ensureUser, type Relay, run, startRelay } from "../tests/e2e/_bed.ts";
import { BENCH_USER, DIST_RSENDMAIL, UP_RSENDMAIL } from "./bench_common.ts";
import { asUser, type Spec } from "./bench_run.ts";

/** The private sshd, its keys and the bench account's ssh config, shared by sections 2 and 4. */
export interface SshBed {
  relay: Relay;
  home: string;
  sshDir: string;
  /** A command run as the bench account (setpriv), with extra environment. */
  asBench(cmd: string, args: string[], stdin?: Uint8Array, env?: Record<string, string>): Spec;
  /** Options pointing dist/sshsendmail at the relay with a key forced to dist/rsendmail. */
  oursFlags: string[];
  /** Closes the ControlPersist masters of the bench account (by their sockets). */
  closeMasters(): Promise<void>;
}

/** Starts the sshd, writes the bench account's ssh config, runs fn, stops the sshd. */
export async function withSshBed<T>(fn: (bed: SshBed) => Promise<T>): Promise<T> {
  const home = ensureUser(BENCH_USER, "/usr/sbin/nologin");
  const sshDir = `${home}/.ssh`;
  await Deno.mkdir(sshDir, { recursive: true, mode: 0o700 });
  await run("/usr/bin/chown", [`${BENCH_USER}:`, sshDir]);
  await Deno.chmod(sshDir, 0o700);
  const relay = await startRelay();
  const asBench = (cmd: string, args: string[], stdin?: Uint8Array, env?: Record<string, string>) =>
    asUser(BENCH_USER, home, cmd, args, stdin, env);
  const closeMasters = async () => {
    for await (const e of Deno.readDir(sshDir)) {
      if (!/^(sshsendmail|bench)-/.test(e.name)) continue;
      const s = asBench("/usr/bin/ssh", [
        "-S",
        `${sshDir}/${e.name}`,
        "-O",
        "exit",
        "bench-master",
      ]);
      await run(s.cmd, s.args, { check: false, env: s.env });
    }
  };
  try {
    const keyOurs = await relay.addKey(`restrict,command="${DIST_RSENDMAIL}"`, BENCH_USER);
    const keyUp = await relay.addKey(`restrict,command="${UP_RSENDMAIL}"`, BENCH_USER);
    const keyPlain = await relay.addKey("restrict", BENCH_USER);
    const hostBlock = (alias: string, key: string, reuse: boolean) => [
      `Host ${alias}`,
      "  HostName 127.0.0.1",
      `  Port ${relay.port}`,
      `  User ${relay.user}`,
      `  IdentityFile ${key}`,
      "  IdentitiesOnly yes",
      "  IdentityAgent none",
      `  UserKnownHostsFile ${relay.knownHosts}`,
      "  GlobalKnownHostsFile /dev/null",
      "  StrictHostKeyChecking yes",
      "  UpdateHostKeys no",
      "  BatchMode yes",
      "  LogLevel ERROR",
      ...(reuse
        ? ["  ControlMaster auto", "  ControlPath ~/.ssh/bench-%C", "  ControlPersist 60"]
        : []),
      "",
    ];
    await Deno.writeTextFile(
      `${sshDir}/config`,
      [
        `# written by scripts/bench_ssh_bed.ts for the relay on port ${relay.port}`,
        ...hostBlock("rsm-up", keyUp, false),
        ...hostBlock("rsm-up-reuse", keyUp, true),
        ...hostBlock("rsm-plain", keyPlain, false),
        ...hostBlock("rsm-plain-reuse", keyPlain, true),
      ].join("\n"),
    );
    await run("/usr/bin/chown", [`${BENCH_USER}:`, `${sshDir}/config`]);
    await Deno.chmod(`${sshDir}/config`, 0o600);
    const oursFlags = [
      "--host",
      `${relay.user}@${relay.host}`,
      "--port",
      String(relay.port),
      "--identity",
      keyOurs,
      "--known-hosts",
      relay.knownHosts,
    ];
    return await fn({ relay, home, sshDir, asBench, oursFlags, closeMasters });
  } finally {
    await closeMasters().catch(() => {});
    await relay.stop();
  }
}
