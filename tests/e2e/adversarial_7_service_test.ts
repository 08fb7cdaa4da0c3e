/**
 * Issue 11's attacks on the satellite service, end to end: each run by an
 * unprivileged local account against the running service, each refused or
 * set aside, nothing outside the spool changed, other users' mail flowing.
 *
 * Setup, per test (see {@link attackTest}):
 *
 * - the shared Postfix (relay.test), a private sshd with the satellite key,
 *   the spool made by `--init-spool` and the service started as its unit
 *   says (tests/e2e/_service.ts);
 * - a private rsyslogd on /dev/log started before the service (its
 *   logger(1) connects when the service starts); log lines are read by the
 *   service's pid, so another test file's syslog cannot mix into them;
 * - accounts `rsmevil` (the attacker), `rsmann` (another sender) and
 *   `rsmrcpt` (the recipient, a Maildir on the relay);
 * - a decoy directory `/tmp/rsm-decoy-*`: `root-drop` (root's, 0644, laid
 *   out as a valid drop: followed through a link, it would be delivered as
 *   root's mail, its token found in rsmrcpt's Maildir), `root-secret`
 *   (root's, 0600), `evil-own` and `evil-dir/` (rsmevil's; `evil-own` is a
 *   valid drop too), and `old/` (files older than an hour, what the old
 *   tmp sweep deleted).
 *
 * Attacks run as rsmevil through setpriv: a small python3 program does one
 * system call per step and prints each step's errno name, so a refusal is
 * asserted by its errno, never by absence. Before and after each attack,
 * every file under /etc and under the decoy directory is hashed (type,
 * mode, owner, size, mtime, SHA-256, link target) and the two listings are
 * compared. Each refused drop is checked by its `event=setaside` line and
 * its entry in `hold/` (a directory, which the service cannot move, stays
 * in `drop/`); each test sends a positive control (rsmann's message, found
 * by its token).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Account,
  account,
  closedPort,
  expectNoToken,
  type Mailbox,
  run,
  sleep,
  SSHSENDMAIL,
  startSyslog,
  type Syslog,
  takeByToken,
  token,
} from "./_bed.ts";
import { PATH, type ServiceBed, startServiceBed } from "./_service.ts";
import { attempt, record as recordAttempt } from "./_attack_table.ts";

/** This file's section of the attack table (docs/adversarial.md). */
const SECTION = "8. local users against the satellite service";

const decoder = new TextDecoder();

/** One attack scene: the bed, its syslog, the accounts, the decoy. */
interface Scene {
  bed: ServiceBed;
  syslog: Syslog;
  /** Every pid the service had in this test (log lines are taken from these only). */
  pids: number[];
  evil: Account;
  ann: Account;
  rcpt: Account;
  /** rsmrcpt's Maildir on the relay. */
  box: Mailbox;
  /** rsmrcpt's address. */
  to: string;
  decoy: Decoy;
  /** A 127.0.0.1 port nothing listens on (the relay "down"). */
  closedPort: number;
  drop: string;
  hold: string;
}

/** The decoy directory and the tokens of its two drop-shaped files. */
interface Decoy {
  dir: string;
  /** In `root-drop` (root's): must never arrive. */
  rootTok: string;
  /** In `evil-own` (rsmevil's, outside the spool): must never arrive. */
  ownTok: string;
}

/** What a test asks of its scene. */
interface SceneOptions {
  /** Start the service with the relay unreachable. */
  relayDown?: boolean;
}

// ---------------------------------------------------------------- as the attacker

/**
 * The attacker's hands: argv[1] is a JSON list of steps `[op, path, ...args]`;
 * prints a JSON list with one result per step: "ok" (or "ok:N"), or the
 * errno name (EACCES, EPERM, ENOENT …) of the step's failed system call.
 */
const HANDS_PY = `
import errno, json, os, secrets, sys, time

def new(path):
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

def put(path, data):
    d = os.path.dirname(path)
    t = f"{d}/t{secrets.token_hex(16)}"
    fd = new(t)
    os.write(fd, data)
    os.close(fd)
    os.rename(t, path)

def race(d, name, target, secs):
    # Keeps replacing d/name: a symlink to target, then a regular drop.
    link = f"{d}/t{secrets.token_hex(16)}"
    reg = f"{d}/t{secrets.token_hex(16)}"
    end = time.time() + secs
    n = 0
    while time.time() < end:
        os.symlink(target, link)
        os.rename(link, f"{d}/{name}")
        fd = new(reg)
        os.write(fd, b"not json\\n")
        os.close(fd)
        os.rename(reg, f"{d}/{name}")
        n += 1
    return n

def flood(d, n):
    for _ in range(n):
        h = secrets.token_hex(16)
        t = f"{d}/t{h}"
        os.close(new(t))
        os.rename(t, f"{d}/d{h}")
    return n

out = []
for step in json.loads(sys.argv[1]):
    op, path, *a = step
    r = "ok"
    try:
        if op == "list":
            r = f"ok:{len(os.listdir(path))}"
        elif op == "read":
            with open(path, "rb") as f:
                f.read()
        elif op == "create":
            os.close(new(path))
        elif op == "mkdir":
            os.mkdir(path)
        elif op == "symlink":
            os.symlink(a[0], path)
        elif op == "link":
            os.link(a[0], path)
        elif op == "mkfifo":
            os.mkfifo(path)
        elif op == "sparse":
            fd = new(path)
            os.ftruncate(fd, a[0])
            os.close(fd)
        elif op == "rename":
            os.rename(a[0], path)
        elif op == "age":
            t = time.time() - a[0]
            os.utime(path, (t, t), follow_symlinks=False)
        elif op == "put":
            put(path, a[0].encode())
        elif op == "race":
            r = f"ok:{race(path, a[0], a[1], a[2])}"
        elif op == "flood":
            r = f"ok:{flood(path, a[0])}"
        else:
            raise ValueError(op)
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    out.append(r)
print(json.dumps(out))
`;

/** A step of {@link HANDS_PY}. */
type Step = [op: string, path: string, ...args: (string | number)[]];

/** Runs steps as `user`; returns one result per step. */
async function hands(s: Scene, user: Account, steps: Step[]): Promise<string[]> {
  const res = await s.bed.sendAs(user, ["/usr/bin/python3", "-c", HANDS_PY, JSON.stringify(steps)]);
  assert.equal(res.code, 0, `python3 as ${user.name}: ${res.stderr}`);
  return JSON.parse(res.stdout) as string[];
}

/** A fresh drop hex (what an honest client would pick). */
function hex(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** A message drop's bytes: the sendmail words as JSON, then the message. */
function dropText(words: string[], subject: string, tok: string): string {
  return `${JSON.stringify(words)}\nSubject: ${subject}\n\n${tok}\n`;
}

// ---------------------------------------------------------------- the service's log

/** The service's log lines of this test, as the text after `sshsendmail[PID]: `. */
async function events(s: Scene): Promise<string[]> {
  const text = await Deno.readTextFile(s.syslog.file).catch(() => "");
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^\S+ sshsendmail\[(\d+)\]: ?(.*)$/.exec(line);
    if (m && s.pids.includes(Number(m[1]))) out.push(m[2]!);
  }
  return out;
}

/** Waits until a log line satisfies `match`; returns it. */
async function waitEvent(
  s: Scene,
  what: string,
  match: (line: string) => boolean,
  timeoutMs = 10_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = (await events(s)).find(match);
    if (hit !== undefined) return hit;
    if (Date.now() > deadline) {
      throw new Error(
        `no log line ${what} within ${timeoutMs} ms; got:\n${(await events(s)).join("\n")}`,
      );
    }
    await sleep(50);
  }
}

/** A log value as the service writes it (formatLogLine's quoting). */
function field(value: string): string {
  return /[\s"\\=]/.test(value) || value === "" ? `"${value.replace(/["\\]/g, "\\$&")}"` : value;
}

/** The exact set-aside line of a drop. */
function setAsideLine(name: string, uid: number | string, reason: string): string {
  return `event=setaside drop=${field(name)} uid=${uid} reason=${field(reason)}`;
}

/** Waits for a drop's set-aside line and checks that hold/ holds it; returns its lstat. */
async function setAside(
  s: Scene,
  name: string,
  uid: number,
  reason: string,
  timeoutMs = 10_000,
): Promise<Deno.FileInfo> {
  const line = setAsideLine(name, uid, reason);
  await waitEvent(s, line, (l) => l === line, timeoutMs);
  return await Deno.lstat(`${s.hold}/${name}`);
}

/**
 * A directory another account owns cannot be renamed out of drop/ (rename
 * rewrites its `..`, which needs write access to it): the service leaves
 * it there, logged once. Waits for that line; returns the entry's lstat.
 */
async function leftInDrop(s: Scene, name: string, uid: number): Promise<Deno.FileInfo> {
  const line = setAsideLine(name, uid, "cannot be moved (directory), left in drop/");
  await waitEvent(s, line, (l) => l === line);
  return await Deno.lstat(`${s.drop}/${name}`);
}

/** The `event=accepted` lines whose uid is one of `uids`. */
async function acceptedFrom(s: Scene, uids: number[]): Promise<string[]> {
  return (await events(s)).filter((l) =>
    l.startsWith("event=accepted ") && uids.some((u) => l.includes(` uid=${u} `))
  );
}

// ---------------------------------------------------------------- snapshots

/** One file's recorded state. */
interface Entry {
  /** Type, mode, owner. */
  meta: string;
  /** Size, mtime, SHA-256 (file); link target (symlink); mtime (decoy directories). */
  content: string;
  /** Whole text, kept for the account databases only. */
  text?: string;
}

/** Path → recorded state. */
type Snapshot = Map<string, Entry>;

/**
 * Account databases: other e2e files running at the same time create their
 * accounts (useradd), which may add lines; a line changed or gone, or a
 * changed owner or mode, is still reported.
 */
const GROW_ONLY_REGEXP = /^\/etc\/(passwd|group|shadow|gshadow|subuid|subgid)-?$/;
/** A line useradd adds to one of the account databases. */
const ACCOUNT_LINE_REGEXP = /^[a-z_][a-z0-9_-]*\$?:[^{}"]*$/;

/** Files in /etc that change for reasons unrelated to the service. */
const ETC_CHURN: readonly RegExp[] = [
  // newaliases(1), run by startPostfix() (tests/e2e/_bed.ts) of every test
  // file that starts, rewrites the aliases database.
  /^\/etc\/aliases\.db$/,
  // The satellite Postfix instance tests/e2e/_satellite.ts (re)configures
  // for the Postfix pipe and nullmailer test files.
  /^\/etc\/postfix-sat(\/|$)/,
  // useradd's lock and temporary files while a concurrent test file adds
  // its accounts (the databases themselves: GROW_ONLY_REGEXP).
  /^\/etc\/(passwd|group|shadow|gshadow|subuid|subgid)(\.lock|\+|\.\d+)$/,
];

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Records `path` and everything under it (never following a link). */
async function record(path: string, snap: Snapshot, dirMtime: boolean): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return; // vanished while listed (a lock file)
    throw e;
  }
  const kind = info.isSymlink
    ? "link"
    : info.isDirectory
    ? "dir"
    : info.isFile
    ? "file"
    : "special";
  const meta = `${kind} ${((info.mode ?? 0) & 0o7777).toString(8)} ${info.uid}:${info.gid}`;
  const mtime = info.mtime?.getTime() ?? 0;
  if (info.isSymlink) {
    snap.set(path, { meta, content: `-> ${await Deno.readLink(path)}` });
  } else if (info.isFile) {
    const bytes = await Deno.readFile(path).catch(() => undefined);
    if (!bytes) return;
    const content = `${bytes.length} ${mtime} ${await sha256(bytes)}`;
    snap.set(
      path,
      GROW_ONLY_REGEXP.test(path)
        ? { meta, content, text: decoder.decode(bytes) }
        : { meta, content },
    );
  } else {
    snap.set(path, { meta, content: info.isDirectory && dirMtime ? String(mtime) : "" });
  }
  if (info.isDirectory) {
    const names = await Array.fromAsync(Deno.readDir(path)).catch(() => []);
    for (const e of names) await record(`${path}/${e.name}`, snap, dirMtime);
  }
}

/** /etc and the decoy directory. */
async function snapshot(s: Scene): Promise<{ etc: Snapshot; decoy: Snapshot }> {
  const etc: Snapshot = new Map();
  const decoy: Snapshot = new Map();
  await record("/etc", etc, false);
  await record(s.decoy.dir, decoy, true);
  return { etc, decoy };
}

/** True when an account database only gained well-formed lines. */
function grewOnly(before: Entry, after: Entry): boolean {
  if (before.text === undefined || after.text === undefined) return false;
  const was = new Set(before.text.split("\n"));
  const now = new Set(after.text.split("\n"));
  return [...was].every((l) => now.has(l)) &&
    [...now].every((l) => was.has(l) || ACCOUNT_LINE_REGEXP.test(l));
}

/** What differs between two snapshots (minus the ignored paths). */
function changes(
  before: Snapshot,
  after: Snapshot,
  ignore: readonly RegExp[] = [],
  tolerateGrowth = true,
): string[] {
  const out: string[] = [];
  const ignored = (p: string) => ignore.some((r) => r.test(p));
  for (const [p, b] of before) {
    if (ignored(p)) continue;
    const a = after.get(p);
    if (!a) out.push(`removed ${p}`);
    else if (
      a.meta !== b.meta || (a.content !== b.content && !(tolerateGrowth && grewOnly(b, a)))
    ) {
      out.push(`changed ${p}: ${b.meta} ${b.content} -> ${a.meta} ${a.content}`);
    }
  }
  for (const p of after.keys()) if (!before.has(p) && !ignored(p)) out.push(`created ${p}`);
  return out;
}

// ---------------------------------------------------------------- the scene

async function makeDecoy(evil: Account, to: string): Promise<Decoy> {
  const dir = await Deno.makeTempDir({ prefix: "rsm-decoy-" });
  await Deno.chmod(dir, 0o755);
  const rootTok = token("decoy-root");
  const ownTok = token("decoy-own");
  const file = async (name: string, text: string, mode: number, owner?: Account) => {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    await Deno.chmod(`${dir}/${name}`, mode);
    if (owner) await Deno.chown(`${dir}/${name}`, owner.uid, owner.gid);
  };
  await file("root-drop", dropText(["-oi", "--", to], "decoy", rootTok), 0o644);
  await file("root-secret", "root's only\n", 0o600);
  await file("evil-own", dropText(["-oi", "--", to], "own", ownTok), 0o644, evil);
  await Deno.mkdir(`${dir}/evil-dir`);
  await Deno.chown(`${dir}/evil-dir`, evil.uid, evil.gid);
  await file("evil-dir/kept", "rsmevil's\n", 0o644, evil);
  await Deno.mkdir(`${dir}/old`);
  const twoHoursAgo = new Date(Date.now() - 7_200_000);
  for (const name of ["a", "b"]) {
    await file(`old/${name}`, `older than an hour: ${name}\n`, 0o644);
    await Deno.utime(`${dir}/old/${name}`, twoHoursAgo, twoHoursAgo);
  }
  await Deno.utime(`${dir}/old`, twoHoursAgo, twoHoursAgo);
  return { dir, rootTok, ownTok };
}

/**
 * Starts the service and checks its `event=started` line reached this
 * test's rsyslogd; if another test file's rsyslogd took /dev/log between
 * ours and the service's logger(1), takes it back and starts again.
 */
async function startService(s: Scene): Promise<void> {
  for (let attempt = 1;; attempt++) {
    await s.bed.start();
    const pid = s.bed.pid();
    assert.ok(pid !== undefined);
    s.pids.push(pid);
    try {
      await waitEvent(s, "event=started", (l) => l.startsWith("event=started "), 5000);
      return;
    } catch (e) {
      if (attempt >= 3) throw e;
      await s.bed.stopService();
      await s.syslog.stop();
      s.syslog = await startSyslog();
    }
  }
}

/** Makes the relay reachable (or not) for the service: new config, restart. */
async function relayUp(s: Scene, up: boolean): Promise<void> {
  await s.bed.writeConfig([], up ? undefined : s.closedPort);
  await s.bed.stopService();
  await startService(s);
}

async function openScene(o: SceneOptions): Promise<Scene> {
  const evil = await account("rsmevil");
  const ann = await account("rsmann");
  const rcpt = await account("rsmrcpt");
  const bed = await startServiceBed({ deferStart: true });
  let syslog: Syslog | undefined;
  try {
    const box = bed.mailbox(rcpt.name);
    const to = `${rcpt.name}@${bed.domain}`;
    syslog = await startSyslog();
    const s: Scene = {
      bed,
      syslog,
      pids: [],
      evil,
      ann,
      rcpt,
      box,
      to,
      decoy: await makeDecoy(evil, to),
      closedPort: closedPort(),
      drop: `${bed.spool}/drop`,
      hold: `${bed.spool}/hold`,
    };
    if (o.relayDown) await bed.writeConfig([], s.closedPort);
    await startService(s);
    return s;
  } catch (e) {
    await bed.stop();
    await syslog?.stop();
    throw e;
  }
}

async function closeScene(s: Scene): Promise<void> {
  await s.bed.stop();
  await s.syslog.stop();
  await Deno.remove(s.decoy.dir, { recursive: true }).catch(() => {});
}

/** rsmann's message to rsmrcpt, found by its token; returns submit-to-Maildir ms. */
async function control(s: Scene, label = "control", timeoutMs = 20_000): Promise<number> {
  const tok = token(label);
  const started = Date.now();
  const res = await s.bed.sendAs(s.ann, [s.to], `Subject: ${label}\n\n${tok}\n`);
  assert.equal(res.code, 0, res.stderr);
  await takeByToken(s.box, tok, timeoutMs);
  recordAttempt(SECTION, "another user's mail while under attack (positive control)", "delivered");
  return Date.now() - started;
}

/** A file under /proc (Deno grants /proc only with --allow-all: cat reads it). */
async function proc(path: string): Promise<string> {
  return (await run("/bin/cat", [`/proc/${path}`])).stdout;
}

/** The service's resident set size (kB), from /proc. */
async function rssKb(s: Scene): Promise<number> {
  const status = await proc(`${s.bed.pid()}/status`);
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  assert.ok(kb, "no VmRSS");
  return Number(kb);
}

/** The service process runs and its `alive` file names it. */
async function assertServiceAlive(s: Scene): Promise<void> {
  const pid = s.bed.pid();
  assert.ok(pid !== undefined, "the service is not running");
  const stat = await proc(`${pid}/stat`);
  assert.doesNotMatch(stat.slice(stat.lastIndexOf(")") + 2), /^Z/, "the service is a zombie");
  assert.equal(await Deno.readTextFile(`${s.bed.spool}/reply/alive`), `${pid}\n`);
}

/**
 * One attack as one test: the scene, a snapshot of /etc and the decoy
 * directory, the attack (which sends its own positive control), the
 * service still alive, and the snapshot again: nothing changed.
 */
function attackTest(name: string, fn: (s: Scene) => Promise<void>, o: SceneOptions = {}): void {
  Deno.test(`service attack: ${name}`, async () => {
    const started = Date.now();
    const s = await openScene(o);
    try {
      const before = await snapshot(s);
      await attempt(SECTION, name, async () => {
        await fn(s);
        return "refused";
      });
      await assertServiceAlive(s);
      const after = await snapshot(s);
      assert.deepEqual(changes(before.etc, after.etc, ETC_CHURN), [], "/etc changed");
      const tolerated = changes(before.etc, after.etc, [], false);
      if (tolerated.length > 0) {
        console.log(
          `  /etc: tolerated (other test files): ${
            tolerated.map((t) => t.split(":")[0]).join(", ")
          }`,
        );
      }
      assert.deepEqual(changes(before.decoy, after.decoy), [], "the decoy directory changed");
      // The log holds no raw control character (rsyslog would show one as #ooo).
      const log = await Deno.readFile(s.syslog.file);
      assert.ok(!log.includes(0x1b), "raw ESC in the log");
      assert.doesNotMatch(
        decoder.decode(log),
        /#0[0-3][0-7]|\u0085/,
        "control character in the log",
      );
    } finally {
      await closeScene(s);
      console.log(`${name}: ${Date.now() - started} ms`);
    }
  });
}

// ---------------------------------------------------------------- the attacks

attackTest(
  "a symlink as a drop (to /etc/shadow, to root's files) is set aside, never followed",
  async (s) => {
    const d = s.drop;
    const reqHex = hex();
    const links: Array<[string, string]> = [
      [`d${hex()}`, "/etc/shadow"],
      [`d${hex()}`, `${s.decoy.dir}/root-drop`],
      [`d${hex()}`, `${s.decoy.dir}/root-secret`],
      [`d${hex()}`, `${s.decoy.dir}/evil-dir`],
      [`q${reqHex}`, `${s.decoy.dir}/root-drop`],
    ];
    const res = await hands(
      s,
      s.evil,
      links.map(([n, target]) => ["symlink", `${d}/${n}`, target]),
    );
    assert.deepEqual(res, links.map(() => "ok"));
    for (const [name, target] of links) {
      const held = await setAside(s, name, s.evil.uid, "symlink");
      assert.ok(held.isSymlink, `hold/${name} is not the symlink`);
      assert.equal(await Deno.readLink(`${s.hold}/${name}`), target);
    }
    await assert.rejects(Deno.lstat(`${s.bed.spool}/reply/${reqHex}`), Deno.errors.NotFound);
    assert.deepEqual(await acceptedFrom(s, [0, s.evil.uid]), []);
    await control(s);
    await expectNoToken(s.box, s.decoy.rootTok);
  },
);

attackTest(
  "a hard link as a drop is set aside (2 links); linking others' files fails",
  async (s) => {
    // fs.protected_hardlinks=1 stops a link to a file the user may not write.
    assert.equal((await proc("sys/fs/protected_hardlinks")).trim(), "1");
    const own = `d${hex()}`;
    const res = await hands(s, s.evil, [
      ["link", `${s.drop}/d${hex()}`, "/etc/shadow"],
      ["link", `${s.drop}/d${hex()}`, `${s.decoy.dir}/root-drop`],
      ["link", `${s.drop}/d${hex()}`, `${s.decoy.dir}/root-secret`],
      ["link", `${s.drop}/${own}`, `${s.decoy.dir}/evil-own`],
    ]);
    // EPERM, not EXDEV: the spool, /etc and the decoy are on one file system.
    assert.deepEqual(res, ["EPERM", "EPERM", "EPERM", "ok"]);
    const held = await setAside(s, own, s.evil.uid, "2 links");
    const orig = await Deno.lstat(`${s.decoy.dir}/evil-own`);
    assert.ok(held.isFile);
    assert.equal(held.ino, orig.ino, "hold/ keeps the link itself");
    assert.equal(held.nlink, 2);
    assert.deepEqual(await acceptedFrom(s, [0, s.evil.uid]), []);
    await control(s);
    await expectNoToken(s.box, s.decoy.ownTok);
  },
);

attackTest("a FIFO as a drop is set aside without blocking the service", async (s) => {
  const msg = `d${hex()}`;
  const req = `q${hex()}`;
  const stale = `t${hex()}`;
  const res = await hands(s, s.evil, [
    ["mkfifo", `${s.drop}/${msg}`],
    ["mkfifo", `${s.drop}/${req}`],
    // A temp name left for over an hour is claimed as abandoned.
    ["mkfifo", `${s.drop}/${stale}`],
    ["age", `${s.drop}/${stale}`, 7200],
  ]);
  assert.deepEqual(res, ["ok", "ok", "ok", "ok"]);
  // Right after: had the service opened a FIFO (no writer), it would hang.
  const first = await control(s, "fifo-control", 5000);
  for (const name of [msg, req]) {
    const held = await setAside(s, name, s.evil.uid, "not a regular file");
    assert.ok(held.isFifo, `hold/${name} is not the FIFO`);
  }
  // The stale temp waits for the sweep (every 15 s) or the next event: poke it.
  assert.deepEqual(await hands(s, s.evil, [["put", `${s.drop}/d${hex()}`, ""]]), ["ok"]);
  const staleHeld = await setAside(s, stale, s.evil.uid, "abandoned while written");
  assert.ok(staleHeld.isFifo);
  await assert.rejects(Deno.lstat(`${s.bed.spool}/reply/${req.slice(1)}`), Deno.errors.NotFound);
  const second = await control(s, "fifo-control-after", 5000);
  console.log(
    `  control right after the FIFOs: ${first} ms, after they were set aside: ${second} ms`,
  );
});

attackTest(
  "a 2 GB sparse file as a drop is set aside over the size limit; RSS stays small",
  async (s) => {
    const before = await rssKb(s);
    const msg = `d${hex()}`;
    const req = `q${hex()}`;
    const t1 = `${s.drop}/t${hex()}`;
    const t2 = `${s.drop}/t${hex()}`;
    const res = await hands(s, s.evil, [
      ["sparse", t1, 2 ** 31],
      ["rename", `${s.drop}/${msg}`, t1],
      ["sparse", t2, 2 ** 31],
      ["rename", `${s.drop}/${req}`, t2],
    ]);
    assert.deepEqual(res, ["ok", "ok", "ok", "ok"]);
    for (const name of [msg, req]) {
      const held = await setAside(s, name, s.evil.uid, "over the size limit");
      assert.equal(held.size, 2 ** 31);
    }
    await control(s);
    const after = await rssKb(s);
    console.log(`  service RSS ${before} kB before, ${after} kB after`);
    assert.ok(after - before < 32 * 1024, `RSS grew from ${before} to ${after} kB`);
  },
);

attackTest(
  "a drop swapped between check and open (symlink/regular rename loop) is never followed",
  async (s) => {
    const name = `d${hex()}`;
    const target = `${s.decoy.dir}/root-drop`;
    const racing = hands(s, s.evil, [["race", s.drop, name, target, 4]]);
    await sleep(500);
    const ms = await control(s, "race-control");
    const [res] = await racing;
    const loops = Number(/^ok:(\d+)$/.exec(res ?? "")?.[1]);
    assert.ok(loops > 0, `the loop did not run: ${res}`);
    // Wait for the service to take the last one.
    const deadline = Date.now() + 10_000;
    while (await Deno.lstat(`${s.drop}/${name}`).then(() => true, () => false)) {
      assert.ok(Date.now() < deadline, "the last swapped drop was not taken");
      await sleep(50);
    }
    await waitEvent(s, "for the last swap", (l) => l.startsWith(`event=setaside drop=${name} `));
    // Every set-aside drop is in hold/ (none replaced another of the same
    // name): wait for the log and hold/ to agree (the last one may be in flight).
    const heldNow = async () =>
      (await Array.fromAsync(Deno.readDir(s.hold))).filter((e) => e.name.startsWith(name));
    const logged = async () => (await events(s)).filter((l) => l.includes(` drop=${name} `));
    let mine = await logged();
    let held = await heldNow();
    for (let i = 0; i < 20 && held.length !== mine.length; i++) {
      await sleep(100);
      mine = await logged();
      held = await heldNow();
    }
    assert.equal(held.length, mine.length, "hold/ lost a set-aside drop");
    const symlinks = mine.filter((l) => l === setAsideLine(name, s.evil.uid, "symlink")).length;
    const regular =
      mine.filter((l) => l === setAsideLine(name, s.evil.uid, "malformed request line"))
        .length;
    const swapped =
      mine.filter((l) => l === setAsideLine(name, s.evil.uid, "replaced between check and open"))
        .length;
    assert.equal(mine.length, symlinks + regular + swapped, mine.join("\n"));
    assert.ok(symlinks > 0, "no symlink was ever taken");
    assert.ok(regular > 0, "no regular drop was ever taken");
    let heldLinks = 0;
    for await (const e of Deno.readDir(s.hold)) {
      if (!e.name.startsWith(name) || !e.isSymlink) continue;
      assert.equal(await Deno.readLink(`${s.hold}/${e.name}`), target);
      heldLinks++;
    }
    assert.ok(heldLinks > 0, "hold/ holds no symlink");
    assert.deepEqual(await acceptedFrom(s, [0, s.evil.uid]), []);
    await expectNoToken(s.box, s.decoy.rootTok);
    console.log(
      `  ${loops} swaps; taken: ${symlinks} symlinks, ${regular} regular, ${swapped} replaced ` +
        `(${held.length} entries in hold/); control ${ms} ms`,
    );
  },
);

attackTest(
  "10 000 empty drops from one user are set aside; another user's mail still flows",
  async (s) => {
    const started = Date.now();
    const rss0 = await rssKb(s);
    assert.deepEqual(await hands(s, s.evil, [["flood", s.drop, 5000]]), ["ok:5000"]);
    const tok = token("flood-control");
    const sent = Date.now();
    const res = await s.bed.sendAs(s.ann, [s.to], `Subject: flood\n\n${tok}\n`);
    assert.equal(res.code, 0, res.stderr);
    const submitMs = Date.now() - sent;
    assert.deepEqual(await hands(s, s.evil, [["flood", s.drop, 5000]]), ["ok:5000"]);
    const written = Date.now() - started;
    await takeByToken(s.box, tok, 45_000);
    const latency = Date.now() - sent;
    const reason = setAsideLine("X", s.evil.uid, "no request line").split("reason=")[1];
    const count = async () =>
      (await events(s)).filter((l) =>
        l.startsWith("event=setaside drop=d") && l.endsWith(` uid=${s.evil.uid} reason=${reason}`)
      ).length;
    const deadline = Date.now() + 45_000;
    while ((await count()) < 10_000) {
      assert.ok(Date.now() < deadline, `only ${await count()} of 10000 set aside`);
      await sleep(200);
    }
    const all = Date.now() - started;
    assert.equal(await count(), 10_000);
    const held = (await Array.fromAsync(Deno.readDir(s.hold))).filter((e) => e.isFile).length;
    assert.equal(held, 10_000);
    assert.deepEqual(await acceptedFrom(s, [s.evil.uid]), []);
    await assertServiceAlive(s);
    const rss1 = await rssKb(s);
    const after = await control(s, "flood-control-after");
    console.log(
      `  10000 drops written in ${written} ms; control submitted in ${submitMs} ms, in the Maildir ` +
        `${latency} ms after; all set aside after ${all} ms; RSS ${rss0} -> ${rss1} kB; ` +
        `control after: ${after} ms`,
    );
  },
);

attackTest(
  "guessing or squatting names: no listing, no reading replies or the queue, mailq shows own mail only",
  async (s) => {
    const sp = s.bed.spool;
    // The victim's message waits: the relay is down.
    const tok = token("waiting");
    const res = await s.bed.sendAs(s.ann, [s.to], `Subject: waiting\n\n${tok}\n`);
    assert.equal(res.code, 0, res.stderr);
    await waitEvent(
      s,
      "deferred",
      (l) => l.startsWith("event=deferred ") && l.includes(` uid=${s.ann.uid} `),
    );
    const annQ = await s.bed.sendAs(s.ann, [s.bed.sendmail, "-bp"]);
    assert.equal(annQ.code, 0, annQ.stderr);
    assert.ok(annQ.stdout.includes(s.to), annQ.stdout);
    const id = /^([0-9A-F]{10}) /m.exec(annQ.stdout)?.[1];
    assert.ok(id, annQ.stdout);

    // Squatting: many names of every kind, all empty.
    const squat: Step[] = [];
    const names: string[] = [];
    for (let i = 0; i < 100; i++) {
      for (const k of ["t", "d", "q"]) {
        const name = `${k}${hex()}`;
        names.push(name);
        squat.push(["create", `${s.drop}/${name}`]);
      }
    }
    assert.deepEqual(await hands(s, s.evil, squat), squat.map(() => "ok"));
    for (const name of names.filter((n) => n.startsWith("d")).slice(0, 5)) {
      await setAside(s, name, s.evil.uid, "no request line");
    }
    await waitEvent(s, "bad-request", (l) => l.startsWith("event=bad-request drop=q"));

    // Guessing: nothing of the spool can be listed, read or written but drop/.
    const guesses: Step[] = [
      ["list", s.drop],
      ["list", `${sp}/reply`],
      ["read", `${sp}/reply/${hex()}`],
      ["list", `${sp}/queue`],
      ["list", `${sp}/queue/new`],
      ["read", `${sp}/queue/new/${id}`],
      ["list", `${sp}/incoming`],
      ["list", `${sp}/hold`],
      ["list", `${sp}/root`],
      ["create", `${sp}/reply/${hex()}`],
      ["create", `${sp}/queue/${id}`],
      ["create", `${sp}/queue/new/m${hex()}`],
      ["create", `${sp}/incoming/d${hex()}`],
      ["create", `${sp}/hold/d${hex()}`],
      ["create", `${sp}/root/d${hex()}`],
      ["create", `${sp}/m${hex()}`],
    ];
    assert.deepEqual(await hands(s, s.evil, guesses), [
      "EACCES",
      "EACCES",
      "ENOENT",
      ...guesses.slice(3).map(() => "EACCES"),
    ]);

    // mailq: the attacker sees nothing of the victim's; removing it fails.
    const evilQ = await s.bed.sendAs(s.evil, [s.bed.sendmail, "-bp"]);
    assert.equal(evilQ.code, 0, evilQ.stderr);
    assert.equal(evilQ.stdout, "Mail queue is empty\n");
    const rm = await s.bed.sendAs(s.evil, [SSHSENDMAIL, "--remove", id]);
    assert.notEqual(rm.code, 0);
    const stillQ = await s.bed.sendAs(s.ann, [s.bed.sendmail, "-bp"]);
    assert.ok(stillQ.stdout.includes(id), stillQ.stdout);

    // The relay back: the victim's flush delivers it (the positive control).
    await relayUp(s, true);
    const flush = await s.bed.sendAs(s.ann, [s.bed.sendmail, "-q", "-v"]);
    assert.equal(flush.code, 0, flush.stderr + flush.stdout);
    assert.match(flush.stdout, /delivered 1, deferred 0, failed 0, expired 0; 0 waiting/);
    await takeByToken(s.box, tok);
    await control(s);
  },
  { relayDown: true },
);

attackTest(
  "retry state or a tmp sweep through a planted symlink: users can create nothing in the spool but drops",
  async (s) => {
    const sp = s.bed.spool;
    // A deferral writes retry state (the old attack's trigger).
    const tok = token("evil-deferred");
    const sent = await s.bed.sendAs(s.evil, [s.to], `Subject: deferred\n\n${tok}\n`);
    assert.equal(sent.code, 0, sent.stderr);
    await waitEvent(
      s,
      "deferred",
      (l) => l.startsWith("event=deferred ") && l.includes(` uid=${s.evil.uid} `),
    );
    // The queue tree and the private parts: the service's, nobody else's.
    for (
      const part of [
        "queue",
        "queue/tmp",
        "queue/new",
        "queue/failed",
        "queue/state",
        "incoming",
        "hold",
      ]
    ) {
      const info = await Deno.lstat(`${sp}/${part}`);
      assert.ok(info.isDirectory && !info.isSymlink, part);
      assert.equal(info.uid, s.bed.service.uid, part);
      assert.equal((info.mode ?? 0) & 0o7777, 0o700, part);
    }
    const states = await Array.fromAsync(Deno.readDir(`${sp}/queue/state`));
    assert.equal(states.length, 1, "one retry state");
    const state = await Deno.lstat(`${sp}/queue/state/${states[0]!.name}`);
    assert.ok(state.isFile && state.uid === s.bed.service.uid && ((state.mode ?? 0) & 0o077) === 0);

    // Planting anywhere but drop/ fails; so does the old DoS (a directory in the top).
    const stale = `t${hex()}`;
    const staleDir = `t${hex()}`;
    const steps: Step[] = [
      ["symlink", `${sp}/queue/state/.m${hex()}.tmp`, "/etc/shadow"],
      ["symlink", `${sp}/queue/tmp2`, s.decoy.dir],
      ["symlink", `${sp}/incoming/d${hex()}`, "/etc/shadow"],
      ["symlink", `${sp}/hold/d${hex()}`, "/etc/shadow"],
      ["symlink", `${sp}/reply/alive.tmp`, "/etc/shadow"],
      ["symlink", `${sp}/root/d${hex()}`, "/etc/shadow"],
      ["rename", `${sp}/queue`, s.drop],
      ["mkdir", `${sp}/zz`],
      ["mkdir", `${sp}/0`],
      ["mkdir", `${sp}/${s.evil.uid}`],
      // The old tmp sweep, adapted: an old temp name that links to a
      // directory of old files, and an old temp directory.
      ["symlink", `${s.drop}/${stale}`, `${s.decoy.dir}/old`],
      ["age", `${s.drop}/${stale}`, 7200],
      ["mkdir", `${s.drop}/${staleDir}`],
      ["create", `${s.drop}/${staleDir}/f`],
      ["age", `${s.drop}/${staleDir}/f`, 7200],
      ["age", `${s.drop}/${staleDir}`, 7200],
    ];
    assert.deepEqual(await hands(s, s.evil, steps), [
      ...steps.slice(0, 10).map(() => "EACCES"),
      ...steps.slice(10).map(() => "ok"),
    ]);
    // The attacker's flush: the service defers again, writing state in its own tree.
    const flush = await s.bed.sendAs(s.evil, [s.bed.sendmail, "-q", "-v"]);
    assert.equal(flush.code, 75, flush.stderr + flush.stdout);
    assert.match(flush.stdout, /delivered 0, deferred 1, failed 0, expired 0; 1 waiting/);
    const link = await setAside(s, stale, s.evil.uid, "abandoned while written");
    assert.ok(link.isSymlink);
    const dir = await leftInDrop(s, staleDir, s.evil.uid);
    assert.ok(dir.isDirectory);
    assert.ok((await Deno.lstat(`${s.drop}/${staleDir}/f`)).isFile, "the old file inside was kept");

    // The relay back: both users' mail flows.
    await relayUp(s, true);
    const again = await s.bed.sendAs(s.evil, [s.bed.sendmail, "-q", "-v"]);
    assert.equal(again.code, 0, again.stderr + again.stdout);
    await takeByToken(s.box, tok);
    await control(s);
  },
  { relayDown: true },
);

attackTest(
  "a directory as a drop (mkdir in drop/) is left aside, logged once; the service keeps working",
  async (s) => {
    const msg = `d${hex()}`;
    const req = `q${hex()}`;
    const other = `zz${hex()}`;
    const res = await hands(s, s.evil, [
      ["mkdir", `${s.drop}/${msg}`],
      ["put", `${s.drop}/${msg}/inner`, dropText(["--", s.to], "inner", s.decoy.ownTok)],
      ["symlink", `${s.drop}/${msg}/shadow`, "/etc/shadow"],
      ["mkdir", `${s.drop}/${req}`],
      ["mkdir", `${s.drop}/${other}`],
    ]);
    assert.deepEqual(res, ["ok", "ok", "ok", "ok", "ok"]);
    for (const name of [msg, req, other]) {
      const left = await leftInDrop(s, name, s.evil.uid);
      assert.ok(left.isDirectory);
    }
    assert.ok((await Deno.lstat(`${s.drop}/${msg}/shadow`)).isSymlink);
    assert.ok((await Deno.lstat(`${s.drop}/${msg}/inner`)).isFile);
    await assert.rejects(Deno.lstat(`${s.bed.spool}/reply/${req.slice(1)}`), Deno.errors.NotFound);
    assert.deepEqual(await acceptedFrom(s, [0, s.evil.uid]), []);
    await control(s);
    // Logged once, not on every intake since (the control made one, the
    // periodic sweep may make another).
    const lines = (await events(s)).filter((l) => l.startsWith("event=setaside "));
    assert.equal(lines.length, 3, lines.join("\n"));
    await expectNoToken(s.box, s.decoy.ownTok);
  },
);

attackTest(
  "newline, U+0085 or ESC in a recipient, sender or drop name never reaches a log line raw",
  async (s) => {
    const forged = "event=delivered id=mforged";
    // Through sendmail: refused before anything is dropped.
    for (
      const rcpt of [`a\n${forged}@relay.test`, "a\u0085b@relay.test", "\u001b[2Jx@relay.test"]
    ) {
      const res = await s.bed.sendAs(s.evil, [rcpt], "Subject: x\n\nx\n");
      assert.notEqual(res.code, 0, JSON.stringify(rcpt));
      assert.ok(!res.stderr.includes("\u001b") && !res.stderr.includes("\u0085"), res.stderr);
    }
    // Raw drops carrying them past the client.
    const drops: Array<[string, string[], string]> = [
      [
        `d${hex()}`,
        ["--", `a\n${forged}@relay.test`],
        "request refused (invalid recipient address)",
      ],
      [`d${hex()}`, ["--", "a\u0085b@relay.test"], "request refused (invalid recipient address)"],
      [
        `d${hex()}`,
        ["--", "\u001b]0;pwned\u0007x@relay.test"],
        "request refused (invalid recipient address)",
      ],
      [
        `d${hex()}`,
        ["-f", `\u001b[31m\n${forged}@x`, "--", s.to],
        "request refused (invalid sender address)",
      ],
    ];
    const steps: Step[] = drops.map(([name, words]) => [
      "put",
      `${s.drop}/${name}`,
      dropText(words, "ctl", s.decoy.ownTok),
    ]);
    // A raw newline inside the JSON line: no longer one line of JSON.
    const raw = `d${hex()}`;
    steps.push(["put", `${s.drop}/${raw}`, `["--","a\n${forged}@relay.test"]\nSubject: x\n\nx\n`]);
    // Names holding them (not drop names: set aside as such).
    const badNames = [`d\n${forged}`, `\u001b[2J${hex()}`, `d\u0085${hex()}`];
    for (const n of badNames) steps.push(["create", `${s.drop}/${n}`]);
    assert.deepEqual(await hands(s, s.evil, steps), steps.map(() => "ok"));
    for (const [name, , reason] of drops) await setAside(s, name, s.evil.uid, reason);
    await setAside(s, raw, s.evil.uid, "malformed request line");
    for (const n of badNames) {
      // deno-lint-ignore no-control-regex
      const shown = n.replace(/[\n\u001b\u0085]/g, "?");
      await waitEvent(
        s,
        `for ${JSON.stringify(n)}`,
        (l) => l === setAsideLine(shown, s.evil.uid, "unexpected name"),
      );
      assert.ok((await Deno.lstat(`${s.hold}/${n}`)).isFile);
    }
    // The forged text shows only inside the set-aside line that quotes the name.
    const lines = await events(s);
    const forging = lines.filter((l) => l.includes("mforged"));
    assert.equal(forging.length, 1, forging.join("\n"));
    assert.ok(forging[0]!.startsWith("event=setaside "), forging[0]);
    const bytes = await Deno.readFile(s.syslog.file);
    assert.ok(!bytes.includes(0x1b), "ESC in the log");
    assert.doesNotMatch(decoder.decode(bytes), /\u0085|#012|#033|#015/);
    assert.deepEqual(await acceptedFrom(s, [s.evil.uid]), []);
    await control(s);
    await expectNoToken(s.box, s.decoy.ownTok);
  },
);

// ---------------------------------------------------------------- root's side

/** A path of the spool a traced system call touched. */
interface Touch {
  call: string;
  path: string;
}

/** Runs argv as root under `strace -f -e trace=%file`; returns the spool paths it touched. */
async function traced(
  s: Scene,
  argv: string[],
  stdin?: string,
): Promise<{ code: number; out: string; touches: Touch[] }> {
  const log = `${s.bed.dir}/strace.${hex()}`;
  const res = await run("/usr/bin/strace", [
    "-f",
    "-qq",
    "-s",
    "4096",
    "-y",
    "-e",
    "trace=%file",
    "-o",
    log,
    "/usr/bin/env",
    "-i",
    `PATH=${PATH}`,
    "HOME=/root",
    "USER=root",
    "LOGNAME=root",
    "LANG=C.UTF-8",
    `SSHSENDMAIL_CONFIG=${s.bed.conf}`,
    ...argv,
  ], { check: false, ...(stdin === undefined ? {} : { stdin }) });
  const text = await Deno.readTextFile(log);
  const touches: Touch[] = [];
  const top = s.bed.spool;
  const pathRe = new RegExp(`${top.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(/[^"<>]*)?`, "g");
  for (const line of text.split("\n")) {
    const call = /^\d+\s+([a-z0-9_]+)\(/.exec(line)?.[1] ?? "resumed";
    for (const m of line.matchAll(pathRe)) touches.push({ call, path: m[1] ?? "" });
  }
  return { code: res.code, out: res.stdout + res.stderr, touches };
}

const METADATA_CALLS = new Set([
  "stat",
  "lstat",
  "newfstatat",
  "statx",
  "readlink",
  "readlinkat",
  "access",
  "faccessat",
  "faccessat2",
]);

/** Touches outside root/ (the spool's top itself, by metadata, is fine). */
function outsideRootDir(touches: Touch[], allow: (t: Touch) => boolean = () => false): Touch[] {
  return touches.filter((t) =>
    !(t.path === "" && METADATA_CALLS.has(t.call)) && t.path !== "/root" &&
    !t.path.startsWith("/root/") && !allow(t)
  );
}

attackTest(
  "root's sendmail -q and --flush --all only ask the service: no path work in users' directories",
  async (s) => {
    // Something the old flush would have walked: a planted link in drop/.
    assert.deepEqual(await hands(s, s.evil, [["symlink", `${s.drop}/t${hex()}`, "/etc/shadow"]]), [
      "ok",
    ]);
    await control(s);
    const aliveStat = (t: Touch) => t.path === "/reply/alive" && METADATA_CALLS.has(t.call);
    const runs: Array<[string, string[]]> = [
      ["sendmail -q -v", [s.bed.sendmail, "-q", "-v"]],
      ["sshsendmail --flush --all -v", [SSHSENDMAIL, "--flush", "--all", "-v"]],
    ];
    for (const [label, argv] of runs) {
      const r = await traced(s, argv);
      assert.equal(r.code, 0, `${label}: ${r.out}`);
      assert.match(r.out, /delivered 0, deferred 0, failed 0, expired 0; 0 waiting/, label);
      assert.ok(
        r.touches.some((t) => t.path.startsWith("/root/q")),
        `${label}: no request in root/`,
      );
      assert.ok(r.touches.some(aliveStat), `${label}: never looked at reply/alive`);
      assert.deepEqual(outsideRootDir(r.touches, aliveStat), [], label);
      console.log(
        `  ${label}: ${r.touches.length} spool paths touched, all in root/ or reply/alive (stat)`,
      );
    }
  },
);

attackTest(
  "root's sendmail writes only into root/ (never into drop/ or the service's directories)",
  async (s) => {
    assert.deepEqual(await hands(s, s.evil, [["symlink", `${s.drop}/d${hex()}`, "/etc/shadow"]]), [
      "ok",
    ]);
    const tok = token("root-traced");
    const r = await traced(s, [s.bed.sendmail, s.to], `Subject: root\n\n${tok}\n`);
    assert.equal(r.code, 0, r.out);
    assert.ok(
      r.touches.some((t) => /^\/root\/t[0-9a-f]{32}$/.test(t.path) && t.call === "openat"),
      "no temp drop in root/",
    );
    assert.ok(
      r.touches.some((t) => /^\/root\/d[0-9a-f]{32}$/.test(t.path) && t.call.startsWith("rename")),
      "no rename in root/",
    );
    assert.deepEqual(outsideRootDir(r.touches), []);
    console.log(`  root's sendmail: ${r.touches.length} spool paths touched, all in root/`);
    await takeByToken(s.box, tok);
    await control(s);
  },
);
