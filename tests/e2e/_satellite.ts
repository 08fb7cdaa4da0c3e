/**
 * Satellite-side test fixtures: a second Postfix instance (`postfix-sat`,
 * made with postmulti) whose mail leaves through a pipe(8) transport running
 * dist/sshsendmail, a TCP gate that can take a relay "down" and bring it
 * back on the same port, and a private copy of Debian's nullmailer 2.2 run
 * inside a mount namespace beside Postfix; and what both deliver, split at
 * its first empty line.
 *
 * The relay Postfix and rsyslog are shared with other test files: nothing
 * here stops or reconfigures them.
 *
 * @module
 */

import assert from "node:assert/strict";
import { exists, ROOT, run, type RunResult, sleep } from "./_bed.ts";

const decoder = new TextDecoder();
const latin1 = new TextDecoder("latin1");

/** Splits a delivered message at its first empty line (header text as Latin-1, body bytes). */
export function split(raw: Uint8Array): { head: string; body: Uint8Array } {
  const text = latin1.decode(raw);
  const at = text.indexOf("\n\n");
  assert.ok(at > 0, "delivered message has no header/body separator");
  return { head: text.slice(0, at + 1), body: raw.subarray(at + 2) };
}

// ---------------------------------------------------------------------------
// TCP gate

/** A TCP forwarder on a fixed port of 127.0.0.1: close() takes the relay down. */
export interface Gate {
  /** The port clients connect to (stays the same across close/open). */
  port: number;
  /** Stops listening and cuts open connections: connections are refused. */
  close(): void;
  /** Listens again on the same port. */
  open(): void;
}

/** Opens a gate forwarding 127.0.0.1:port (a free one) to 127.0.0.1:target. */
export function openGate(target: number): Gate {
  let listener: Deno.Listener | undefined;
  const conns = new Set<Deno.Conn>();
  const closeQuietly = (c: Deno.Conn) => {
    conns.delete(c);
    try {
      c.close();
    } catch {
      // already closed
    }
  };
  const serve = async (l: Deno.Listener) => {
    try {
      for await (const client of l) {
        conns.add(client);
        Deno.connect({ hostname: "127.0.0.1", port: target }).then(async (upstream) => {
          conns.add(upstream);
          await Promise.race([
            client.readable.pipeTo(upstream.writable).catch(() => {}),
            upstream.readable.pipeTo(client.writable).catch(() => {}),
          ]);
          closeQuietly(client);
          closeQuietly(upstream);
        }, () => closeQuietly(client));
      }
    } catch {
      // listener closed
    }
  };
  const gate: Gate = {
    port: 0,
    open() {
      if (listener !== undefined) return;
      listener = Deno.listen({ hostname: "127.0.0.1", port: gate.port });
      gate.port = (listener.addr as Deno.NetAddr).port;
      serve(listener);
    },
    close() {
      listener?.close();
      listener = undefined;
      for (const c of [...conns]) closeQuietly(c);
    },
  };
  gate.open();
  return gate;
}

// ---------------------------------------------------------------------------
// Postfix satellite instance

/** One message in the satellite queue, as `postqueue -j` reports it. */
export interface QueueEntry {
  "queue_name": string;
  "queue_id": string;
  sender: string;
  recipients: { address: string; "delay_reason"?: string }[];
}

/**
 * A message Postfix holds for a later try, with the reason of the last one:
 * in deferred/, or back in incoming/ when a retry found the previous delivery
 * agent still holding the queue file (qmgr: "skipped, still being
 * delivered", 60 s). Either way it is queued, not bounced.
 */
export function waitingForRetry(e: QueueEntry): boolean {
  return (e.queue_name === "deferred" || e.queue_name === "incoming") &&
    Boolean(e.recipients[0]?.delay_reason);
}

/** The satellite Postfix instance. */
export interface Satellite {
  /** Its configuration directory ("/etc/postfix-sat"). */
  configDir: string;
  /** Its own log file (maillog_file). */
  log: string;
  /** Injects a message with the instance's sendmail(1); args follow `-C dir`. */
  sendmail(args: string[], message: string | Uint8Array): Promise<RunResult>;
  /** The queue (`postqueue -j`). */
  queue(): Promise<QueueEntry[]>;
  /** `postqueue -f`: retry every deferred message now. */
  flush(): Promise<void>;
  /** Polls the queue until `pred` holds; returns the queue then. */
  waitQueue(
    pred: (q: QueueEntry[]) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<QueueEntry[]>;
  /** Deletes every queued message. */
  purge(): Promise<void>;
  /** Log lines written since the last call. */
  newLog(): Promise<string[]>;
  /** Stops the instance. */
  stop(): Promise<void>;
}

const SAT = "postfix-sat";
const SAT_DIR = `/etc/${SAT}`;
const SAT_LOG = `/var/log/${SAT}.log`;
const BEGIN = "# rsm-sat transports (written by tests/e2e/_satellite.ts)";

/** Options of {@link startSatellite}. */
export interface SatelliteOptions {
  /** master.cf service lines (each `NAME unix - n n - - pipe …`), replacing earlier ones. */
  services: string[];
  /** main.cf default_transport (`service:nexthop`, or `service` with a relayhost). */
  defaultTransport: string;
  /** main.cf relayhost (the nexthop of a default_transport without one). */
  relayhost?: string;
  /** Domain → transport pairs for an inline transport map. */
  transports?: Record<string, string>;
  /** Sender (`@domain`) → transport pairs (sender_dependent_default_transport_maps). */
  senderTransports?: Record<string, string>;
}

function inlineMap(pairs: Record<string, string> | undefined): string {
  const entries = Object.entries(pairs ?? {});
  return entries.length ? `inline:{${entries.map(([k, v]) => `{${k}=${v}}`).join(",")}}` : "";
}

async function postconf(args: string[]): Promise<RunResult> {
  return await run("/usr/sbin/postconf", ["-c", SAT_DIR, ...args]);
}

async function satRunning(): Promise<boolean> {
  return (await run("/usr/sbin/postfix", ["-c", SAT_DIR, "status"], { check: false })).code === 0;
}

/**
 * Creates (once, with postmulti) and configures the `postfix-sat` instance:
 * no smtpd, nothing local (`mydestination =`), anyone may submit, short
 * retry times, its own log file; writes `services` into master.cf; starts or
 * reloads it. The instance stays disabled for postmulti, so a `postfix start`
 * of the primary instance never starts it.
 */
export async function startSatellite(opts: SatelliteOptions): Promise<Satellite> {
  if (!(await exists(`${SAT_DIR}/main.cf`))) {
    const multi = (await run("/usr/sbin/postconf", ["-h", "multi_instance_wrapper"])).stdout.trim();
    if (multi === "") await run("/usr/sbin/postmulti", ["-e", "init"]);
    await run("/usr/sbin/postmulti", ["-I", SAT, "-G", "sat", "-e", "create"]);
  }
  await postconf([
    "-e",
    "myhostname=sat.test",
    "mydomain=sat.test",
    "myorigin=$myhostname",
    "mydestination=",
    "local_recipient_maps=",
    "authorized_submit_users=static:anyone",
    "inet_interfaces=loopback-only",
    "master_service_disable=inet",
    `maillog_file=${SAT_LOG}`,
    `default_transport=${opts.defaultTransport}`,
    `relayhost=${opts.relayhost ?? ""}`,
    `transport_maps=${inlineMap(opts.transports)}`,
    `sender_dependent_default_transport_maps=${inlineMap(opts.senderTransports)}`,
    "queue_run_delay=1s",
    // 2 s, not 1: qmgr retries a deferred file whose mtime is at most 1 s
    // ahead at once, even while the delivery agent that just deferred it
    // still holds its lock; it then parks it in incoming/ for 60 s
    // ("skipped, still being delivered", qmgr_active.c).
    "minimal_backoff_time=2s",
    "maximal_backoff_time=5s",
    "delay_warning_time=0",
    "smtputf8_enable=no",
  ]);
  const master = await Deno.readTextFile(`${SAT_DIR}/master.cf`);
  const kept = master.split(`\n${BEGIN}\n`)[0]!.split("\n").map((line) =>
    // No smtpd on port 25: the relay instance owns 127.0.0.1:25.
    /^smtp\s+inet\s/.test(line) ? `#${line}` : line
  ).join("\n").replace(/\n*$/, "\n");
  await Deno.writeTextFile(
    `${SAT_DIR}/master.cf`,
    `${kept}\n${BEGIN}\n${opts.services.join("\n")}\n`,
  );
  const check = await run("/usr/sbin/postfix", ["-c", SAT_DIR, "check"], { check: false });
  if (check.code !== 0) throw new Error(`postfix-sat check failed: ${check.stderr}`);
  await Deno.writeTextFile(SAT_LOG, "", { append: true });
  let offset = (await Deno.stat(SAT_LOG)).size;
  if (await satRunning()) {
    // Running processes (an idle pipe(8) with the old argv) exit at their
    // earliest convenience (postfix(1)).
    await run("/usr/sbin/postfix", ["-c", SAT_DIR, "reload"]);
  } else {
    await run("/usr/lib/postfix/configure-instance.sh", [SAT_DIR]);
    await run("/usr/sbin/postfix", ["-c", SAT_DIR, "start"]);
  }

  const queue = async (): Promise<QueueEntry[]> => {
    const out = await run("/usr/sbin/postqueue", ["-c", SAT_DIR, "-j"]);
    return out.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as QueueEntry);
  };
  return {
    configDir: SAT_DIR,
    log: SAT_LOG,
    async sendmail(args, message) {
      return await run("/usr/sbin/sendmail", ["-C", SAT_DIR, ...args], {
        stdin: message,
        check: false,
      });
    },
    queue,
    async flush() {
      await run("/usr/sbin/postqueue", ["-c", SAT_DIR, "-f"]);
    },
    async waitQueue(pred, what, timeoutMs = 20000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const q = await queue();
        if (pred(q)) return q;
        if (Date.now() > deadline) {
          throw new Error(
            `satellite queue: ${what} not reached in ${timeoutMs} ms: ${JSON.stringify(q)}`,
          );
        }
        await sleep(100);
      }
    },
    async purge() {
      await run("/usr/sbin/postsuper", ["-c", SAT_DIR, "-d", "ALL"], { check: false });
    },
    async newLog() {
      const data = await Deno.readFile(SAT_LOG);
      const end = data.lastIndexOf(0x0a) + 1;
      if (end <= offset) return [];
      const text = decoder.decode(data.subarray(offset, end));
      offset = end;
      return text.split("\n").slice(0, -1);
    },
    async stop() {
      await run("/usr/sbin/postfix", ["-c", SAT_DIR, "stop"], { check: false });
    },
  };
}

// ---------------------------------------------------------------------------
// nullmailer 2.2 beside Postfix

/** Where Debian's nullmailer package is downloaded and unpacked (never installed). */
const NM_CACHE = `${ROOT}/.tmp/nullmailer`;

/** A private nullmailer: its files live in `dir`, its programs run in a mount namespace. */
export interface Nullmailer {
  /** Temp dir holding etc/, usrlib/, spool/. */
  dir: string;
  /** The spool as seen from outside (`queue/`, `failed/`, `tmp/`, `trigger`). */
  spool: string;
  /** Writes /etc/nullmailer/remotes (one line each). */
  setRemotes(lines: string[]): Promise<void>;
  /** Adds a protocol module /usr/lib/nullmailer/NAME (a script, or a symlink target). */
  addModule(name: string, script: string, symlink?: boolean): Promise<void>;
  /** Runs argv inside the namespace as root (e.g. nullmailer's /usr/sbin/sendmail). */
  run(argv: string[], stdin?: string | Uint8Array): Promise<RunResult>;
  /** One pass of nullmailer-send (pausetime 0) as user mail, like its systemd unit. */
  send(): Promise<RunResult>;
  /** File names in queue/ and failed/. */
  queued(): Promise<string[]>;
  failed(): Promise<string[]>;
  /** Empties queue/ and failed/. */
  clear(): Promise<void>;
  /** Removes dir. */
  remove(): Promise<void>;
}

async function nullmailerPackage(): Promise<string> {
  const pkg = `${NM_CACHE}/pkg`;
  if (await exists(`${pkg}/usr/sbin/nullmailer-send`)) return pkg;
  await Deno.mkdir(NM_CACHE, { recursive: true });
  // Debian's nullmailer conflicts with postfix: fetch the .deb, never install it.
  const dl = await run("/bin/sh", ["-c", `cd '${NM_CACHE}' && apt-get download nullmailer`], {
    check: false,
  });
  let deb: string | undefined;
  for await (const e of Deno.readDir(NM_CACHE)) {
    if (e.name.startsWith("nullmailer_") && e.name.endsWith(".deb")) deb = `${NM_CACHE}/${e.name}`;
  }
  if (deb === undefined) throw new Error(`cannot download nullmailer: ${dl.stderr}${dl.stdout}`);
  await run("/usr/bin/dpkg-deb", ["-x", deb, `${pkg}.part`]);
  await Deno.rename(`${pkg}.part`, pkg);
  return pkg;
}

/**
 * Prepares a private nullmailer 2.2 (Debian's package, unpacked): its
 * /etc/nullmailer, /usr/lib/nullmailer and /var/spool/nullmailer live in a
 * temp dir and are mounted over the real paths (read-only overlays, the
 * spool bound writable) inside `unshare -m` for each run, so Postfix on the
 * same machine is never touched. The spool is laid out as the package and its
 * tmpfiles.d entry make it: owner mail, queue/ and tmp/ 0750, a 0622 trigger
 * fifo. pausetime is 0: nullmailer-send makes one pass and exits.
 */
export async function prepareNullmailer(): Promise<Nullmailer> {
  const pkg = await nullmailerPackage();
  const dir = await Deno.makeTempDir({ prefix: "rsm-nm-" });
  await Deno.chmod(dir, 0o755);
  const spool = `${dir}/spool`;
  for (
    const d of [
      "etc/nullmailer",
      "usrlib/nullmailer",
      "spoolroot/nullmailer",
      "spool/queue",
      "spool/tmp",
      "spool/failed",
    ]
  ) {
    await Deno.mkdir(`${dir}/${d}`, { recursive: true });
  }
  await Deno.writeTextFile(`${dir}/etc/mailname`, "sat.test\n");
  await Deno.writeTextFile(`${dir}/etc/nullmailer/pausetime`, "0\n");
  await Deno.writeTextFile(`${dir}/etc/nullmailer/sendtimeout`, "60\n");
  await Deno.writeTextFile(`${dir}/etc/nullmailer/adminaddr`, "");
  await run("/usr/bin/mkfifo", [`${spool}/trigger`]);
  await run("/usr/bin/chown", ["-R", "mail:root", spool]);
  await Deno.chmod(`${spool}/queue`, 0o750);
  await Deno.chmod(`${spool}/tmp`, 0o750);
  await Deno.chmod(`${spool}/trigger`, 0o622);
  const nsScript = `${dir}/ns.sh`;
  await Deno.writeTextFile(
    nsScript,
    [
      "set -e",
      `mount -t overlay rsm-nm -o lowerdir=${dir}/etc:/etc /etc`,
      `mount -t overlay rsm-nm -o lowerdir=${dir}/usrlib:/usr/lib /usr/lib`,
      `mount -t overlay rsm-nm -o lowerdir=${pkg}/usr/sbin:/usr/sbin /usr/sbin`,
      `mount -t overlay rsm-nm -o lowerdir=${pkg}/usr/bin:/usr/bin /usr/bin`,
      `mount -t overlay rsm-nm -o lowerdir=${dir}/spoolroot:/var/spool /var/spool`,
      `mount --bind ${spool} /var/spool/nullmailer`,
      "cd /var/spool/nullmailer",
      'exec "$@"',
      "",
    ].join("\n"),
  );
  const inNamespace = (argv: string[], stdin?: string | Uint8Array) =>
    run("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", nsScript, ...argv], {
      check: false,
      ...(stdin === undefined ? {} : { stdin }),
    });
  const list = async (sub: string) => {
    const names: string[] = [];
    for await (const e of Deno.readDir(`${spool}/${sub}`)) names.push(e.name);
    return names.sort();
  };
  return {
    dir,
    spool,
    async setRemotes(lines) {
      const file = `${dir}/etc/nullmailer/remotes`;
      await Deno.writeTextFile(file, lines.map((l) => `${l}\n`).join(""));
      await run("/usr/bin/chown", ["mail:mail", file]);
      await Deno.chmod(file, 0o600);
    },
    async addModule(name, script, symlink = false) {
      const path = `${dir}/usrlib/nullmailer/${name}`;
      if (symlink) {
        await Deno.symlink(script, path);
      } else {
        await Deno.writeTextFile(path, script);
        await Deno.chmod(path, 0o755);
      }
    },
    run: inNamespace,
    send: () =>
      inNamespace([
        "/usr/bin/setpriv",
        "--reuid=mail",
        "--regid=mail",
        "--init-groups",
        "/usr/sbin/nullmailer-send",
      ]),
    queued: () => list("queue"),
    failed: () => list("failed"),
    async clear() {
      for (const sub of ["queue", "failed"]) {
        for (const n of await list(sub)) await Deno.remove(`${spool}/${sub}/${n}`);
      }
    },
    async remove() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
