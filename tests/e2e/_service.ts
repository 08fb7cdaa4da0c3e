/**
 * Test bed for the satellite service: the real Postfix (relay MTA), a
 * private sshd whose key for the satellite forces dist/rsendmail, the
 * `sshsendmail` system account owning the key and a spool under a temp
 * dir, and the service started the way contrib/systemd/sshsendmail.service
 * starts it (its User= and ExecStart=, with dist/sshsendmail for
 * /usr/sbin/sshsendmail and `--config` for the temp config), detached with
 * start-stop-daemon and stopped by PID.
 *
 * Senders run as real local accounts (setpriv) through a `sendmail`
 * symlink, with SSHSENDMAIL_CONFIG naming the temp config.
 *
 * @module
 */

import {
  type Account,
  account,
  type Mailbox,
  pidAlive,
  type Relay,
  ROOT,
  RSENDMAIL,
  run,
  type RunResult,
  sleep,
  SSHSENDMAIL,
  startPostfix,
  startRelay,
  waitFor,
} from "./_bed.ts";

// scripts/bench_service.ts imports these two from here.
export { type Account, account };

/** The unit the packages install. */
export const UNIT = `${ROOT}/contrib/systemd/sshsendmail.service`;
/** A PATH like the one an SSH login or cron gives (no /usr/sbin for users). */
export const PATH = "/usr/local/bin:/usr/bin:/bin";

/** The unit's User= and the words of its ExecStart=. */
export async function unitCommand(): Promise<{ user: string; argv: string[]; env: string[] }> {
  const text = await Deno.readTextFile(UNIT);
  const user = /^User=(\S+)$/m.exec(text)?.[1];
  const exec = /^ExecStart=(.+)$/m.exec(text)?.[1];
  if (!user || !exec) throw new Error(`${UNIT} lacks User= or ExecStart=`);
  // Environment=A=1 B=2 (no quoting in our unit).
  const env = [...text.matchAll(/^Environment=(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  return { user, argv: exec.trim().split(/\s+/), env };
}

/** A running satellite service and what surrounds it. */
export interface ServiceBed {
  relay: Relay;
  /** The service account. */
  service: Account;
  /** Temp dir (0755): config, sendmail symlink, spool. */
  dir: string;
  spool: string;
  conf: string;
  /** `<dir>/sendmail`, a symlink to dist/sshsendmail. */
  sendmail: string;
  /** The satellite key (owned by the service account). */
  key: string;
  /** The relay's local domain, "relay.test". */
  domain: string;
  /** The relay Postfix's Maildir of a local account. */
  mailbox(user: string): Mailbox;
  /** Starts the service (again); resolves when `alive` is there. */
  start(): Promise<void>;
  /** Stops the service by PID (SIGTERM), waiting for it to exit. */
  stopService(): Promise<void>;
  /** PID of the running service. */
  pid(): number | undefined;
  /** Runs `sendmail ARGS` (or another argv) as `user` with the bed's config. */
  sendAs(user: Account, args: string[], stdin?: string | Uint8Array): Promise<RunResult>;
  /**
   * Starts what sendAs runs, without waiting: stdin piped (the caller writes
   * and closes it), stdout and stderr discarded. The child's pid is the
   * program's own (setpriv and env exec it), so a kill reaches it.
   */
  spawnAs(user: Account, args: string[]): Deno.ChildProcess;
  /** Rewrites the config (the service reads it at start). */
  writeConfig(extra?: string[], port?: number): Promise<void>;
  /**
   * Adds the relay's host key for another port of 127.0.0.1 (a proxy in
   * front of the relay, or the relay coming back there) to the bed's known_hosts.
   */
  trustPort(port: number): Promise<void>;
  /** Kills the service with SIGKILL (a crash: no cleanup), waiting until it is gone. */
  crash(): Promise<void>;
  /** Stops the service and the relay; removes the temp dir. */
  stop(): Promise<void>;
}

/** Options of {@link startServiceBed}. */
export interface ServiceBedOptions {
  /** Extra config lines. */
  extra?: string[];
  /** Relay key options (default `restrict,command="<rsendmail> --label sat"`). */
  keyOptions?: string;
  /** Do not start the service yet. */
  deferStart?: boolean;
}

/** Starts (or joins) Postfix, a private sshd, and the service. */
export async function startServiceBed(o: ServiceBedOptions = {}): Promise<ServiceBed> {
  const postfix = await startPostfix();
  const relay = await startRelay();
  const { user } = await unitCommand();
  const service = await account(user, true);
  const dir = await Deno.makeTempDir({ prefix: "rsm-svc-" });
  await Deno.chmod(dir, 0o755);
  const key = await relay.addKey(
    o.keyOptions ?? `restrict,command="${RSENDMAIL} --label sat"`,
    user,
  );
  const knownHosts = `${dir}/known_hosts`;
  await Deno.copyFile(relay.knownHosts, knownHosts);
  await Deno.chmod(knownHosts, 0o644);
  const spool = `${dir}/spool`;
  const conf = `${dir}/sshsendmail.conf`;
  const sendmail = `${dir}/sendmail`;
  await Deno.symlink(SSHSENDMAIL, sendmail);
  let pid: number | undefined;
  const pidFile = `${dir}/service.pid`;
  // The unit's DENO_DIR=/tmp/deno is safe under its PrivateTmp=yes; the bed
  // has no private /tmp, so Deno's caches go to a directory of the bed's own,
  // never a name in the shared /tmp that another account could make first.
  const denoDir = `${dir}/deno`;
  await Deno.mkdir(denoDir, { mode: 0o700 });
  await run("/usr/bin/chown", [`${service.uid}:${service.gid}`, denoDir]);

  const writeConfig = async (extra: string[] = [], port = relay.port) => {
    await Deno.writeTextFile(
      conf,
      [
        "# written by tests/e2e/_service.ts",
        `host = ${relay.host}`,
        `user = ${relay.user}`,
        `port = ${port}`,
        `identity = ${key}`,
        `known_hosts = ${knownHosts}`,
        `spool = ${spool}`,
        "domain = sat.test",
        "connect_timeout = 5",
        ...(o.extra ?? []),
        ...extra,
        "",
      ].join("\n"),
      { mode: 0o644 },
    );
  };
  await writeConfig();
  // As the packages do: root makes the spool (the top root's, the parts the account's).
  await run(SSHSENDMAIL, ["--init-spool", "--config", conf], { env: { PATH } });

  // Through cat(1) (pidAlive): Deno.stat of /proc/<pid> needs --allow-all,
  // and failing, made every stop return before the service had ended (its
  // last act, removing reply/alive, then raced the next service's start).
  const alive = () => pid === undefined ? Promise.resolve(false) : pidAlive(pid);

  /** setpriv's arguments for running `sendmail ARGS` (or another argv) as `user`. */
  const argvAs = (user: Account, args: string[]) => [
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    "--init-groups",
    "/usr/bin/env",
    "-i",
    `PATH=${PATH}`,
    `HOME=${user.home}`,
    `USER=${user.name}`,
    `LOGNAME=${user.name}`,
    "LANG=C.UTF-8",
    `SSHSENDMAIL_CONFIG=${conf}`,
    ...(args[0]?.startsWith("/") ? args : [sendmail, ...args]),
  ];

  const bed: ServiceBed = {
    relay,
    service,
    dir,
    spool,
    conf,
    sendmail,
    key,
    domain: postfix.domain,
    mailbox: (u) => postfix.mailbox(u),
    async start() {
      const { argv, env } = await unitCommand();
      const [exe, ...args] = argv;
      if (exe !== "/usr/sbin/sshsendmail") throw new Error(`unexpected ExecStart ${argv}`);
      await Deno.remove(`${spool}/reply/alive`).catch(() => {});
      await run("/usr/bin/env", [
        "-i",
        "PATH=/usr/bin:/bin",
        `HOME=${service.home}`,
        "LANG=C.UTF-8",
        ...env.map((e) => e.startsWith("DENO_DIR=") ? `DENO_DIR=${denoDir}` : e),
        "/sbin/start-stop-daemon",
        "--start",
        "--background",
        "--make-pidfile",
        "--pidfile",
        pidFile,
        "--chuid",
        `${service.name}:${service.name}`,
        "--umask",
        "077",
        "--output",
        `${dir}/service.out`,
        "--exec",
        SSHSENDMAIL,
        "--",
        ...args,
        "--config",
        conf,
      ]);
      // start-stop-daemon may return before its child wrote the pid file:
      // the service's own `alive` file holds its pid once it is up.
      const deadline = Date.now() + 10_000;
      for (;;) {
        const text = await Deno.readTextFile(`${spool}/reply/alive`).catch(() => "");
        if (/^\d+\n$/.test(text)) {
          pid = Number(text.trim());
          break;
        }
        if (Date.now() > deadline) {
          const out = await Deno.readTextFile(`${dir}/service.out`).catch(() => "");
          throw new Error(`the service did not start within 10 s: ${out}`);
        }
        await sleep(20);
      }
    },
    async stopService() {
      if (pid === undefined) return;
      try {
        Deno.kill(pid, "SIGTERM");
      } catch {
        // gone already
      }
      const deadline = Date.now() + 15_000;
      while (await alive()) {
        if (Date.now() > deadline) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* gone */ }
        }
        await sleep(20);
      }
      pid = undefined;
    },
    pid: () => pid,
    async sendAs(user, args, stdin) {
      return await run("/usr/bin/setpriv", argvAs(user, args), {
        check: false,
        ...(stdin === undefined ? {} : { stdin }),
      });
    },
    spawnAs(user, args) {
      return new Deno.Command("/usr/bin/setpriv", {
        args: argvAs(user, args),
        stdin: "piped",
        stdout: "null",
        stderr: "null",
      }).spawn();
    },
    writeConfig,
    async trustPort(port) {
      const line = (await Deno.readTextFile(relay.knownHosts)).split("\n")[0]!;
      const key = line.split(" ").slice(1).join(" ");
      await Deno.writeTextFile(knownHosts, `[127.0.0.1]:${port} ${key}\n`, { append: true });
    },
    async crash() {
      if (pid === undefined) return;
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
      await waitFor("the killed service to be gone", async () => !(await alive()));
      pid = undefined;
    },
    async stop() {
      await bed.stopService();
      await relay.stop();
      if (!Deno.env.get("RSM_KEEP")) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  if (!o.deferStart) await bed.start();
  return bed;
}

/** Files of a directory (names), or [] when it cannot be read. */
export async function names(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  } catch {
    return [];
  }
}
