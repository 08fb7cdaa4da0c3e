/**
 * Helpers for the standalone-mode end-to-end tests: a relay (real sshd with
 * a forced-command key and a plain key) in front of the real Postfix, a temp
 * dir holding a `sendmail` symlink to dist/sshsendmail and its config files,
 * and Maildir lookups by a unique token (other tests share Postfix, so a
 * message is found by what it holds, never by arrival order).
 *
 * @module
 */

import { type Mailbox, type Relay, startPostfix, startRelay } from "./_bed.ts";

/** Absolute path of the built client. */
export const SSHSENDMAIL = new URL("../../dist/sshsendmail", import.meta.url).pathname;
/** Absolute path of the built relay side. */
export const RSENDMAIL = new URL("../../dist/rsendmail", import.meta.url).pathname;

const decoder = new TextDecoder();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

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

/** A fresh token to find one message among others in a shared Maildir. */
export function token(label: string): string {
  return `${label}-${crypto.randomUUID().slice(0, 12)}`;
}

async function findToken(box: Mailbox, needle: string): Promise<string | undefined> {
  let entries: Deno.DirEntry[] = [];
  try {
    entries = await Array.fromAsync(Deno.readDir(`${box.dir}/new`));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  for (const e of entries) {
    if (!e.isFile) continue;
    const path = `${box.dir}/new/${e.name}`;
    const text = await Deno.readTextFile(path).catch(() => "");
    if (text.includes(needle)) {
      await Deno.remove(path).catch(() => {});
      return text;
    }
  }
  return undefined;
}

/**
 * Waits for the message holding `needle` in box's Maildir/new, removes it
 * and returns its text. Throws after timeoutMs.
 */
export async function takeByToken(
  box: Mailbox,
  needle: string,
  timeoutMs = 15000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const text = await findToken(box, needle);
    if (text !== undefined) return text;
    if (Date.now() > deadline) {
      throw new Error(`no mail holding ${needle} for ${box.user} within ${timeoutMs} ms`);
    }
    await sleep(50);
  }
}

/** Throws if a message holding `needle` is (or shows up within ms) in box. */
export async function expectNoToken(box: Mailbox, needle: string, ms = 1500): Promise<void> {
  const deadline = Date.now() + ms;
  while (true) {
    const text = await findToken(box, needle);
    if (text !== undefined) {
      throw new Error(`unexpected mail for ${box.user}: ${text.slice(0, 400)}`);
    }
    if (Date.now() >= deadline) return;
    await sleep(50);
  }
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

/** Numeric uid of a local account (via getent). */
export async function uidOf(user: string): Promise<number> {
  const out = await new Deno.Command("/usr/bin/getent", { args: ["passwd", user] }).output();
  const uid = Number(decoder.decode(out.stdout).split(":")[2]);
  if (!out.success || !Number.isInteger(uid)) throw new Error(`no account ${user}`);
  return uid;
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
 * Starts the real cron daemon in a private mount namespace: its sendmail
 * (/usr/sbin/sendmail, compiled in) is `sendmail` bind-mounted over it;
 * /etc/cron.d, /etc/crontab and the user crontabs come from `ns`
 * (`cron.d/`, `crontab`, `crontabs/`), and a private /run (`ns/run`) makes
 * cron take this start for a boot, so @reboot jobs run at once. cron hands
 * its own environment (`env`), not the crontab's, to the mailer. The caller
 * kills it (SIGTERM) and awaits its output.
 */
export function spawnCron(
  ns: string,
  sendmail: string,
  env: Record<string, string>,
): Deno.ChildProcess {
  const script = [
    "set -e",
    `mount --bind ${ns}/run /run`,
    `mount --bind ${ns}/cron.d /etc/cron.d`,
    `mount --bind ${ns}/crontab /etc/crontab`,
    `mount --bind ${ns}/crontabs /var/spool/cron/crontabs`,
    `mount --bind ${sendmail} /usr/sbin/sendmail`,
    "exec /usr/sbin/cron -f -L 15",
  ].join("\n");
  return new Deno.Command("/usr/bin/unshare", {
    args: ["-m", "--propagation", "private", "/bin/sh", "-c", script],
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}
