/**
 * Helpers of the adversarial suite (tests/e2e/adversarial_*_test.ts): the
 * relay's and the client's one public line, a complete small message,
 * refusal assertions, process/socket inspection of one sshd's subtree, and
 * a relay whose /usr/sbin/sendmail is a scripted fake (test scaffolding
 * only, the product is unchanged). Relays, keys and ssh runs come from the
 * bed (./_bed.ts).
 *
 * Every daemon started here is stopped by its PID; the shared Postfix is
 * joined, never stopped; no rsyslogd is started (the suite's syslog cases
 * use private sockets through --syslog-socket).
 *
 * @module
 */

import assert from "node:assert/strict";
import { type NsRelay, procFile, run, type RunResult, startNsRelay } from "./_bed.ts";

/** One public line of the relay: `5.x.y rsendmail: text` (or 4.x.y). */
export const RELAY_LINE = /^[45]\.\d{1,3}\.\d{1,3} rsendmail: [^\n]+\n$/;
/** One public line of the client. */
export const CLIENT_LINE = /^[45]\.\d{1,3}\.\d{1,3} sshsendmail: [^\n]+\n$/;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

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

/**
 * PIDs of rsendmail processes whose forced command carries `label`. A poller
 * passes `known` to read each process's command line once (each read is a
 * cat(1), slow when the machine is busy).
 */
export async function relayPids(
  label: string,
  known: Map<number, boolean> = new Map(),
): Promise<number[]> {
  const out: number[] = [];
  for (const p of await procs()) {
    if (p.comm !== "deno") continue;
    let ours = known.get(p.pid);
    if (ours === undefined) {
      const cl = await cmdline(p.pid);
      ours = cl.includes("/dist/rsendmail") && cl.includes(`--label ${label}`);
      if (cl !== "") known.set(p.pid, ours);
    }
    if (ours) out.push(p.pid);
  }
  return out;
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

// ------------------------------------------------ a fake sendmail

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
