/**
 * Helpers of the adversarial suite (tests/e2e/adversarial_*_test.ts): ssh
 * runs against a relay, held-open sessions, relays whose sshd lives in its
 * own mount namespace (a fake /usr/sbin/sendmail, a tiny /tmp, no
 * sendmail at all: test scaffolding only, the product is unchanged), and
 * process/socket inspection of one sshd's subtree.
 *
 * Every daemon started here is stopped by its PID; the shared Postfix is
 * joined, never stopped; no rsyslogd is started (the suite's syslog cases
 * use private sockets through --syslog-socket).
 *
 * @module
 */

import assert from "node:assert/strict";
import { ensureUser, run, type RunResult } from "./_bed.ts";
import { quoteWords } from "../../lib/shared/words.ts";

/** The built relay. */
export const RSENDMAIL = new URL("../../dist/rsendmail", import.meta.url).pathname;
/** The built client. */
export const SSHSENDMAIL = new URL("../../dist/sshsendmail", import.meta.url).pathname;
/** One public line of the relay: `5.x.y rsendmail: text` (or 4.x.y). */
export const RELAY_LINE = /^[45]\.\d{1,3}\.\d{1,3} rsendmail: [^\n]+\n$/;
/** One public line of the client. */
export const CLIENT_LINE = /^[45]\.\d{1,3}\.\d{1,3} sshsendmail: [^\n]+\n$/;

const decoder = new TextDecoder();
const encoder = new TextEncoder();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Something that speaks ssh to a relay: the bed's Relay or an NsRelay. */
export interface SshTarget {
  port: number;
  knownHosts: string;
  dir: string;
  sshArgv(identity: string): string[];
  addKey(options: string): Promise<string>;
}

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
  target: SshTarget,
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
  target: SshTarget,
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

/** A complete small message whose Subject and body carry `tok`. */
export function message(tok: string, to = "rsmadv1@relay.test", body?: string): Uint8Array {
  return encoder.encode(
    [
      "From: Adversary <adv@relay.test>",
      `To: ${to}`,
      "Date: Wed, 25 Nov 2026 12:00:00 +0000",
      `Message-ID: <${crypto.randomUUID()}@relay.test>`,
      `Subject: ${tok}`,
      "",
      body ?? `body of ${tok}\n.\nafter a lone dot\n`,
    ].join("\n"),
  );
}

/** SHA-256 of bytes, lower-case hex. */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(data)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Asserts a refusal: `code`, empty stdout, exactly one relay line with `status`. */
export function assertRelayRefused(res: RunResult, code: number, status: RegExp, what: string) {
  assert.equal(res.code, code, `${what}: exit ${res.code}, stderr ${JSON.stringify(res.stderr)}`);
  assert.equal(res.stdout, "", `${what}: stdout must stay empty`);
  assert.match(res.stderr, RELAY_LINE, `${what}: exactly one line: ${JSON.stringify(res.stderr)}`);
  assert.match(res.stderr, status, `${what}: ${res.stderr}`);
}

/** Asserts a silent success. */
export function assertSilent(res: RunResult, what: string) {
  assert.deepEqual(
    { code: res.code, stdout: res.stdout, stderr: res.stderr },
    { code: 0, stdout: "", stderr: "" },
    `${what}: a delivery exits 0 silently`,
  );
}

/** True when `path` exists (even as a dangling link). */
export async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** `/tmp/rsendmail-*` names (the relay's spool must never leave one). */
export async function spoolNames(dir = "/tmp"): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.startsWith("rsendmail-")) names.push(e.name);
  return names;
}

// ------------------------------------------------------------ processes

interface Proc {
  pid: number;
  ppid: number;
  comm: string;
  uid: number;
}

/** Every live process (ps: Deno reads /proc only with --allow-all). */
async function procs(): Promise<Proc[]> {
  const res = await run("/usr/bin/ps", ["-e", "-o", "pid=,ppid=,uid=,stat=,comm="], {
    check: false,
  });
  const out: Proc[] = [];
  for (const line of res.stdout.split("\n")) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/.exec(line);
    if (!m || m[4]!.startsWith("Z")) continue;
    out.push({ pid: Number(m[1]), ppid: Number(m[2]), uid: Number(m[3]), comm: m[5]!.trim() });
  }
  return out;
}

async function procFile(pid: number, name: string): Promise<Uint8Array> {
  const out = await new Deno.Command("/bin/cat", {
    args: [`/proc/${pid}/${name}`],
    stdout: "piped",
    stderr: "null",
  }).output();
  return out.stdout;
}

/** Every live process below `root` (not root itself). */
export async function descendants(root: number): Promise<Proc[]> {
  const all = await procs();
  const below = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) {
      if (!below.has(p.pid) && below.has(p.ppid)) {
        below.add(p.pid);
        grew = true;
      }
    }
  }
  return all.filter((p) => p.pid !== root && below.has(p.pid));
}

/** The full command line of a process ("" when gone). */
export async function cmdline(pid: number): Promise<string> {
  const raw = await procFile(pid, "cmdline");
  return decoder.decode(raw).replaceAll("\0", " ").trim();
}

/** The environment variable names of a process. */
export async function environNames(pid: number): Promise<string[]> {
  const raw = await procFile(pid, "environ");
  return decoder.decode(raw).split("\0").filter(Boolean).map((kv) => kv.split("=")[0]!);
}

/** Peak RSS (VmHWM) of a process in KiB, or 0 when gone. */
export async function peakRssKiB(pid: number): Promise<number> {
  const status = decoder.decode(await procFile(pid, "status"));
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
}

/** PIDs of rsendmail processes whose forced command carries `label`. */
export async function relayPids(label: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await procs()) {
    if (p.comm !== "deno") continue;
    const cl = await cmdline(p.pid);
    if (cl.includes("/dist/rsendmail") && cl.includes(`--label ${label}`)) out.push(p.pid);
  }
  return out;
}

/** The PID of a bed relay's sshd listener. */
export async function sshdPid(target: { dir: string }): Promise<number> {
  return Number((await Deno.readTextFile(`${target.dir}/sshd.pid`)).trim());
}

/** Listening TCP/UDP/unix sockets (ss lines) held by any of `pids`. */
export async function listenersOf(pids: readonly number[]): Promise<string[]> {
  if (pids.length === 0) return [];
  const res = await run("/usr/bin/ss", ["-lntuxpH"], { check: false });
  const want = new Set(pids);
  return res.stdout.split("\n").filter((l) => {
    for (const m of l.matchAll(/pid=(\d+)/g)) if (want.has(Number(m[1]))) return true;
    return false;
  });
}

/** Process names a session of the relay may run: sshd, the relay, logger, Postfix's sendmail. */
const ALLOWED_COMMS = new Set(["sshd", "deno", "logger", "sendmail", "postdrop", "sh"]);

/**
 * Fails if anything below the sshd listener `root` runs a program other
 * than the relay's own (a shell `sh` is sshd's way of running the forced
 * command; its child must then be the relay) or listens on a socket.
 */
export async function assertOnlyMail(root: number, what: string): Promise<void> {
  const below = await descendants(root);
  for (const p of below) {
    assert.ok(
      ALLOWED_COMMS.has(p.comm),
      `${what}: unexpected process ${p.comm} (${await cmdline(p.pid)})`,
    );
    if (p.comm === "deno") {
      assert.match(
        await cmdline(p.pid),
        /\/dist\/rsendmail /,
        `${what}: a deno that is not the relay`,
      );
    }
  }
  const listening = await listenersOf(below.map((p) => p.pid));
  assert.deepEqual(listening, [], `${what}: a relay session listens`);
}

// ------------------------------------------------ relays in a namespace

/** A private sshd in its own mount namespace (files under /var/tmp). */
export interface NsRelay extends SshTarget {
  pid: number;
  /** Runs argv inside the relay's mount namespace (as root). */
  inside(argv: string[]): Promise<RunResult>;
  stop(): Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Starts sshd (account rsmrelay, like the bed) inside `unshare -m` after
 * running `setup` (a /bin/sh snippet of mounts) in that namespace: test
 * scaffolding that changes what the relay's sessions see without touching
 * the machine. Its files live outside /tmp, so a tmpfs over /tmp in the
 * namespace hides none of them.
 */
export async function startNsRelay(setup: (dir: string) => string): Promise<NsRelay> {
  ensureUser("rsmrelay", "/bin/sh");
  await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "rsm-adv-ns-" });
  await Deno.chmod(dir, 0o711);
  const hostKey = `${dir}/host_key`;
  await run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKey]);
  const authorizedKeys = `${dir}/authorized_keys`;
  await Deno.writeTextFile(authorizedKeys, "");
  await Deno.chmod(authorizedKeys, 0o644);
  const pub = (await Deno.readTextFile(`${hostKey}.pub`)).trim().split(" ");
  const pidFile = `${dir}/sshd.pid`;
  const log = `${dir}/sshd.log`;
  const knownHosts = `${dir}/known_hosts`;
  let port = 0;
  let pid = 0;
  for (let attempt = 0; pid === 0; attempt++) {
    port = freePort();
    await Deno.writeTextFile(
      `${dir}/sshd_config`,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${hostKey}`,
        `PidFile ${pidFile}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        "AuthorizedPrincipalsFile none",
        "AllowUsers rsmrelay",
        "PermitRootLogin no",
        "StrictModes no",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitUserEnvironment no",
        "X11Forwarding no",
        "PrintMotd no",
        "UseDNS no",
        "LogLevel VERBOSE",
        "MaxStartups 100",
        "MaxSessions 100",
        "",
      ].join("\n"),
    );
    await Deno.writeTextFile(knownHosts, `[127.0.0.1]:${port} ${pub[0]} ${pub[1]}\n`);
    await Deno.chmod(knownHosts, 0o644);
    await run("/usr/bin/unshare", [
      "-m",
      "--propagation",
      "private",
      "--",
      "/bin/sh",
      "-ec",
      `${setup(dir)}\nexec /usr/sbin/sshd -f ${dir}/sshd_config -E ${log}`,
    ]);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const text = await Deno.readTextFile(pidFile).catch(() => "");
      if (Number(text) > 0) {
        pid = Number(text);
        break;
      }
      await sleep(20);
    }
    if (pid === 0 && attempt >= 3) {
      throw new Error(
        `namespace sshd did not start: ${await Deno.readTextFile(log).catch(() => "")}`,
      );
    }
  }
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    const ok = await Deno.connect({ hostname: "127.0.0.1", port }).then((c) => {
      c.close();
      return true;
    }, () => false);
    if (ok) break;
    await sleep(20);
  }
  let keys = 0;
  return {
    pid,
    port,
    dir,
    knownHosts,
    async addKey(options: string): Promise<string> {
      const key = `${dir}/client_key_${++keys}`;
      await run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
      const pubKey = (await Deno.readTextFile(`${key}.pub`)).trim();
      await Deno.writeTextFile(authorizedKeys, `${options} ${pubKey}\n`, { append: true });
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
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        "-p",
        String(port),
        "rsmrelay@127.0.0.1",
      ];
    },
    inside(argv: string[]): Promise<RunResult> {
      return run("/usr/bin/nsenter", [`--mount=/proc/${pid}/ns/mnt`, "--", ...argv], {
        check: false,
      });
    },
    async stop(): Promise<void> {
      try {
        Deno.kill(pid, "SIGTERM");
      } catch {
        // gone
      }
      for (let i = 0; i < 100; i++) {
        const stat = decoder.decode(await procFile(pid, "stat"));
        if (stat === "" || stat.includes(") Z")) break;
        await sleep(20);
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** What the fake sendmail recorded for one run. */
export interface SendmailRecord {
  /** argv after the program name, as raw bytes. */
  argv: Uint8Array[];
  /** Its stdin. */
  message: Uint8Array;
  /** Its environment (`env` output). */
  env: string;
}

/** A relay whose /usr/sbin/sendmail (in its namespace only) is a scripted fake. */
export interface FakeSendmailRelay extends NsRelay {
  /** Every run recorded so far (recipients not starting with a behaviour word). */
  records(): Promise<SendmailRecord[]>;
}

/**
 * The fake sendmail (test scaffolding, /bin/sh): the first recipient's
 * local part picks a broken behaviour; any other run is recorded (argv
 * NUL-separated, environment, stdin) and succeeds.
 */
const FAKE_SENDMAIL = (rec: string) =>
  `#!/bin/sh
for last; do :; done
case "$last" in
exit75@*) cat >/dev/null; echo "postdrop: warning: mail_queue_enter: create file maildrop/x: No space left on device" >&2; exit 75 ;;
exit1@*) cat >/dev/null; echo "sendmail: fatal: something odd" >&2; exit 1 ;;
killed@*) head -c 100 >/dev/null; kill -9 $$ ;;
hang@*) cat >/dev/null; sleep 20; exit 0 ;;
hangnoread@*) sleep 20; exit 0 ;;
esac
f=$(mktemp ${rec}/m.XXXXXXXX)
printf '%s\\0' "$@" > "$f.argv"
env > "$f.env"
cat > "$f.msg"
mv "$f" "$f.done"
exit 0
`;

/** Starts a relay whose sessions see the fake sendmail at /usr/sbin/sendmail. */
export async function startFakeSendmailRelay(): Promise<FakeSendmailRelay> {
  let recDir = "";
  const relay = await startNsRelay((dir) => {
    recDir = `${dir}/rec`;
    return [
      `mkdir -m 1777 ${recDir}`,
      `cat > ${dir}/fake-sendmail <<'FAKE'\n${FAKE_SENDMAIL(recDir)}FAKE`,
      `chmod 755 ${dir}/fake-sendmail`,
      `mount --bind ${dir}/fake-sendmail /usr/sbin/sendmail`,
    ].join("\n");
  });
  return {
    ...relay,
    async records(): Promise<SendmailRecord[]> {
      const out: SendmailRecord[] = [];
      for await (const e of Deno.readDir(recDir)) {
        if (!e.name.endsWith(".done")) continue;
        const base = `${recDir}/${e.name.slice(0, -5)}`;
        const raw = await Deno.readFile(`${base}.argv`);
        const argv: Uint8Array[] = [];
        let at = 0;
        for (let i = 0; i < raw.length; i++) {
          if (raw[i] === 0) {
            argv.push(raw.slice(at, i));
            at = i + 1;
          }
        }
        out.push({
          argv,
          message: await Deno.readFile(`${base}.msg`),
          env: await Deno.readTextFile(`${base}.env`),
        });
      }
      return out;
    },
  };
}
