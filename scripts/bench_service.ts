/**
 * The "Satellite service" section of `deno task bench` (issue 11), all in
 * one run on the bed of tests/e2e/_service.ts: the real Postfix, a private
 * sshd whose satellite key forces dist/rsendmail, and `sshsendmail --serve`
 * started as its unit starts it (its account, start-stop-daemon).
 *
 * 1. The submitter: `sendmail rcpt < ~1 KB` from spawn to exit (the service
 *    running), as a non-root user through setpriv and as root, vs an empty
 *    script with the same Deno and flags (sshsendmail's own shebang, and a
 *    bare `deno run -q --no-config`), round-robin; medians and p95.
 * 2. Submit → relay accepted, the service warm (its batch session open from
 *    the message before), messages sent one after another. "Accepted" is
 *    measured outside the service: the relay's rsendmail writes each
 *    delivered message id into its duplicate record
 *    (`/var/tmp/rsendmail-<relay uid>/<label>/<id>`, lib/relay/dedup_io.ts) right
 *    after its sendmail exited; the bench watches that directory
 *    (Deno.watchFs) and timestamps each new id; the stages in between are
 *    seen the same way (drop/, incoming/, queue/new/, the relay's
 *    `<id>.lock`). Beside it, every 5th warm message, one cold send of
 *    upstream 1.1.4 (its client over ssh to its server) and one of ours with
 *    `queue = no` (the caller's key, no service), spawn → exit.
 * 3. A burst: 5 users × 100 messages, each user's sends one after another,
 *    the users at once; first spawn → last relay acceptance. The same
 *    number of drops written at once by the bench shows the service and the
 *    relay alone. Floors: the
 *    relay's `/usr/sbin/sendmail -oi` run 500 times serially (what the
 *    relay's batch does per message), and 500 empty scripts under
 *    sshsendmail's shebang as the same 5 users at once (the submitters'
 *    start-up alone).
 * 4. The service's VmRSS/VmHWM (/proc/<pid>/status) across 5 000 messages
 *    in one lifetime (the service restarted first), sampled when 500, 1 000,
 *    2 000 … 5 000 were accepted by the relay. To keep this phase about the
 *    service, the bench writes these drops itself exactly as the submitter
 *    does (`t<hex>` with the JSON words line, owned by one of the 5 users,
 *    0644, renamed to `d<hex>`), keeping at most `RSS_WINDOW` unaccepted.
 *    The relay delivers them through the real Postfix (the build grants
 *    rsendmail /usr/sbin/sendmail only, so it cannot point at a fake).
 *
 * Every message carries a unique tag and must arrive in the Maildir exactly
 * once (checked afterwards, like the other sections).
 *
 * @module
 */

import { ensureUser, run, startPostfix } from "../tests/e2e/_bed.ts";
import { type Account, account, type ServiceBed, startServiceBed } from "../tests/e2e/_service.ts";
import { dropHex, encodeDropHeader } from "../lib/client/drop.ts";
import {
  baseEnv,
  BENCH_USER,
  collectMail,
  deliveryTable,
  DIST_RSENDMAIL,
  DIST_SSHSENDMAIL,
  encoder,
  fmt,
  LOGIN_PATH,
  type MailGroup,
  makeMessage,
  progress,
  quantile,
  ROOT,
  type Sample,
  SENDER,
  SENDMAIL,
  sleep,
  type Spec,
  table,
  timeOnce,
  UP_RSENDMAIL,
  UP_SSHSENDMAIL,
} from "./bench_common.ts";

/** Goals of issue 11. */
const GOALS = { latencyMedianMs: 60, burstRate: 100, rssMiB: 64, rssGrowth: 0.1 };
/** The five submitting users of the burst and the RSS phase. */
const USERS = ["rsmbsvc1", "rsmbsvc2", "rsmbsvc3", "rsmbsvc4", "rsmbsvc5"];
/** Drops written but not yet accepted by the relay, at most, in the RSS phase. */
const RSS_WINDOW = 64;
/** Where the RSS is sampled (messages accepted by the relay). */
const RSS_MARKS = [500, 1000, 2000, 3000, 4000, 5000];
const ID_RE = /^m[0-9a-f]{32}$/;

/** Options of the service section (`--service-*` on the command line). */
export interface ServiceBenchOptions {
  /** Measured rounds of table 1 (per case). */
  runs: number;
  warmup: number;
  /** Messages of the warm latency run. */
  latencyN: number;
  /** One cold send of each kind every this many warm messages. */
  coldEvery: number;
  /** Messages per user in the burst (5 users). */
  perUser: number;
  /** Messages of the RSS run (marks above it are skipped). */
  rssN: number;
}

/** Defaults; `--quick` takes the small ones. */
export const SERVICE_DEFAULTS: ServiceBenchOptions = {
  runs: 50,
  warmup: 3,
  latencyN: 100,
  coldEvery: 5,
  perUser: 100,
  rssN: 5000,
};
export const SERVICE_QUICK: ServiceBenchOptions = {
  runs: 15,
  warmup: 2,
  latencyN: 30,
  coldEvery: 5,
  perUser: 20,
  rssN: 1000,
};

/**
 * A directory watched (inotify): the time (performance.now()) each name
 * matching `re` first appears, in order. On the relay's duplicate record of
 * one key label, that is when the relay accepted each message id.
 */
class DirWatch {
  readonly dir: string;
  readonly #re: RegExp;
  readonly times: number[] = [];
  readonly #ids = new Set<string>();
  #waiters: { n: number; resolve: (t: number) => void }[] = [];
  #watcher: Deno.FsWatcher;
  #loop: Promise<void>;

  constructor(dir: string, re: RegExp) {
    this.dir = dir;
    this.#re = re;
    const watcher = Deno.watchFs(dir, { recursive: false });
    this.#watcher = watcher;
    this.#loop = (async () => {
      try {
        for await (const ev of watcher) {
          const t = performance.now();
          for (const p of ev.paths) this.#seen(p.slice(p.lastIndexOf("/") + 1), t);
        }
      } catch {
        // closed
      }
    })();
  }

  /** Makes the record's directory as the relay would (0700, the relay's) and watches it. */
  static async record(relayUid: number, label: string): Promise<DirWatch> {
    const top = `/var/tmp/rsendmail-${relayUid}`;
    const dir = `${top}/${label}`;
    for (const d of [top, dir]) {
      if (await Deno.lstat(d).then(() => true, () => false)) continue;
      await Deno.mkdir(d, { mode: 0o700 });
      await Deno.chmod(d, 0o700);
      await Deno.chown(d, relayUid, null);
    }
    return new DirWatch(dir, ID_RE);
  }

  #seen(name: string, t: number): void {
    if (!this.#re.test(name) || this.#ids.has(name)) return;
    this.#ids.add(name);
    this.times.push(t);
    const n = this.times.length;
    this.#waiters = this.#waiters.filter((w) => {
      if (w.n > n) return true;
      w.resolve(this.times[w.n - 1]!);
      return false;
    });
  }

  count(): number {
    return this.times.length;
  }

  /**
   * The time the n-th id appeared (1-based), waiting for it; a listing
   * catches what the watcher may have missed (then timed at the listing).
   */
  async nth(n: number, timeoutMs: number): Promise<number> {
    if (this.times.length >= n) return this.times[n - 1]!;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = await Promise.race([
        new Promise<number>((resolve) => this.#waiters.push({ n, resolve })),
        sleep(Math.min(2000, Math.max(0, deadline - Date.now()))).then(() => undefined),
      ]);
      if (got !== undefined) return got;
      const t = performance.now();
      for await (const e of Deno.readDir(this.dir)) this.#seen(e.name, t);
      if (this.times.length >= n) return this.times[n - 1]!;
      if (Date.now() > deadline) {
        throw new Error(`relay accepted ${this.times.length} of ${n} within ${timeoutMs} ms`);
      }
    }
  }

  async close(remove: boolean): Promise<void> {
    this.#watcher.close();
    await this.#loop;
    if (remove) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** A command as `u` (setpriv, a login-like environment). */
function asAccount(
  u: Account,
  cmd: string,
  args: string[],
  stdin?: Uint8Array,
  env: Record<string, string> = {},
): Spec {
  return {
    cmd: "/usr/bin/setpriv",
    args: [`--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", cmd, ...args],
    env: { PATH: LOGIN_PATH, LANG: "C", HOME: u.home, USER: u.name, LOGNAME: u.name, ...env },
    ...(stdin === undefined ? {} : { stdin }),
  };
}

interface Dist {
  n: number;
  median: number;
  p95: number;
}

function dist(xs: number[]): Dist {
  const s = xs.slice().sort((a, b) => a - b);
  return { n: s.length, median: quantile(s, 0.5), p95: quantile(s, 0.95) };
}

const secs = (ms: number) => (ms / 1000).toFixed(2);
const rate = (n: number, ms: number) => (n / (ms / 1000)).toFixed(1);
const mibOf = (kib: number) => (kib / 1024).toFixed(1);

/** VmRSS and VmHWM of a process in KiB (Deno wants --allow-all for /proc: ask cat). */
async function memoryOf(
  pid: number,
): Promise<{ rss: number; hwm: number; anon: number; fds: number }> {
  const text = (await run("/bin/cat", [`/proc/${pid}/status`], { check: false })).stdout;
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s*(\\d+) kB`, "m").exec(text)?.[1]);
  const fds = (await run("/bin/ls", [`/proc/${pid}/fd`], { check: false })).stdout.split("\n")
    .filter((l) => l !== "").length;
  return { rss: kib("VmRSS"), hwm: kib("VmHWM"), anon: kib("RssAnon"), fds };
}

/** Ownership of the section's tagged messages, for the delivery check. */
class Groups {
  readonly list: MailGroup[] = [];
  add(id: string, label: string, samples: Sample[]): void {
    this.list.push({
      id,
      label,
      sent: samples.length,
      failed: samples.filter((s) => s.code !== 0).length,
    });
  }
}

/** What the section hands back to bench.ts. */
export interface ServiceSection {
  /** Markdown, starting with its own `## Satellite service` heading. */
  text: string;
  /** True when a send failed or a message did not arrive exactly once. */
  broken: boolean;
}

/**
 * Runs the whole section and returns its markdown. `env` is the
 * environment line of bench.ts (Deno, CPUs, …); the load is sampled here.
 */
export async function benchService(
  o: ServiceBenchOptions,
  runId: string,
  env: string,
): Promise<ServiceSection> {
  const rid = `${runId}svc`;
  const label = `bench-${rid}`;
  const directLabel = `bench-${rid}-direct`;
  const postfix = await startPostfix();
  const box = postfix.mailbox(BENCH_USER);
  const rcpt = `${BENCH_USER}@${postfix.domain}`;
  ensureUser(BENCH_USER, "/usr/sbin/nologin");
  const bench = await account(BENCH_USER);
  const users: Account[] = [];
  for (const name of USERS) {
    ensureUser(name, "/usr/sbin/nologin");
    users.push(await account(name));
  }
  const root: Account = { name: "root", uid: 0, gid: 0, home: "/root" };
  const loadBefore = Deno.loadavg();
  // Other sessions may rebuild dist/ meanwhile: a run that spans two builds says so.
  const builds = async () =>
    (await Promise.all([DIST_SSHSENDMAIL, DIST_RSENDMAIL].map(async (p) => {
      const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(p));
      return Array.from(
        new Uint8Array(digest).subarray(0, 6),
        (b) => b.toString(16).padStart(2, "0"),
      )
        .join("");
    }))).join(" ");
  const buildBefore = await builds();
  const git = async (args: string[]) =>
    (await run("/usr/bin/git", ["-C", ROOT, ...args], { check: false })).stdout.trim();
  const commit = `${await git(["rev-parse", "--short", "HEAD"])}${
    (await git(["status", "--porcelain", "--untracked-files=no"])) === ""
      ? ""
      : " + uncommitted changes"
  }`;
  const bed = await startServiceBed({
    keyOptions: `restrict,command="${DIST_RSENDMAIL} --label ${label}"`,
  });
  const relayUid = (await account(bed.relay.user)).uid;
  const watch = await DirWatch.record(relayUid, label);
  const watchDirect = await DirWatch.record(relayUid, directLabel);
  const tmp = await Deno.makeTempDir({ prefix: "rsm-bench-svc-" });
  await Deno.chmod(tmp, 0o755);
  const groups = new Groups();
  const findings: string[] = [];
  const msg = (id: string, i: number) => makeMessage(1024, `${rid} ${id} ${i}`, rcpt);
  const svcEnv = { SSHSENDMAIL_CONFIG: bed.conf };
  const sections: string[] = [];
  try {
    // The floors' scripts, readable by every account.
    const clientShebang = (await Deno.readTextFile(DIST_SSHSENDMAIL)).split("\n", 1)[0]!;
    const deno = /^#!\/usr\/bin\/env -S (\S+)/.exec(clientShebang)?.[1] ?? Deno.execPath();
    const emptyClient = `${tmp}/empty-client`;
    const emptyJs = `${tmp}/empty.js`;
    await Deno.writeTextFile(emptyClient, `${clientShebang}\n`, { mode: 0o755 });
    await Deno.chmod(emptyClient, 0o755);
    await Deno.writeTextFile(emptyJs, "", { mode: 0o644 });
    await Deno.chmod(emptyJs, 0o644);

    // ours with queue = no: the caller's own key (bench account's), forced to rsendmail.
    const directKey = await bed.relay.addKey(
      `restrict,command="${DIST_RSENDMAIL} --label ${directLabel}"`,
      BENCH_USER,
    );
    const directConf = `${tmp}/direct.conf`;
    await Deno.writeTextFile(
      directConf,
      [
        "# written by scripts/bench_service.ts",
        `host = ${bed.relay.host}`,
        `user = ${bed.relay.user}`,
        `port = ${bed.relay.port}`,
        `identity = ${directKey}`,
        `known_hosts = ${bed.relay.knownHosts}`,
        "queue = no",
        "",
      ].join("\n"),
      { mode: 0o644 },
    );
    // upstream: its client reads ~/.ssh/config of the passwd entry.
    const upKey = await bed.relay.addKey(`restrict,command="${UP_RSENDMAIL}"`, BENCH_USER);
    const sshDir = `${bench.home}/.ssh`;
    await Deno.mkdir(sshDir, { recursive: true, mode: 0o700 });
    await run("/usr/bin/chown", [`${BENCH_USER}:`, sshDir]);
    await Deno.writeTextFile(
      `${sshDir}/config`,
      [
        `# written by scripts/bench_service.ts for the relay on port ${bed.relay.port}`,
        "Host rsm-up-svc",
        "  HostName 127.0.0.1",
        `  Port ${bed.relay.port}`,
        `  User ${bed.relay.user}`,
        `  IdentityFile ${upKey}`,
        "  IdentitiesOnly yes",
        "  IdentityAgent none",
        `  UserKnownHostsFile ${bed.relay.knownHosts}`,
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  UpdateHostKeys no",
        "  BatchMode yes",
        "  LogLevel ERROR",
        "",
      ].join("\n"),
    );
    await run("/usr/bin/chown", [`${BENCH_USER}:`, `${sshDir}/config`]);
    await Deno.chmod(`${sshDir}/config`, 0o600);

    const sendAs = (u: Account, tag: string, i: number): Spec =>
      u.uid === 0
        ? { cmd: bed.sendmail, args: [rcpt], env: baseEnv(svcEnv), stdin: msg(tag, i) }
        : asAccount(u, bed.sendmail, [rcpt], msg(tag, i), svcEnv);

    // ---- 1. The submitter vs an empty script -----------------------------------------------
    const cases: { id: string; spec: (i: number) => Spec; samples: Sample[]; mail: boolean }[] = [];
    const mk = (id: string, mail: boolean, spec: (i: number) => Spec) => {
      const c = { id, spec, samples: [] as Sample[], mail };
      cases.push(c);
      return c;
    };
    const uSend = mk("user-sendmail", true, (i) => sendAs(bench, "user-sendmail", i));
    const uShebang = mk("user-empty-shebang", false, () => asAccount(bench, emptyClient, []));
    const uBare = mk(
      "user-deno-run",
      false,
      () => asAccount(bench, deno, ["run", "-q", "--no-config", emptyJs]),
    );
    const uTrue = mk("user-setpriv-true", false, () => asAccount(bench, "/bin/true", []));
    const rSend = mk("root-sendmail", true, (i) => sendAs(root, "root-sendmail", i));
    const rShebang = mk("root-empty-shebang", false, () => ({
      cmd: emptyClient,
      args: [],
      env: baseEnv(),
    }));
    const rBare = mk("root-deno-run", false, () => ({
      cmd: deno,
      args: ["run", "-q", "--no-config", emptyJs],
      env: baseEnv(),
    }));
    const total = o.warmup + o.runs;
    const all = new Map(cases.map((c) => [c.id, [] as Sample[]]));
    for (let i = 0; i < total; i++) {
      await progress(`service: submitter round ${i + 1}/${total}`);
      for (const c of cases) {
        const s = await timeOnce(c.spec(i));
        all.get(c.id)!.push(s);
        if (i >= o.warmup) c.samples.push(s);
      }
    }
    for (const c of cases.filter((c) => c.mail)) {
      groups.add(c.id, `${c.id}: table S1, warm-up included`, all.get(c.id)!);
    }
    // Let the service drain before the latency run.
    await watch.nth(
      groups.list.reduce((a, g) => a + g.sent - g.failed, 0),
      60_000,
    );

    // ---- 2. Submit → relay accepted, the service warm -------------------------------------
    const openerBefore = watch.count();
    const opener = await timeOnce(sendAs(bench, "lat-open", 0));
    groups.add("lat-open", "lat-open: untimed, opens the batch session", [opener]);
    if (opener.code === 0) await watch.nth(openerBefore + 1, 30_000);
    // The stages, seen from outside: the submitter creates `t<hex>` in drop/,
    // renames it to `d<hex>` (published), the service renames that into
    // incoming/ (claimed), the relay records the id (accepted).
    const hexRe = (c: string) => new RegExp(`^${c}[0-9a-f]{32}$`);
    const watchTemp = new DirWatch(`${bed.spool}/drop`, hexRe("t"));
    const watchPublished = new DirWatch(`${bed.spool}/drop`, hexRe("d"));
    const watchClaimed = new DirWatch(`${bed.spool}/incoming`, hexRe("d"));
    // … the service writes its queue file `queue/new/<id>` (queued), the relay
    // takes the id's lock `<id>.lock` in its record directory (frame read).
    const watchQueued = new DirWatch(`${bed.spool}/queue/new`, ID_RE);
    const watchLocked = new DirWatch(watch.dir, /^m[0-9a-f]{32}\.lock$/);
    const stages = {
      created: [] as number[],
      published: [] as number[],
      claimed: [] as number[],
      queued: [] as number[],
      locked: [] as number[],
      recorded: [] as number[],
    };
    const latency: number[] = [];
    const submitted: number[] = [];
    const afterExit: number[] = [];
    const latSamples: Sample[] = [];
    const upSamples: Sample[] = [];
    const directSamples: Sample[] = [];
    const directAccepted: number[] = [];
    for (let i = 0; i < o.latencyN; i++) {
      if (i % 10 === 0) await progress(`service: warm latency ${i}/${o.latencyN}`);
      const before = watch.count();
      const stageWatches = [watchTemp, watchPublished, watchClaimed, watchQueued, watchLocked];
      const marks = stageWatches.map((w) => w.count());
      const t0 = performance.now();
      const s = await timeOnce(sendAs(bench, "lat", i));
      latSamples.push(s);
      if (s.code !== 0) continue;
      const accepted = await watch.nth(before + 1, 30_000);
      const seen = await Promise.all(stageWatches.map((w, k) => w.nth(marks[k]! + 1, 1000)))
        .catch(() => undefined);
      if (seen) {
        const at = [t0, ...seen, accepted];
        const keys = ["created", "published", "claimed", "queued", "locked", "recorded"] as const;
        keys.forEach((k, j) => stages[k].push(at[j + 1]! - at[j]!));
      }
      latency.push(accepted - t0);
      submitted.push(s.ms);
      afterExit.push(accepted - (t0 + s.ms));
      if (i % o.coldEvery === 0) {
        upSamples.push(
          await timeOnce(
            asAccount(
              bench,
              UP_SSHSENDMAIL,
              ["--host", "rsm-up-svc", "-f", SENDER, rcpt],
              msg(
                "upstream-cold",
                upSamples.length,
              ),
            ),
          ),
        );
        const dBefore = watchDirect.count();
        const d0 = performance.now();
        const d = await timeOnce(
          asAccount(
            bench,
            bed.sendmail,
            ["-f", SENDER, rcpt],
            msg("direct-cold", directSamples.length),
            {
              SSHSENDMAIL_CONFIG: directConf,
            },
          ),
        );
        directSamples.push(d);
        if (d.code === 0) directAccepted.push((await watchDirect.nth(dBefore + 1, 10_000)) - d0);
      }
    }
    groups.add("lat", "lat: warm latency run", latSamples);
    for (const w of [watchTemp, watchPublished, watchClaimed, watchQueued, watchLocked]) {
      await w.close(false);
    }
    groups.add("upstream-cold", "upstream-cold: upstream 1.1.4, one cold send each", upSamples);
    groups.add("direct-cold", "direct-cold: ours, `queue = no`, one cold send each", directSamples);
    await progress("service: warm latency done");

    // ---- 3. Burst: 5 users × perUser at once ----------------------------------------------
    const burstN = users.length * o.perUser;
    const burstBefore = watch.count();
    const b0 = performance.now();
    const burstSamples: Sample[][] = await Promise.all(users.map(async (u, k) => {
      const out: Sample[] = [];
      for (let j = 0; j < o.perUser; j++) {
        if (k === 0 && j % 10 === 0) await progress(`service: burst ${j}/${o.perUser} per user`);
        out.push(await timeOnce(sendAs(u, "burst", k * o.perUser + j)));
      }
      return out;
    }));
    const bSubmitted = performance.now();
    const burstFlat = burstSamples.flat();
    const burstOk = burstFlat.filter((s) => s.code === 0).length;
    const bLast = await watch.nth(burstBefore + burstOk, 300_000);
    const burstWall = bLast - b0;
    groups.add("burst", `burst: ${users.length} users × ${o.perUser} at once`, burstFlat);
    // Floor: the relay's sendmail, serially (what its --batch runs per message).
    await progress("service: serial sendmail floor");
    const floorSamples: Sample[] = [];
    const f0 = performance.now();
    for (let i = 0; i < burstN; i++) {
      floorSamples.push(
        await timeOnce({
          cmd: SENDMAIL,
          args: ["-oi", "-f", SENDER, rcpt],
          env: baseEnv(),
          stdin: msg("floor-sendmail", i),
        }),
      );
    }
    const floorWall = performance.now() - f0;
    groups.add("floor-sendmail", `floor-sendmail: ${burstN} serial \`sendmail -oi\``, floorSamples);
    // Floor: the submitters' start-up alone, same users, same concurrency.
    await progress("service: empty-script floor");
    const e0 = performance.now();
    const emptySamples = (await Promise.all(users.map(async (u) => {
      const out: Sample[] = [];
      for (let j = 0; j < o.perUser; j++) out.push(await timeOnce(asAccount(u, emptyClient, [])));
      return out;
    }))).flat();
    const emptyWall = performance.now() - e0;

    // The service and the relay alone: the same number of drops appear at once.
    await progress("service: drops written at once");
    const preBefore = watch.count();
    const p0 = performance.now();
    let preFailures = 0;
    for (let i = 0; i < burstN; i++) {
      await writeDrop(bed, users[i % users.length]!, ["-oi", "--", rcpt], msg("predrop", i))
        .catch(() => preFailures++);
    }
    const pWritten = performance.now();
    const pLast = await watch.nth(preBefore + burstN - preFailures, 300_000);
    const preWall = pLast - p0;
    groups.list.push({
      id: "predrop",
      label: `predrop: ${burstN} drops written at once by the bench`,
      sent: burstN,
      failed: preFailures,
    });

    // ---- 4. RSS across rssN messages in one lifetime --------------------------------------
    await progress("service: restarting the service for the RSS run");
    await bed.stopService();
    await bed.start();
    const pid = bed.pid()!;
    await sleep(500);
    const rssRows: {
      at: string;
      delivered: number;
      rss: number;
      hwm: number;
      anon: number;
      fds: number;
      ms: number;
    }[] = [];
    const m0 = await memoryOf(pid);
    rssRows.push({ at: "started, idle", delivered: 0, ...m0, ms: 0 });
    const rssBefore = watch.count();
    const marks = RSS_MARKS.filter((m) => m <= o.rssN);
    if (!marks.includes(o.rssN)) marks.push(o.rssN);
    const r0 = performance.now();
    let written = 0;
    let writeFailures = 0;
    const writer = (async () => {
      while (written < o.rssN) {
        const accepted = watch.count() - rssBefore;
        if (written - accepted >= RSS_WINDOW) {
          await watch.nth(rssBefore + written - RSS_WINDOW + 1, 120_000);
          continue;
        }
        const u = users[written % users.length]!;
        try {
          await writeDrop(bed, u, ["-oi", "--", rcpt], msg("rss", written));
        } catch {
          writeFailures++;
        }
        written++;
      }
    })();
    for (const mark of marks) {
      const t = await watch.nth(rssBefore + mark, 600_000);
      const m = await memoryOf(pid);
      rssRows.push({ at: `after ${mark}`, delivered: mark, ...m, ms: t - r0 });
      await progress(`service: RSS run, ${mark}/${o.rssN} accepted`);
    }
    await writer;
    const rssWall = rssRows[rssRows.length - 1]!.ms;
    groups.list.push({
      id: "rss",
      label: `rss: ${o.rssN} drops, one lifetime`,
      sent: o.rssN,
      failed: writeFailures,
    });
    await Deno.stderr.write(
      encoder.encode(`${Deno.stderr.isTerminal() ? "\n" : ""}service: timed runs done\n`),
    );
    const loadAfter = Deno.loadavg();
    const buildAfter = await builds();
    if (buildAfter !== buildBefore) {
      findings.push(
        `dist/ changed during the run (SHA-256 of sshsendmail, rsendmail: ${buildBefore} → ` +
          `${buildAfter}): the numbers mix two builds`,
      );
    }

    // ---- Report -----------------------------------------------------------------------------
    const d = (c: { samples: Sample[] }) => dist(c.samples.map((s) => s.ms));
    const row1 = (label: string, c: { samples: Sample[] }, base?: { samples: Sample[] }) => {
      const x = d(c);
      return [
        label,
        String(x.n),
        fmt(x.median),
        fmt(x.p95),
        base ? `${x.median - d(base).median >= 0 ? "+" : ""}${fmt(x.median - d(base).median)}` : "",
      ];
    };
    sections.push(
      [
        "### S1. The submitter: `sendmail rcpt < ~1 KB message`, spawn → exit, the service running (ms)",
        "",
        table(["command", "runs", "median", "p95", "median − empty script (shebang)"], [
          row1(`as ${BENCH_USER} (setpriv): \`sendmail rcpt\``, uSend, uShebang),
          row1(`as ${BENCH_USER}: empty script, sshsendmail's shebang`, uShebang),
          row1(`as ${BENCH_USER}: \`deno run -q --no-config empty.js\``, uBare, uShebang),
          row1(`as ${BENCH_USER}: \`setpriv … /bin/true\` (harness floor)`, uTrue, uShebang),
          row1("as root: `sendmail rcpt`", rSend, rShebang),
          row1("as root: empty script, sshsendmail's shebang", rShebang),
          row1("as root: `deno run -q --no-config empty.js`", rBare, rShebang),
        ]),
        "",
        `${o.warmup} warm-up + ${o.runs} measured rounds, the ${cases.length} commands ` +
        "round-robin. The shebang is dist/sshsendmail's own (`deno run -q --no-config " +
        "--ext=js` and its permission flags); the last column is the submitter's own work " +
        "beyond Deno's start-up.",
      ].join("\n"),
    );
    const stageRow = (label: string, xs: number[]) => {
      const x = dist(xs);
      return [label, String(x.n), fmt(x.median), fmt(x.p95)];
    };
    const lat = dist(latency);
    const sub = dist(submitted);
    const aft = dist(afterExit);
    const up = dist(upSamples.filter((s) => s.code === 0).map((s) => s.ms));
    const dir = dist(directSamples.filter((s) => s.code === 0).map((s) => s.ms));
    const dirAcc = dist(directAccepted);
    sections.push(
      [
        "### S2. Submit → relay accepted, one ~1 KB message at a time (ms)",
        "",
        table(["path", "messages", "median", "p95", "goal", "ours"], [
          [
            "ours, service warm: spawn of `sendmail` → the relay's record of the id",
            String(lat.n),
            fmt(lat.median),
            fmt(lat.p95),
            `median ≤ ${GOALS.latencyMedianMs}`,
            lat.median <= GOALS.latencyMedianMs ? "met" : "MISSED",
          ],
          [
            "  of which the submitter, spawn → exit",
            String(sub.n),
            fmt(sub.median),
            fmt(sub.p95),
            "",
            "",
          ],
          [
            "  of which the service + relay, submitter's exit → record",
            String(aft.n),
            fmt(aft.median),
            fmt(aft.p95),
            "",
            "",
          ],
          [
            "ours, `queue = no`: one cold send (own key, ssh per message), spawn → exit",
            String(dir.n),
            fmt(dir.median),
            fmt(dir.p95),
            "",
            "",
          ],
          [
            "  same, spawn → the relay's record of the id",
            String(dirAcc.n),
            fmt(dirAcc.median),
            fmt(dirAcc.p95),
            "",
            "",
          ],
          [
            "upstream 1.1.4: one cold send (its sshsendmail → ssh → its rsendmail), spawn → exit",
            String(up.n),
            fmt(up.median),
            fmt(up.p95),
            "",
            "",
          ],
        ]),
        "",
        table([
          "stages of a warm message (seen by inotify from outside)",
          "messages",
          "median",
          "p95",
        ], [
          stageRow(
            "spawn → `t<hex>` created in drop/ (Deno start-up, bundle, config)",
            stages.created,
          ),
          stageRow("→ renamed to `d<hex>` (message written, fdatasync, rename)", stages.published),
          stageRow(
            "→ claimed: renamed into incoming/ by the service (its pick-up)",
            stages.claimed,
          ),
          stageRow(
            "→ queued: `queue/new/<id>` (service: checks, copy, local policy, write + fsync + rename)",
            stages.queued,
          ),
          stageRow(
            "→ the relay takes the id's lock (frame written to ssh, read by the relay)",
            stages.locked,
          ),
          stageRow(
            "→ the relay's record (relay: duplicate check, spool, `/usr/sbin/sendmail`, record)",
            stages.recorded,
          ),
        ]),
        "",
        `As ${BENCH_USER} through setpriv. The warm messages go one after another (the next ` +
        "is spawned when the relay recorded the one before), over the service's one batch " +
        "session, opened by an untimed message first. The relay's rsendmail writes " +
        "`/var/tmp/rsendmail-<uid>/<label>/<id>` right after its `/usr/sbin/sendmail` exited " +
        "(lib/relay/dedup_io.ts); the bench watches that directory (inotify through Deno.watchFs) and " +
        `takes the time it sees the id. A cold send of each kind every ${o.coldEvery} warm ` +
        "messages, interleaved, so that drift in the load hits all alike; a cold client exits " +
        "once the relay answered, so its wall time is its submit → accepted.",
      ].join("\n"),
    );
    const burstRate = burstOk / (burstWall / 1000);
    const subMs = bSubmitted - b0;
    const burstSub = dist(burstFlat.filter((s) => s.code === 0).map((s) => s.ms));
    sections.push(
      [
        `### S3. Burst: ${burstN} messages, ${users.length} users × ${o.perUser} at once`,
        "",
        table(["run", "messages", "wall (s)", "msg/s", "goal", "ours"], [
          [
            "ours: first spawn → the relay's last record",
            String(burstOk),
            secs(burstWall),
            burstRate.toFixed(1),
            `≥ ${GOALS.burstRate} msg/s`,
            burstRate >= GOALS.burstRate ? "met" : "MISSED",
          ],
          [
            "  of which submitting (first spawn → last submitter's exit)",
            String(burstFlat.length),
            secs(subMs),
            rate(burstFlat.length, subMs),
            "",
            "",
          ],
          [
            "  then the relay's tail (last exit → last record)",
            "",
            secs(bLast - bSubmitted),
            "",
            "",
            "",
          ],
          [
            `the service + relay alone: ${burstN} drops written at once (by the bench, as the ${users.length} users) → last record`,
            String(burstN - preFailures),
            secs(preWall),
            rate(burstN - preFailures, preWall),
            "",
            "",
          ],
          [
            "  of which writing the drops",
            "",
            secs(pWritten - p0),
            "",
            "",
            "",
          ],
          [
            `floor: the relay's \`/usr/sbin/sendmail -oi\`, ${burstN} times serially`,
            String(burstN),
            secs(floorWall),
            rate(burstN, floorWall),
            "",
            "",
          ],
          [
            `floor: ${burstN} empty scripts (sshsendmail's shebang), same ${users.length} users at once`,
            String(emptySamples.length),
            secs(emptyWall),
            rate(emptySamples.length, emptyWall),
            "",
            "",
          ],
        ]),
        "",
        `Each user's sends run one after another, the ${users.length} users at once ` +
        `(${users.map((u) => u.name).join(", ")}); a submitter took ${
          fmt(burstSub.median)
        } ms median, ` +
        `${fmt(burstSub.p95)} ms p95 under this load. The relay's batch runs its sendmail ` +
        "once per message, one at a time: the serial-sendmail floor bounds any single " +
        `session's rate; the empty-script floor is what starting ${burstN} Deno submitters ` +
        `costs on ${navigator.hardwareConcurrency} CPUs before any mail work.`,
      ].join("\n"),
    );
    const base = rssRows.find((r) => r.delivered === marks[0]) ?? rssRows[1]!;
    const peak = Math.max(...rssRows.map((r) => r.hwm));
    const lastRow = rssRows[rssRows.length - 1]!;
    const growth = (lastRow.rss - base.rss) / base.rss;
    sections.push(
      [
        `### S4. The service's memory across ${o.rssN} messages in one lifetime`,
        "",
        table([
          "sampled",
          "wall (s)",
          "VmRSS (MiB)",
          "VmHWM (MiB)",
          `VmRSS vs after ${marks[0]}`,
          "RssAnon (MiB)",
          "open fds",
        ], [
          ...rssRows.map((r) => [
            r.at,
            r.delivered === 0 ? "" : secs(r.ms),
            mibOf(r.rss),
            mibOf(r.hwm),
            r.delivered >= marks[0]! ? `${((r.rss / base.rss - 1) * 100).toFixed(1)}%` : "",
            mibOf(r.anon),
            String(r.fds),
          ]),
        ]),
        "",
        table(["goal", "measured", "ours"], [
          [
            `peak ≤ ${GOALS.rssMiB} MiB`,
            `${mibOf(peak)} MiB (VmHWM)`,
            peak / 1024 <= GOALS.rssMiB ? "met" : "MISSED",
          ],
          [
            `flat: ≤ ${GOALS.rssGrowth * 100}% growth after ${marks[0]}`,
            `${(growth * 100).toFixed(1)}% (VmRSS ${mibOf(base.rss)} → ${mibOf(lastRow.rss)} MiB)`,
            growth <= GOALS.rssGrowth ? "met" : "MISSED",
          ],
        ]),
        "",
        `The service was restarted for this run (pid ${pid}); the bench wrote the ${o.rssN} ` +
        `drops itself, as the submitter writes them, owned by the ${users.length} users in ` +
        `turn, at most ${RSS_WINDOW} not yet accepted by the relay. The relay delivered them ` +
        `through the real Postfix: ${secs(rssWall)} s for ${o.rssN} ` +
        `(${rate(o.rssN, rssWall)} msg/s), the RSS read from /proc/${pid}/status when the ` +
        "relay had recorded each mark. VmRSS minus RssAnon is file-backed, mostly the pages of " +
        "the deno binary itself.",
      ].join("\n"),
    );
    if (lat.median > GOALS.latencyMedianMs) {
      findings.push(
        `warm latency: median ${fmt(lat.median)} ms misses ≤ ${GOALS.latencyMedianMs} ms ` +
          `(the submitter alone: ${fmt(sub.median)} ms)`,
      );
    }
    if (burstRate < GOALS.burstRate) {
      findings.push(`burst: ${burstRate.toFixed(1)} msg/s misses ≥ ${GOALS.burstRate} msg/s`);
    }
    if (peak / 1024 > GOALS.rssMiB) {
      findings.push(`service RSS: peak ${mibOf(peak)} MiB misses ≤ ${GOALS.rssMiB} MiB`);
    }
    if (growth > GOALS.rssGrowth) {
      findings.push(`service RSS: grows ${(growth * 100).toFixed(1)}% after ${marks[0]} messages`);
    }
    for (
      const [what, xs] of [
        ["table 1 sends", [...uSend.samples, ...rSend.samples]],
        ["warm latency sends", latSamples],
        ["upstream cold sends", upSamples],
        ["queue = no cold sends", directSamples],
        ["burst sends", burstFlat],
        ["serial sendmail floor", floorSamples],
        ["empty-script floor", emptySamples],
      ] as const
    ) {
      const bad = xs.filter((s) => s.code !== 0);
      if (bad.length > 0) {
        findings.push(
          `${what}: ${bad.length} exited non-zero, e.g. exit ${bad[0]!.code}: ${
            bad[0]!.stderr.trim().split("\n")[0]
          }`,
        );
      }
    }
    if (writeFailures > 0) findings.push(`RSS run: ${writeFailures} drops could not be written`);

    // Delivery: every tagged message exactly once.
    await progress("service: delivery check");
    const expected = new Map(groups.list.map((g) => [g.id, g.sent - g.failed]));
    const got = await collectMail(box.dir, rid, expected, 600_000);
    const delivery = deliveryTable(groups.list, got);
    sections.push(
      [
        `### S5. Delivery check (Maildir of ${rcpt}; every message carries a unique tag)`,
        "",
        delivery.text,
      ].join("\n"),
    );
    if (!delivery.ok) findings.push("some service-section messages did not arrive exactly once");
    const head = [
      "## Satellite service (issue 11)",
      "",
      `Environment: ${env} · load before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, ` +
      `after ${loadAfter.map((l) => l.toFixed(2)).join(" ")} · dist/sshsendmail, ` +
      `dist/rsendmail SHA-256 ${buildBefore.replace(" ", ", ")}… · tree at ${commit}`,
      "",
    ];
    const text = [
      ...head,
      ...sections.flatMap((s) => [s, ""]),
      findings.length
        ? `Service findings:\n${findings.map((f) => `- ${f}`).join("\n")}`
        : "All service goals met.",
    ].join("\n");
    const broken = !delivery.ok || groups.list.some((g) => g.failed > 0);
    return { text, broken };
  } finally {
    await bed.stop();
    await watch.close(true);
    await watchDirect.close(true);
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Writes one drop as `u` would (JSON words line + message), then renames it into place. */
async function writeDrop(
  bed: ServiceBed,
  u: Account,
  words: string[],
  message: Uint8Array,
): Promise<void> {
  const hex = dropHex(crypto.getRandomValues(new Uint8Array(16)));
  const head = encoder.encode(encodeDropHeader(words));
  const data = new Uint8Array(head.length + message.length);
  data.set(head);
  data.set(message, head.length);
  const tmp = `${bed.spool}/drop/t${hex}`;
  await Deno.writeFile(tmp, data, { createNew: true, mode: 0o644 });
  await Deno.chown(tmp, u.uid, u.gid);
  await Deno.chmod(tmp, 0o644);
  await Deno.rename(tmp, `${bed.spool}/drop/d${hex}`);
}
