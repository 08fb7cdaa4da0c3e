/**
 * The satellite service's queue end to end, under faults: local users run
 * `sendmail` (dist/sshsendmail through the bed's symlink, as real accounts)
 * → the drop directory → `sshsendmail --serve` (as its own account, started
 * as its unit says; tests/e2e/_service.ts) → its private queue → one batch
 * session over real ssh → (optionally a cutting TCP proxy,
 * tests/e2e/_proxy.ts) → real sshd → dist/rsendmail --batch → the relay's
 * Postfix → Maildir. The last test drives dist/rsendmail's batch protocol
 * directly.
 *
 * Every message carries a unique token in its Subject; a collector reads
 * this file's own Maildir (account rsmqueue), counts deliveries per token
 * and compares each delivered body with the SHA-256 of the one sent, so
 * "lost", "duplicate" and "partial" are counted, not guessed. The tests
 * read the service's queue as root (the product lets no user look there)
 * and check every queued file against the message that was submitted.
 *
 * Randomness (sizes, cut points, kill delays) comes from fixed seeds.
 *
 * Run (builds first): `deno task test tests/e2e/queue_test.ts` (root).
 *
 * @module
 */

import assert from "node:assert/strict";
import { frameHeader } from "../../lib/shared/batch.ts";
import { Queue } from "../../lib/client/queue_io.ts";
import { newMessageId } from "../../lib/client/queue_entry.ts";
import {
  type Account,
  account,
  closedPort,
  concat,
  expectNoToken,
  type Mailbox,
  relayStatePath,
  RSENDMAIL,
  run,
  type RunResult,
  sha256Hex,
  sleep,
  startPostfix,
  takeByToken,
  uidOf,
  waitFor,
} from "./_bed.ts";
import { names, type ServiceBed, startServiceBed } from "./_service.ts";
import { type Proxy, startProxy } from "./_proxy.ts";

const ACCOUNT = "rsmqueue";
const SENDER_ACCOUNT = "rsmqsender";
/** The local accounts that submit (besides root). */
const SENDERS = ["rsmqa", "rsmqb", "rsmqc"];
const ROOT: Account = { name: "root", uid: 0, gid: 0, home: "/root" };
const RCPT = `${ACCOUNT}@relay.test`;
const QSENDER = "qsender@relay.test";
/** Unique to this run: labels and tokens carry it. */
const RUN = crypto.randomUUID().slice(0, 8);
const LABEL = `rsmqueue-${RUN}`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------- helpers

/** mulberry32: a small seeded PRNG, [0, 1). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-";

/** Deterministic filler text of exactly `size` bytes, 72-char lines. */
function filler(size: number, seed: number): string {
  const r = rng(seed);
  const parts: string[] = [];
  let left = size;
  while (left > 0) {
    const len = Math.min(72, left - 1);
    let line = "";
    for (let i = 0; i < len; i++) line += ALPHABET[Math.floor(r() * ALPHABET.length)];
    parts.push(`${line}\n`);
    left -= len + 1;
  }
  return parts.join("");
}

/** A whole message for `tok`: headers Postfix will not add to, then the body. */
function message(tok: string, body: string, from = QSENDER): Uint8Array {
  return encoder.encode(
    [
      `From: <${from}>`,
      `To: <${RCPT}>`,
      `Subject: q ${tok}`,
      "Date: Mon, 01 Jan 2024 00:00:00 +0000",
      `Message-ID: <${tok}@satellite.test>`,
      "",
      `first ${tok}`,
      body,
    ].join("\n"),
  );
}

/** The body (after the first empty line) of a message's bytes. */
function bodyOf(bytes: Uint8Array): Uint8Array {
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes[i] === 0x0a && bytes[i + 1] === 0x0a) return bytes.subarray(i + 2);
  }
  return new Uint8Array(0);
}

/** The token in a message's Subject. */
function tokenOf(bytes: Uint8Array): string | undefined {
  return /^Subject: q (\S+)$/m.exec(decoder.decode(bytes.subarray(0, 4096)))?.[1];
}

/**
 * Counts deliveries per token in a Maildir, checking each body against the
 * one sent. Removes what it has read.
 */
class Collector {
  readonly expected = new Map<string, string>();
  /** SHA-256 of each whole message as submitted (what the queue must hold). */
  readonly whole = new Map<string, string>();
  readonly count = new Map<string, number>();
  readonly partial: string[] = [];
  unknown = 0;
  constructor(readonly box: Mailbox) {}

  /** Registers a message that may be delivered (its whole bytes). */
  async expect(tok: string, msg: Uint8Array): Promise<void> {
    this.expected.set(tok, await sha256Hex(bodyOf(msg)));
    this.whole.set(tok, await sha256Hex(msg));
  }

  async scan(): Promise<void> {
    let names: string[] = [];
    try {
      names = (await Array.fromAsync(Deno.readDir(`${this.box.dir}/new`))).map((e) => e.name);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    for (const name of names) {
      const path = `${this.box.dir}/new/${name}`;
      const bytes = await Deno.readFile(path).catch(() => undefined);
      if (bytes === undefined) continue;
      await Deno.remove(path).catch(() => {});
      const tok = tokenOf(bytes);
      const want = tok === undefined ? undefined : this.expected.get(tok);
      if (tok === undefined || want === undefined) {
        this.unknown++;
        continue;
      }
      this.count.set(tok, (this.count.get(tok) ?? 0) + 1);
      if ((await sha256Hex(bodyOf(bytes))) !== want) this.partial.push(tok);
    }
  }

  /** Scans until every token in `must` arrived (or timeout), then a while longer for repeats. */
  async settle(must: Iterable<string>, timeoutMs = 60000, graceMs = 1500): Promise<void> {
    const wanted = [...must];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.scan();
      if (wanted.every((t) => this.count.has(t)) || Date.now() > deadline) break;
      await sleep(200);
    }
    await sleep(graceMs);
    await this.scan();
  }

  /** lost: tokens of `must` never delivered; duplicates: extra deliveries of any token. */
  tally(must: Iterable<string>): { lost: string[]; duplicates: number; partial: number } {
    const lost = [...must].filter((t) => !this.count.has(t));
    let duplicates = 0;
    for (const n of this.count.values()) duplicates += n - 1;
    return { lost, duplicates, partial: this.partial.length };
  }
}

/** Empties a Maildir's new/ and cur/. */
async function clearBox(box: Mailbox): Promise<void> {
  for (const sub of ["new", "cur"]) {
    try {
      for await (const e of Deno.readDir(`${box.dir}/${sub}`)) {
        await Deno.remove(`${box.dir}/${sub}/${e.name}`).catch(() => {});
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

function uidOfRelay(): Promise<number> {
  return uidOf("rsmrelay");
}

/** A service bed of this file: its own relay key label, senders, and the route to the relay. */
interface QBed {
  bed: ServiceBed;
  /** The relay key's label (its own duplicate record, its own relay processes). */
  label: string;
  /** The service's queue, read as root. */
  queue: Queue;
  qdir: string;
  box: Mailbox;
  senderBox: Mailbox;
  senders: Account[];
  /** The port the service's config names. */
  port: number;
  /** The proxy in front of the relay (route "proxy"). */
  proxy: Proxy | undefined;
  /**
   * Closes the proxy's connections (ending the service's session) and
   * listens again on the same port; resolves when the service's ssh is gone.
   */
  resetProxy(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a service bed whose config names the relay itself ("direct"), a
 * proxy in front of it ("proxy"), or a closed port ("down"; trusted, so
 * that the relay may come back there).
 */
async function startBed(
  o: {
    route?: "direct" | "proxy" | "down";
    extra?: string[];
    label?: string;
    /** More admin options of the relay's forced command. */
    relay?: string;
  } = {},
): Promise<QBed> {
  const postfix = await startPostfix();
  const label = o.label ?? LABEL;
  const admin = o.relay === undefined ? "" : ` ${o.relay}`;
  const bed = await startServiceBed({
    deferStart: true,
    keyOptions: `restrict,command="${RSENDMAIL} --label ${label}${admin}"`,
    ...(o.extra === undefined ? {} : { extra: o.extra }),
  });
  let proxy: Proxy | undefined;
  let port = bed.relay.port;
  try {
    if (o.route === "proxy") {
      proxy = startProxy(bed.relay.port);
      port = proxy.port;
    } else if (o.route === "down") {
      port = closedPort();
    }
    if (port !== bed.relay.port) {
      await bed.trustPort(port);
      await bed.writeConfig([], port);
    }
    await bed.start();
  } catch (err) {
    await proxy?.close();
    await bed.stop();
    throw err;
  }
  const qdir = `${bed.spool}/queue`;
  const q: QBed = {
    bed,
    label,
    queue: new Queue(qdir),
    qdir,
    box: postfix.mailbox(ACCOUNT),
    senderBox: postfix.mailbox(SENDER_ACCOUNT),
    senders: await Promise.all(SENDERS.map((name) => account(name))),
    port,
    proxy,
    async resetProxy() {
      if (!q.proxy) return;
      await q.proxy.close();
      q.proxy = await listenAgain(bed.relay.port, q.port);
      await waitForSsh(bed.key);
      await sleep(50); // the service sees its session end
    },
    async stop() {
      await q.proxy?.close();
      await bed.stop();
    },
  };
  return q;
}

/** A proxy on `port` again (the closed one's sockets may hold it a moment). */
async function listenAgain(target: number, port: number): Promise<Proxy> {
  for (let i = 0;; i++) {
    try {
      return startProxy(target, port);
    } catch (err) {
      if (!(err instanceof Deno.errors.AddrInUse) || i >= 250) throw err;
      await sleep(20);
    }
  }
}

/** Submits a message as `user` (`sendmail -f QSENDER -- RCPT`): exit 0, silent. */
async function submit(q: QBed, user: Account, msg: Uint8Array): Promise<void> {
  const res = await q.bed.sendAs(user, ["-f", QSENDER, "--", RCPT], msg);
  assert.deepEqual([res.code, res.stdout, res.stderr], [0, "", ""], `sendmail as ${user.name}`);
}

/** Runs `sendmail ARGS` as root (root's requests cover every message). */
function asRoot(q: QBed, args: string[]): Promise<RunResult> {
  return q.bed.sendAs(ROOT, args);
}

/** Root's `sendmail -q -v`: the service runs the whole queue now. */
async function flush(q: QBed): Promise<RunResult> {
  const res = await asRoot(q, ["-q", "-v"]);
  assert.ok(res.code === 0 || res.code === 75, `sendmail -q: ${res.code} ${res.stderr}`);
  return res;
}

/** Nothing waits to be taken: no drop in drop/ or root/, nothing claimed in incoming/. */
async function intakeDone(q: QBed): Promise<boolean> {
  const spool = q.bed.spool;
  if ((await names(`${spool}/drop`)).some((n) => /^[dq]/.test(n))) return false;
  for (const n of await names(`${spool}/root`)) {
    const info = await Deno.lstat(`${spool}/root/${n}`).catch(() => undefined);
    if (n.startsWith("d") && (info?.size ?? 0) > 0) return false;
  }
  return (await names(`${spool}/incoming`)).length === 0;
}

/**
 * The service has taken every drop and tried every queued message once:
 * each file in queue/new has its retry state (nothing new, nothing in flight).
 */
async function settled(q: QBed): Promise<boolean> {
  if (!await intakeDone(q)) return false;
  const state = new Set(await names(`${q.qdir}/state`));
  return (await names(`${q.qdir}/new`)).every((id) => state.has(id));
}

/** Every drop taken and every message gone from the queue. */
async function empty(q: QBed): Promise<boolean> {
  return await intakeDone(q) && (await names(`${q.qdir}/new`)).length === 0;
}

/** Flushes until the queue is empty (at most `rounds` flushes); returns how many it took. */
async function drain(q: QBed, rounds = 5): Promise<number> {
  for (let i = 0; i < rounds; i++) {
    if (await empty(q)) return i;
    await flush(q);
  }
  assert.ok(await empty(q), `queue not empty after ${rounds} flushes`);
  return rounds;
}

/**
 * The service's queue is sound: every file in new/ parses, its body matches
 * its header's size and SHA-256, and is the whole message its sender
 * submitted; no message is queued twice. Returns the queued tokens and their ids.
 */
async function checkQueue(q: QBed, collect: Collector): Promise<Map<string, string>> {
  const tokens = new Map<string, string>();
  for (const name of await names(`${q.qdir}/new`)) {
    const entry = q.queue.read(name);
    if (!entry && !await Deno.lstat(`${q.qdir}/new/${name}`).then(() => true, () => false)) {
      continue; // delivered meanwhile
    }
    assert.ok(entry, `corrupt queue file new/${name}`);
    const bytes = (await Deno.readFile(entry.path)).subarray(entry.bodyOffset);
    assert.equal(bytes.length, entry.header.size, `size of new/${name}`);
    const sha = await sha256Hex(bytes);
    assert.equal(sha, entry.header.sha256, `SHA-256 of new/${name}`);
    const tok = tokenOf(bytes);
    assert.ok(tok, `new/${name} is none of this test's messages`);
    assert.equal(sha, collect.whole.get(tok), `new/${name} (${tok}) is not the message submitted`);
    assert.ok(!tokens.has(tok), `${tok} queued twice`);
    tokens.set(tok, name);
  }
  return tokens;
}

/** Ids among `ids` that the relay recorded as delivered for `label`. */
async function recorded(q: QBed, ids: string[]): Promise<string[]> {
  const done = new Set(await names(await relayStatePath(q.bed.relay, q.label)));
  return ids.filter((id) => done.has(id));
}

/** How many relay processes (dist/rsendmail under deno) run for this label, via pgrep(1). */
async function relayProcesses(label: string): Promise<number> {
  const pattern = `/deno .*/rsendmail --label ${label}$`;
  const res = await run("/usr/bin/pgrep", ["-c", "-f", pattern], { check: false });
  return Number(res.stdout.trim()) || 0;
}

/** Waits until no ssh runs with this identity (a session's client), via pgrep(1). */
async function waitForSsh(identity: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const res = await run("/usr/bin/pgrep", ["-f", `^/usr/bin/ssh .*-i ${identity} `], {
      check: false,
    });
    if (res.code !== 0) return;
    await sleep(20);
  }
}

// ------------------------------------------------------------------ tests

Deno.test("queue: fault injection, 200 cuts over a batch, 0 partial, 0 lost", async () => {
  const WORKERS = 4;
  const TRIALS = 200;
  const SIZES = [300, 1500, 6000, 66_000, 20_000, 1_000_000, 90_000, 400, 140_000, 3000];
  const fill = SIZES.map((s, i) => filler(s, 1000 + i));
  /**
   * Each worker has its own service, relay and proxy, its key its own label:
   * its own duplicate record, its own relay processes.
   */
  const beds: QBed[] = [];
  try {
    for (let w = 0; w < WORKERS; w++) {
      beds.push(await startBed({ route: "proxy", label: `${LABEL}-w${w}` }));
    }
    const collect = new Collector(beds[0]!.box);
    await clearBox(collect.box);
    const must: string[] = [];
    /** Ten messages submitted at once by the bed's users: the service sends them in one batch. */
    const submitBatch = async (w: number, trial: number) => {
      const q = beds[w]!;
      await Promise.all(fill.map(async (body, i) => {
        const tok = `fi${RUN}.${trial}.${i}`;
        const msg = message(tok, body);
        await collect.expect(tok, msg);
        must.push(tok);
        await submit(q, q.senders[i % q.senders.length]!, msg);
      }));
    };
    // Calibration: the service → relay bytes of a whole batch, uncut.
    const q0 = beds[0]!;
    await submitBatch(0, -1);
    await waitFor("the calibration batch to be delivered", () => empty(q0), 60_000);
    assert.equal(q0.proxy!.connections.length, 1, "one session for the calibration batch");
    const calibration = q0.proxy!.connections[0]!;
    await q0.resetProxy();
    const total = calibration.up;
    assert.ok(total > 1_300_000, `batch bytes ${total}`);
    const random = rng(4242);
    const cuts = Array.from({ length: TRIALS }, () => Math.floor(random() * total));
    let cutsMade = 0;
    let flushes = 0;
    let unheard = 0;
    let relayStillRunning = 0;
    /** How many trials left k messages of 10 in the queue after the cut. */
    const leftAfterCut: number[] = [];
    const worker = async (w: number) => {
      const q = beds[w]!;
      for (let trial = w; trial < TRIALS; trial += WORKERS) {
        // The service's next session is cut; the ones after it go through.
        q.proxy!.setCut(cuts[trial], 1);
        await submitBatch(w, trial);
        await waitFor(`trial ${trial}: every message taken and tried`, () => settled(q), 60_000);
        const conns = [...q.proxy!.connections];
        if (conns[0]?.cut) cutsMade++;
        const left = await names(`${q.qdir}/new`);
        leftAfterCut[left.length] = (leftAfterCut[left.length] ?? 0) + 1;
        // The cut session's rsendmail may still be working through what reached
        // its pipe. Odd trials race it (a flush at once); even trials wait for
        // it, then count what it delivered that the service never heard of:
        // the flush must get "already delivered" for those.
        if (trial % 2 === 0) {
          await q.resetProxy();
          for (let i = 0; i < 1000 && (await relayProcesses(q.label)) > 0; i++) await sleep(20);
          // (read before adding: the workers run at once)
          const delivered = await recorded(q, left);
          unheard += delivered.length;
        } else if ((await relayProcesses(q.label)) > conns.filter((c) => !c.cut).length) {
          relayStillRunning++;
        }
        const rounds = await drain(q);
        flushes += rounds;
        // The next trial starts with no session open.
        await q.resetProxy();
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    await collect.settle(must, 120_000);
    const t = collect.tally(must);
    console.log(
      `fault injection: ${TRIALS} trials, ${t.partial} partial, ${t.lost.length} lost, ` +
        `${t.duplicates} duplicates (batch ${total} bytes up; ${cutsMade} of the ${TRIALS} ` +
        `sessions cut before their end; in the 100 waited trials ${unheard} messages ` +
        `were delivered by the cut session unheard by the service; in the 100 racing trials ` +
        `the cut session's relay was still running in ${relayStillRunning} when the flush ` +
        `began; ${flushes} flushes; ${collect.unknown} unknown mails; ` +
        `messages left after the cut → trials: ${
          leftAfterCut.map((n, k) => `${k}→${n}`).filter((_, k) => leftAfterCut[k]).join(" ")
        })`,
    );
    assert.equal(t.partial, 0, `partial: ${collect.partial.join(" ")}`);
    assert.deepEqual(t.lost, [], "lost");
    assert.equal(t.duplicates, 0, "duplicates");
    for (const q of beds) {
      assert.deepEqual(await names(`${q.qdir}/failed`), [], "failed/");
      assert.deepEqual(await names(`${q.bed.spool}/hold`), [], "hold/");
    }
  } finally {
    for (const q of beds) await q.stop();
  }
});

Deno.test("queue: kill -9 during enqueue (sendmail) and during intake and delivery (the service), 100 trials", async () => {
  const q = await startBed({ route: "down" });
  const collect = new Collector(q.box);
  await clearBox(q.box);
  const random = rng(777);
  const must = new Set<string>();
  let n = 0;
  const newMessage = async (size: number) => {
    const tok = `kill${RUN}.${n++}`;
    const msg = message(tok, filler(size, n));
    await collect.expect(tok, msg);
    return { tok, msg };
  };
  /** Runs sendmail as `user`, killing it with SIGKILL after `delay` ms; exit code, or undefined if killed. */
  const killAfter = async (user: Account, delay: number, msg: Uint8Array) => {
    const child = q.bed.spawnAs(user, ["-f", QSENDER, "--", RCPT]);
    const writer = child.stdin.getWriter();
    const writing = writer.write(msg).then(() => writer.close()).catch(() => {});
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // finished first
      }
    }, delay);
    const status = await child.status;
    clearTimeout(timer);
    await writing;
    return status.signal === "SIGKILL" ? undefined : status.code;
  };
  const timed = async (f: () => Promise<unknown>) => {
    const t0 = performance.now();
    await f();
    return performance.now() - t0;
  };
  const countRequests = async () => {
    const list = await asRoot(q, ["-bp"]);
    assert.equal(list.code, 0, list.stderr);
    return list.stdout === "Mail queue is empty\n"
      ? 0
      : Number(/^-- \d+ Kbytes in (\d+) Requests?\.$/m.exec(list.stdout)?.[1] ?? -1);
  };
  try {
    // --- sendmail killed while it writes its drop (the relay is down: all stays queued).
    let tEnqueue = 0;
    for (let i = 0; i < 3; i++) {
      const { tok, msg } = await newMessage(100_000);
      tEnqueue = Math.max(tEnqueue, await timed(() => submit(q, q.senders[i]!, msg)));
      must.add(tok);
    }
    let acked = 0;
    let killed = 0;
    let takenUnacked = 0;
    for (let trial = 0; trial < 50; trial++) {
      const { tok, msg } = await newMessage(1000 + Math.floor(random() * 300_000));
      const delay = random() * tEnqueue * 1.2;
      const code = await killAfter(q.senders[trial % q.senders.length]!, delay, msg);
      if (code === 0) {
        acked++;
        must.add(tok);
      } else {
        assert.equal(code, undefined, `sendmail exited ${code}`);
        killed++;
      }
      await waitFor("the service to take the drops", () => settled(q), 30_000);
      // Only whole messages are ever taken, and every acknowledged one is.
      const queued = await checkQueue(q, collect);
      for (const t of must) assert.ok(queued.has(t), `acknowledged ${t} not in the queue`);
      if (code === undefined && queued.has(tok)) {
        takenUnacked++; // renamed into place just before the kill: whole, so it goes out
        must.add(tok);
      }
      assert.equal(await countRequests(), queued.size, "mailq");
    }
    const drops = await names(`${q.bed.spool}/drop`);
    assert.ok(drops.every((d) => d.startsWith("t")), `drops left: ${drops}`);
    assert.deepEqual(await names(`${q.bed.spool}/hold`), [], "hold/");
    console.log(
      `kill during enqueue: 50 trials, ${acked} finished first, ${killed} killed ` +
        `(${takenUnacked} of them after the rename: taken whole); ${must.size} queued, ` +
        `${drops.length} half-written drops left untaken (max ${tEnqueue.toFixed(0)} ms)`,
    );
    // The relay is back: every queued message goes out once.
    await q.bed.stopService();
    await q.bed.writeConfig([], q.bed.relay.port);
    await q.bed.start();
    await drain(q);
    await collect.settle(must);
    let t = collect.tally(must);
    assert.equal(t.partial, 0, "partial after enqueue kills");
    assert.deepEqual(t.lost, [], "lost after enqueue kills");
    assert.equal(t.duplicates, 0, "duplicates after enqueue kills");

    // --- the service killed while it takes drops and while it delivers.
    const submit3 = async () => {
      const batch = await Promise.all(
        [0, 1, 2].map(() => newMessage(1000 + Math.floor(random() * 200_000))),
      );
      return {
        toks: batch.map((b) => b.tok),
        sending: Promise.all(batch.map((b, i) => submit(q, q.senders[i]!, b.msg))),
      };
    };
    const first = await submit3();
    const tDeliver = await timed(async () => {
      await first.sending;
      await waitFor("three messages delivered", () => empty(q), 30_000);
    });
    for (const tok of first.toks) must.add(tok);
    const tmpBefore = (await names(`${q.qdir}/tmp`)).length;
    /** Where the service was when killed: in how many trials this trial's messages were… */
    const at = { drops: 0, incoming: 0, copying: 0, queued: 0, none: 0 };
    /** Queued messages the relay had delivered when the service was killed. */
    const unheardAtKill = new Set<string>();
    for (let trial = 0; trial < 50; trial++) {
      const tmp0 = (await names(`${q.qdir}/tmp`)).length;
      const { toks, sending } = await submit3();
      await sleep(random() * tDeliver * 1.2);
      await q.bed.crash();
      // Where the service was: drops not taken, claimed but not queued, copies
      // half written, queued but not (heard) delivered. The queue is sound.
      const waiting = (await names(`${q.bed.spool}/drop`)).filter((d) => d.startsWith("d"));
      const claimed = await names(`${q.bed.spool}/incoming`);
      const copying = (await names(`${q.qdir}/tmp`)).length - tmp0;
      const queued = await checkQueue(q, collect);
      const mine = toks.filter((tok) => queued.has(tok)).length;
      if (waiting.length > 0) at.drops++;
      if (claimed.length > 0) at.incoming++;
      if (copying > 0) at.copying++;
      if (mine > 0) at.queued++;
      if (waiting.length + claimed.length + copying + mine === 0) at.none++;
      for (const id of await recorded(q, [...queued.values()])) {
        unheardAtKill.add(id);
      }
      await sending; // sendmail needs no running service: every submission succeeds
      for (const tok of toks) must.add(tok);
      await q.bed.start();
      await countRequests();
    }
    await waitFor("the restarted service to settle", () => settled(q), 60_000);
    await collect.settle([], 0, 1000);
    const before = collect.count.size;
    const left = (await names(`${q.qdir}/new`)).length;
    const tmpLeft = (await names(`${q.qdir}/tmp`)).length - tmpBefore;
    await drain(q);
    await collect.settle(must);
    t = collect.tally(must);
    console.log(
      `kill -9 of the service: 50 trials (3 messages ${tDeliver.toFixed(0)} ms to deliver); ` +
        `killed with its drops waiting in ${at.drops}, claimed in incoming/ in ${at.incoming}, ` +
        `a copy half written in ${at.copying}, queued or in flight in ${at.queued}, ` +
        `all delivered in ${at.none}; ${unheardAtKill.size} queued messages had been ` +
        `delivered by the relay unheard by the killed service; ` +
        `${before} delivered before the final flush, ${left} left for it; ${tmpLeft} ` +
        `half-written copies left in queue/tmp; ${must.size} messages: ${t.partial} partial, ` +
        `${t.lost.length} lost, ${t.duplicates} duplicates`,
    );
    assert.equal(t.partial, 0, "partial");
    assert.deepEqual(t.lost, [], "lost");
    assert.equal(t.duplicates, 0, "duplicates");
    assert.deepEqual(await names(`${q.bed.spool}/incoming`), [], "incoming/");
    assert.deepEqual(await names(`${q.bed.spool}/hold`), [], "hold/");
    assert.deepEqual(await names(`${q.qdir}/failed`), [], "failed/");
  } finally {
    await q.stop();
  }
});

Deno.test("queue: 50 concurrent senders while the service delivers, each delivered once", async () => {
  const q = await startBed({ route: "proxy" });
  const collect = new Collector(q.box);
  await clearBox(q.box);
  const random = rng(5150);
  const must: string[] = [];
  const users = [...q.senders, ROOT];
  try {
    // 100 messages wait for the service (dropped while it is stopped).
    await q.bed.stopService();
    for (let i = 0; i < 100; i += 10) {
      await Promise.all(Array.from({ length: 10 }, async (_, j) => {
        const tok = `conq${RUN}.${i + j}`;
        const msg = message(tok, filler(500 + Math.floor(random() * 50_000), i + j));
        await collect.expect(tok, msg);
        must.push(tok);
        await submit(q, q.senders[(i + j) % q.senders.length]!, msg);
      }));
    }
    const senders: Promise<RunResult>[] = [];
    await q.bed.start();
    const flushing = flush(q);
    for (let i = 0; i < 50; i++) {
      const tok = `cons${RUN}.${i}`;
      const msg = message(tok, filler(500 + Math.floor(random() * 50_000), 100 + i));
      await collect.expect(tok, msg);
      must.push(tok);
      senders.push(q.bed.sendAs(users[i % users.length]!, ["-f", QSENDER, "--", RCPT], msg));
    }
    const results = await Promise.all(senders);
    const flushed = await flushing;
    for (const r of results) assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
    assert.match(
      flushed.stdout,
      /^sshsendmail: delivered \d+, deferred 0, failed 0, expired 0; \d+ waiting\n$/,
    );
    await waitFor("every message delivered", () => empty(q), 60_000);
    await collect.settle(must);
    const t = collect.tally(must);
    const sessions = q.proxy!.connections.length;
    console.log(
      `concurrency: 100 waiting + 50 senders (3 users and root) while the service delivers, ` +
        `root's flush said "${flushed.stdout.trim()}": ${t.partial} partial, ` +
        `${t.lost.length} lost, ${t.duplicates} duplicates; ${sessions} relay session(s)`,
    );
    assert.equal(t.partial, 0);
    assert.deepEqual(t.lost, []);
    assert.equal(t.duplicates, 0);
    assert.equal(sessions, 1, "one relay session for all 150 (nothing deferred)");
    assert.deepEqual(await names(`${q.qdir}/failed`), [], "failed/");
  } finally {
    await q.stop();
  }
});

Deno.test("queue: relay down for the whole first phase, then one flush delivers all once", async () => {
  const q = await startBed({ route: "down" });
  const collect = new Collector(q.box);
  await clearBox(q.box);
  const must: string[] = [];
  let proxy: Proxy | undefined;
  const [ann, bob] = q.senders as [Account, Account];
  const deferredLine = (attempts: number) =>
    new RegExp(
      `^\\(4\\.4\\.1 sshsendmail: connection refused by the relay; ${attempts} attempts; next try in `,
      "gm",
    );
  try {
    for (let i = 0; i < 20; i++) {
      const tok = `down${RUN}.${i}`;
      const msg = message(tok, filler(200 + i * 3000, 300 + i));
      await collect.expect(tok, msg);
      must.push(tok);
      await submit(q, i % 2 === 0 ? ann : bob, msg);
    }
    await waitFor("every message taken and tried", () => settled(q), 30_000);
    let list = await asRoot(q, ["-bp"]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /-- \d+ Kbytes in 20 Requests\.\n$/);
    // One attempt each when it came in (the relay refused).
    assert.equal(list.stdout.match(deferredLine(1))?.length, 20, list.stdout);
    const mine = await q.bed.sendAs(ann, ["-bp"]);
    assert.match(mine.stdout, /-- \d+ Kbytes in 10 Requests\.\n$/, "a user sees their own");
    // Still down: a flush defers every message and says why.
    const early = await flush(q);
    assert.deepEqual([early.code, early.stderr], [75, ""]);
    assert.match(
      early.stdout,
      /^sshsendmail: delivered 0, deferred 20, failed 0, expired 0; 20 waiting \(4\.4\.1 sshsendmail: connection refused/,
    );
    assert.equal((await checkQueue(q, collect)).size, 20);
    list = await asRoot(q, ["-bp"]);
    assert.equal(list.stdout.match(deferredLine(2))?.length, 20, list.stdout);
    await collect.settle([], 0, 500);
    assert.equal(collect.count.size, 0, "nothing delivered while down");
    // The relay comes back on the same address.
    proxy = startProxy(q.bed.relay.port, q.port);
    const res = await flush(q);
    assert.deepEqual(
      [res.code, res.stdout, res.stderr],
      [0, "sshsendmail: delivered 20, deferred 0, failed 0, expired 0; 0 waiting\n", ""],
    );
    assert.equal(proxy.connections.length, 1, "one connection for the whole queue");
    assert.deepEqual(await names(`${q.qdir}/new`), []);
    list = await asRoot(q, ["-bp"]);
    assert.equal(list.stdout, "Mail queue is empty\n");
    await collect.settle(must);
    const t = collect.tally(must);
    assert.equal(t.partial, 0);
    assert.deepEqual(t.lost, []);
    assert.equal(t.duplicates, 0);
  } finally {
    await proxy?.close();
    await q.stop();
  }
});

Deno.test("queue: the relay answers again (no flush, no restart): what waits for its backoff goes at once", async () => {
  const q = await startBed({ route: "down" });
  const [ann] = q.senders as [Account];
  const must: string[] = [];
  let proxy: Proxy | undefined;
  try {
    for (let i = 0; i < 3; i++) {
      const tok = `back${RUN}.${i}`;
      must.push(tok);
      await submit(q, ann, message(tok, "waits\n"));
    }
    // Each refused once: the next try is a minute away.
    await waitFor("three deferred", () => settled(q), 30_000);
    assert.equal((await names(`${q.qdir}/state`)).length, 3);
    proxy = startProxy(q.bed.relay.port, q.port);
    // A new message finds the relay up; its delivery sends the three waiting ones too.
    const tok = `back${RUN}.new`;
    must.push(tok);
    await submit(q, ann, message(tok, "finds the relay up\n"));
    for (const t of must) await takeByToken(q.box, t);
    await waitFor("an empty queue", () => empty(q), 15_000);
  } finally {
    await proxy?.close();
    await q.stop();
  }
});

Deno.test("queue: --remove by the message's owner takes it out of the queue for good; a second --remove finds nothing (66)", async () => {
  const q = await startBed({ route: "down" });
  const [ann] = q.senders as [Account];
  const collect = new Collector(q.box);
  let proxy: Proxy | undefined;
  try {
    const tok = `rm${RUN}`;
    await collect.expect(tok, message(tok, "to be removed\n"));
    await submit(q, ann, message(tok, "to be removed\n"));
    const kept = `rm-kept${RUN}`;
    await collect.expect(kept, message(kept, "stays\n"));
    await submit(q, ann, message(kept, "stays\n"));
    await waitFor("both deferred", () => settled(q), 30_000);
    const ids = await names(`${q.qdir}/new`);
    assert.equal(ids.length, 2);
    const id = ids.find((i) => !Deno.readTextFileSync(`${q.qdir}/new/${i}`).includes(kept))!;
    const rm = await q.bed.sendAs(ann, [q.bed.sendmail, "--remove", id]);
    assert.deepEqual([rm.code, rm.stdout, rm.stderr], [0, "", ""]);
    assert.deepEqual(await names(`${q.qdir}/new`), ids.filter((i) => i !== id));
    assert.ok(!(await names(`${q.qdir}/state`)).includes(id), "its retry state stays");
    const again = await q.bed.sendAs(ann, [q.bed.sendmail, "--remove", id]);
    assert.deepEqual(
      [again.code, again.stderr],
      [66, "sshsendmail: no such message in the queue\n"],
    );
    // Control: the relay back, the flush delivers the other one only.
    proxy = startProxy(q.bed.relay.port, q.port);
    const res = await flush(q);
    assert.match(res.stdout, /delivered 1, deferred 0, failed 0, expired 0; 0 waiting/);
    await collect.settle([kept]);
    assert.deepEqual([...collect.count.keys()], [kept], "the removed message was delivered");
  } finally {
    await proxy?.close();
    await q.stop();
  }
});

Deno.test("queue: --remove of a message being delivered right now is refused for now (75), and nothing is removed; once the delivery ended unanswered, --remove takes it", async () => {
  const q = await startBed({ route: "down" });
  const [ann] = q.senders as [Account];
  // Where the relay should be, a listener that accepts and never answers:
  // the service's ssh waits for the relay's banner with the message handed over.
  const hole = Deno.listen({ hostname: "127.0.0.1", port: q.port });
  const held: Deno.Conn[] = [];
  const holding = (async () => {
    for await (const conn of hole) held.push(conn);
  })();
  try {
    const tok = `rm-busy${RUN}`;
    await submit(q, ann, message(tok, "on its way\n"));
    await waitFor("the service's ssh at the relay's address", () => held.length > 0, 30_000);
    const [id] = await names(`${q.qdir}/new`);
    assert.ok(id, "the message is queued");
    const busy = await q.bed.sendAs(ann, [q.bed.sendmail, "--remove", id]);
    assert.deepEqual(
      [busy.code, busy.stdout, busy.stderr],
      [75, "", "sshsendmail: the message is being delivered right now\n"],
    );
    assert.deepEqual(await names(`${q.qdir}/new`), [id], "the message is still queued");
    // The connection dies unanswered: the message waits for its retry.
    for (const conn of held.splice(0)) conn.close();
    await waitFor("the delivery deferred", () => settled(q), 30_000);
    const rm = await q.bed.sendAs(ann, [q.bed.sendmail, "--remove", id]);
    assert.deepEqual([rm.code, rm.stdout, rm.stderr], [0, "", ""]);
    assert.deepEqual(await names(`${q.qdir}/new`), []);
    await expectNoToken(q.box, tok);
  } finally {
    hole.close();
    for (const conn of held) conn.close();
    await holding.catch(() => {});
    await q.stop();
  }
});

Deno.test("queue: a message older than max_age goes to failed/ and its sender is told", async () => {
  const q = await startBed({ route: "down", extra: ["max_age = 2s"] });
  const who = await account(SENDER_ACCOUNT);
  const sender = `${SENDER_ACCOUNT}@relay.test`;
  const collect = new Collector(q.box);
  await clearBox(q.box);
  await clearBox(q.senderBox);
  const tok = `age${RUN}`;
  const msg = message(tok, "old news\n", sender);
  await collect.expect(tok, msg);
  let proxy: Proxy | undefined;
  try {
    const res = await q.bed.sendAs(who, ["-f", sender, "--", RCPT], msg);
    assert.deepEqual([res.code, res.stdout, res.stderr], [0, "", ""]);
    // The relay refuses the first attempt; the next one is a minute away.
    await waitFor("the first attempt", () => settled(q), 30_000);
    const queued = await names(`${q.qdir}/new`);
    assert.equal(queued.length, 1, `queue/new: ${queued}`);
    const id = queued[0]!;
    // The relay is back while the message waits: it is not sent again before
    // its age runs out; then the service gives up on it.
    proxy = startProxy(q.bed.relay.port, q.port);
    await waitFor(
      "the message to expire",
      async () => (await names(`${q.qdir}/failed`)).includes(id),
      15_000,
    );
    assert.deepEqual(await names(`${q.qdir}/failed`), [id], "failed/");
    // The notice, through the relay, with the null sender.
    const deadline = Date.now() + 15000;
    let notice: string | undefined;
    while (notice === undefined && Date.now() < deadline) {
      for (const name of await names(`${q.senderBox.dir}/new`)) {
        const text = await Deno.readTextFile(`${q.senderBox.dir}/new/${name}`);
        if (text.includes(tok)) notice = text;
      }
      if (notice === undefined) await sleep(100);
    }
    assert.ok(notice, "no failure notice in the sender's mailbox");
    const headers = notice.slice(0, notice.indexOf("\n\n") + 1);
    assert.match(headers, /^Return-Path: <>$/m);
    assert.match(headers, new RegExp(`^To: <${sender}>$`, "m"));
    assert.match(headers, /^Subject: Undelivered Mail Returned to Sender$/m);
    assert.match(headers, /^From: Mail Delivery System <MAILER-DAEMON@/m);
    assert.match(headers, new RegExp(`^Received: .*from userid ${await uidOfRelay()}\\)`, "m"));
    assert.match(notice, new RegExp(`^  <${RCPT}>$`, "m"));
    assert.match(
      notice,
      /^Reason: not delivered within 2s \(4\.4\.1 sshsendmail: connection refused by the relay\)$/m,
    );
    assert.match(notice, new RegExp(`^Subject: q ${tok}$`, "m"), "original headers quoted");
    // Nothing left: the notice went out once, the sender's queue is empty.
    await waitFor("the notice to leave the queue", () => empty(q), 15_000);
    assert.deepEqual(await names(`${q.qdir}/failed`), [id], "failed/ after the notice");
    const list = await q.bed.sendAs(who, ["-bp"]);
    assert.deepEqual([list.code, list.stdout], [0, "Mail queue is empty\n"], list.stderr);
    // The original itself never went out.
    await collect.settle([], 0, 1000);
    assert.equal(collect.count.size, 0, "expired message delivered");
  } finally {
    await proxy?.close();
    await q.stop();
  }
});

Deno.test("queue: a message the relay refuses for good (5.5.3) goes to failed/ at once, and its sender is told", async () => {
  const q = await startBed({ relay: "--max-recipients 1" });
  const who = await account(SENDER_ACCOUNT);
  const sender = `${SENDER_ACCOUNT}@relay.test`;
  const collect = new Collector(q.box);
  await clearBox(q.box);
  await clearBox(q.senderBox);
  const tok = `perm${RUN}`;
  const msg = message(tok, "two recipients, one allowed\n", sender);
  await collect.expect(tok, msg);
  try {
    const res = await q.bed.sendAs(who, ["-f", sender, "--", RCPT, "nobody@relay.test"], msg);
    assert.deepEqual([res.code, res.stdout, res.stderr], [0, "", ""]);
    // No retry, no backoff: given up on the relay's first answer.
    await waitFor(
      "the message in failed/",
      async () => (await names(`${q.qdir}/failed`)).length === 1,
      15_000,
    );
    const notice = await takeByToken(q.senderBox, tok);
    assert.match(notice, /^Return-Path: <>$/m);
    assert.match(notice, /^Subject: Undelivered Mail Returned to Sender$/m);
    assert.match(notice, /^Reason: 5\.5\.3 rsendmail: too many recipients$/m);
    await waitFor("the notice to leave the queue", () => empty(q), 15_000);
    const list = await q.bed.sendAs(who, ["-bp"]);
    assert.deepEqual([list.code, list.stdout], [0, "Mail queue is empty\n"], list.stderr);
    // The null sender (a bounce itself) is told nothing: no notice, no bounce loop.
    const tok2 = `perm-null${RUN}`;
    const bounce = message(tok2, "a bounce, refused\n", "MAILER-DAEMON@sat.test");
    const res2 = await q.bed.sendAs(who, ["-f", "", "--", RCPT, "nobody@relay.test"], bounce);
    assert.deepEqual([res2.code, res2.stdout, res2.stderr], [0, "", ""]);
    await waitFor(
      "it in failed/",
      async () => (await names(`${q.qdir}/failed`)).length === 2,
      15_000,
    );
    await waitFor("an empty queue", () => empty(q), 15_000);
    await expectNoToken(q.senderBox, tok2, 1000);
    assert.equal((await names(`${q.qdir}/failed`)).length, 2, "a notice to the null sender");
    await collect.settle([], 0, 1000);
    assert.equal(collect.count.size, 0, "refused message delivered");
  } finally {
    await q.stop();
  }
});

Deno.test("queue: batch protocol against dist/rsendmail", async (t) => {
  const postfix = await startPostfix();
  const box = postfix.mailbox(ACCOUNT);
  await clearBox(box);
  const state = await Deno.makeTempDir({ prefix: "rsm-qstate-" });
  const collect = new Collector(box);
  const label = `qbatch-${RUN}`;
  const admin = ["--label", label, "--state-dir", state, "--allow-sender", "@relay.test"];
  const batchRun = async (input: Uint8Array, extra: string[] = []) => {
    const res = await run(RSENDMAIL, [...admin, ...extra], {
      stdin: input,
      env: { SSH_ORIGINAL_COMMAND: "rsendmail --batch" },
      check: false,
    });
    return { ...res, replies: res.stdout.split("\n").filter(Boolean) };
  };
  interface Frame {
    id: string;
    tok: string;
    bytes: Uint8Array;
  }
  let seq = 0;
  const frame = async (
    opts: {
      sender?: string;
      rcpt?: string;
      size?: number;
      sha?: string;
      id?: string;
      body?: string;
    } = {},
  ): Promise<Frame> => {
    const tok = `bat${RUN}.${seq++}`;
    const msg = message(tok, opts.body ?? `body of ${tok}\n`);
    await collect.expect(tok, msg);
    const id = opts.id ?? newMessageId(crypto.randomUUID());
    const header = frameHeader([
      "-oi",
      "-f",
      opts.sender ?? "qsender@relay.test",
      `--size=${opts.size ?? msg.length}`,
      `--sha256=${opts.sha ?? await sha256Hex(msg)}`,
      `--id=${id}`,
      "--",
      opts.rcpt ?? RCPT,
    ]);
    const head = encoder.encode(`${header}\n`);
    const bytes = new Uint8Array(head.length + msg.length);
    bytes.set(head);
    bytes.set(msg, head.length);
    return { id, tok, bytes };
  };
  try {
    await t.step("refused frames in the middle do not stop the batch", async () => {
      const a = await frame();
      const badRcpt = await frame({ rcpt: "no address" });
      const b = await frame();
      const badSender = await frame({ sender: "evil@example.com" });
      const c = await frame();
      const big = await frame({ body: filler(200_000, 9) });
      const d = await frame();
      const badSha = await frame({ sha: "0".repeat(64) });
      const e = await frame();
      const dup = { ...a, tok: a.tok };
      const res = await batchRun(
        concat(
          ...[a, badRcpt, b, badSender, c, big, d, badSha, e, dup].map((f) => f.bytes),
          encoder.encode("END\n"),
        ),
        ["--max-size", "100000"],
      );
      assert.equal(res.code, 0, res.stderr);
      const want: [Frame, RegExp][] = [
        [a, / 0 2\.0\.0 delivered(, label \S+)?$/],
        [badRcpt, / 65 5\.1\.3 rsendmail: invalid recipient address$/],
        [b, / 0 2\.0\.0 delivered(, label \S+)?$/],
        [badSender, / 77 5\.7\.1 rsendmail: sender not allowed for this key$/],
        [c, / 0 2\.0\.0 delivered(, label \S+)?$/],
        [big, / 65 5\.3\.4 rsendmail: message too big$/],
        [d, / 0 2\.0\.0 delivered(, label \S+)?$/],
        [badSha, / 65 5\.6\.0 rsendmail: message does not match its SHA-256$/],
        [e, / 0 2\.0\.0 delivered(, label \S+)?$/],
        [dup, / 0 2\.0\.0 already delivered(, label \S+)?$/],
      ];
      assert.equal(res.replies.length, want.length, res.stdout);
      for (const [i, [f, re]] of want.entries()) {
        assert.ok(res.replies[i]!.startsWith(`${f.id} `), `reply ${i}: ${res.replies[i]}`);
        assert.match(res.replies[i]!, re, `reply ${i}`);
      }
      const delivered = [a, b, c, d, e].map((f) => f.tok);
      await collect.settle(delivered, 15000, 1000);
      const tally = collect.tally(delivered);
      assert.deepEqual(tally, { lost: [], duplicates: 0, partial: 0 });
      for (const f of [badRcpt, badSender, big, badSha]) {
        assert.ok(!collect.count.has(f.tok), `refused frame ${f.tok} delivered`);
      }
    });

    await t.step("a truncated last frame delivers nothing", async () => {
      const a = await frame();
      const cut = await frame({ body: filler(20_000, 11) });
      const res = await batchRun(concat(a.bytes, cut.bytes.subarray(0, cut.bytes.length - 5000)));
      assert.equal(res.code, 75, res.stderr);
      assert.equal(res.replies.length, 2, res.stdout);
      assert.match(res.replies[0]!, new RegExp(`^${a.id} 0 2\\.0\\.0 delivered(, label \\S+)?$`));
      assert.match(
        res.replies[1]!,
        new RegExp(`^${cut.id} 75 4\\.4\\.2 rsendmail: message truncated in transit$`),
      );
      await collect.settle([a.tok], 15000, 1500);
      assert.equal(collect.count.get(a.tok), 1);
      assert.ok(!collect.count.has(cut.tok), "truncated frame delivered");
      assert.equal(collect.partial.length, 0);
    });

    await t.step("a garbage header ends the batch with a '-' reply", async () => {
      const a = await frame();
      const b = await frame();
      const res = await batchRun(concat(a.bytes, encoder.encode("HELO relay\n"), b.bytes));
      assert.notEqual(res.code, 0);
      assert.equal(res.replies.length, 2, res.stdout);
      assert.match(res.replies[0]!, new RegExp(`^${a.id} 0 2\\.0\\.0 delivered(, label \\S+)?$`));
      assert.match(res.replies[1]!, /^- \d+ 5\.5\.2 rsendmail: malformed batch frame$/);
      await collect.settle([a.tok], 15000, 1500);
      assert.equal(collect.count.get(a.tok), 1);
      assert.ok(!collect.count.has(b.tok), "frame after garbage delivered");
    });
  } finally {
    await Deno.remove(state, { recursive: true }).catch(() => {});
  }
});
