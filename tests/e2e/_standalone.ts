/**
 * Helpers for the standalone-mode end-to-end tests: a relay (real sshd with
 * a forced-command key and a plain key) in front of the real Postfix, a temp
 * dir holding a `sendmail` symlink to dist/sshsendmail and its config files;
 * delivered messages split into headers and body; the real cron daemon as
 * a sender.
 *
 * @module
 */

import {
  inMountNamespace,
  type Mailbox,
  type Relay,
  RSENDMAIL,
  SSHSENDMAIL,
  startPostfix,
  startRelay,
} from "./_bed.ts";

const decoder = new TextDecoder();

/** A relay plus a satellite-side temp dir with a `sendmail` symlink. */
export interface Standalone {
  relay: Relay;
  /** Maildir of this file's own local account on the relay. */
  box: Mailbox;
  /** Its address: `<user>@relay.test`. */
  rcpt: string;
  /** Temp dir of the satellite side. */
  dir: string;
  /** `<dir>/sendmail`, a symlink to dist/sshsendmail. */
  sendmail: string;
  /** Private key whose authorized_keys line forces `command="<dist>/rsendmail"`. */
  forcedKey: string;
  /** Private key with no options: sshd runs the account's shell with the command. */
  plainKey: string;
  /**
   * Writes `<dir>/<name>.conf` for a key (the relay's user, port and
   * known_hosts; host 127.0.0.1 unless `hosts` is given) plus extra
   * `key = value` lines (a later single-valued key wins); returns its path.
   */
  config(name: string, key: string, extra?: string[], hosts?: string[]): Promise<string>;
  /** Stops the relay's sshd and removes the temp dir (Postfix keeps running). */
  stop(): Promise<void>;
}

/** Starts (or joins) the shared Postfix, a private sshd and a satellite dir. */
export async function startStandalone(account: string): Promise<Standalone> {
  const postfix = await startPostfix();
  const box = postfix.mailbox(account);
  const relay = await startRelay();
  const forcedKey = await relay.addKey(`restrict,command="${RSENDMAIL}"`);
  const plainKey = await relay.addKey("");
  const dir = await Deno.makeTempDir({ prefix: "rsm-standalone-" });
  const sendmail = `${dir}/sendmail`;
  await Deno.symlink(SSHSENDMAIL, sendmail);
  return {
    relay,
    box,
    rcpt: `${account}@${postfix.domain}`,
    dir,
    sendmail,
    forcedKey,
    plainKey,
    async config(
      name: string,
      key: string,
      extra: string[] = [],
      hosts: string[] = [relay.host],
    ): Promise<string> {
      const path = `${dir}/${name}.conf`;
      await Deno.writeTextFile(
        path,
        [
          "# written by tests/e2e/_standalone.ts",
          ...hosts.map((h) => `host = ${h}`),
          `user = ${relay.user}`,
          `port = ${relay.port}`,
          `identity = ${key}`,
          `known_hosts = ${relay.knownHosts}`,
          // These tests watch direct delivery and its failures; the offline
          // queue (which turns a failure into a silent 0) has its own tests.
          "queue = no",
          ...extra,
          "",
        ].join("\n"),
      );
      return path;
    },
    async stop(): Promise<void> {
      await relay.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * The words of `sshsendmail setup` against a bed relay: key and known_hosts
 * under `<dir>/keys`, dist/rsendmail as the forced command, the line
 * installed over the relay account's own login with the `admin` key.
 */
export function setupArgs(relay: Relay, dir: string, admin: string): string[] {
  return [
    "setup",
    "--host",
    `${relay.user}@${relay.host}`,
    "--port",
    String(relay.port),
    "--identity",
    `${dir}/keys/id_ed25519`,
    "--known-hosts",
    `${dir}/keys/known_hosts`,
    "--rsendmail",
    RSENDMAIL,
    "--install-with",
    relay.user,
    "--admin-identity",
    admin,
  ];
}

/** A delivered message split at its first empty line. */
export interface Parsed {
  headers: string;
  body: string;
  /** Unfolded values of every header with this name (case-insensitive). */
  header(name: string): string[];
}

/** Splits a delivered message into headers and body. */
export function parseMessage(text: string): Parsed {
  const end = text.indexOf("\n\n");
  const headers = end < 0 ? text : text.slice(0, end + 1);
  const body = end < 0 ? "" : text.slice(end + 2);
  return {
    headers,
    body,
    header(name: string): string[] {
      const unfolded = headers.replace(/\n[ \t]+/g, " ");
      const prefix = `${name.toLowerCase()}:`;
      return unfolded.split("\n")
        .filter((l) => l.toLowerCase().startsWith(prefix))
        .map((l) => l.slice(prefix.length).trim());
    },
  };
}

/** Decodes bytes as UTF-8. */
export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * True when the relay's Postfix received the message from `sendmail` run by
 * the account with this uid, i.e. through rsendmail on the relay, not from a
 * local sendmail run by the test itself (root).
 */
export function viaRelay(msg: Parsed, uid: number): boolean {
  const first = msg.header("Received")[0] ?? "";
  return first.startsWith(`by relay.test (Postfix, from userid ${uid})`);
}

/**
 * Makes `ns` a tree for {@link spawnCron}: empty `run/`, `cron.d/` and
 * `crontabs/` (0755) and an empty `crontab` (0644).
 */
export async function makeCronTree(ns: string): Promise<void> {
  for (const d of ["run", "cron.d", "crontabs"]) {
    await Deno.mkdir(`${ns}/${d}`, { recursive: true, mode: 0o755 });
  }
  await Deno.writeTextFile(`${ns}/crontab`, "", { mode: 0o644 });
}

/**
 * Starts the real cron daemon in a private mount namespace: its sendmail
 * (/usr/sbin/sendmail, compiled in) is `sendmail` bind-mounted over it;
 * /etc/cron.d, /etc/crontab and the user crontabs come from `ns`
 * (`cron.d/`, `crontab`, `crontabs/`), and a private /run (`ns/run`) makes
 * cron take this start for a boot, so @reboot jobs run at once. cron hands
 * its own environment (`env`), not the crontab's, to the mailer. The caller
 * kills it (SIGTERM) and awaits its output; {@link whileCron} does both.
 */
export function spawnCron(
  ns: string,
  sendmail: string,
  env: Record<string, string>,
): Deno.ChildProcess {
  const script = [
    `mount --bind ${ns}/run /run`,
    `mount --bind ${ns}/cron.d /etc/cron.d`,
    `mount --bind ${ns}/crontab /etc/crontab`,
    `mount --bind ${ns}/crontabs /var/spool/cron/crontabs`,
    `mount --bind ${sendmail} /usr/sbin/sendmail`,
    "exec /usr/sbin/cron -f -L 15",
  ].join("\n");
  const [unshare, ...args] = inMountNamespace(script);
  return new Deno.Command(unshare!, {
    args,
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * Runs cron as {@link spawnCron} does while `until` runs, then stops it
 * (SIGTERM) and returns what `until` returned and cron's output. The pipes
 * close when cron and its mailer (which writes to cron's stdout/stderr)
 * have both finished.
 */
export async function whileCron<T>(
  ns: string,
  sendmail: string,
  env: Record<string, string>,
  until: () => Promise<T>,
): Promise<[T, Deno.CommandOutput]> {
  const cron = spawnCron(ns, sendmail, env);
  const output = cron.output();
  let value: T;
  try {
    value = await until();
  } finally {
    try {
      cron.kill("SIGTERM");
    } catch {
      // already gone
    }
  }
  return [value, await output];
}
