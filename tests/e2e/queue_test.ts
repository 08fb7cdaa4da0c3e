/**
 * The offline queue and the batch protocol end to end: dist/sshsendmail
 * (standalone mode, SSHSENDMAIL_CONFIG) → real ssh → (optionally a cutting
 * TCP proxy, tests/e2e/_proxy.ts) → real sshd → dist/rsendmail --batch →
 * the relay's Postfix → Maildir.
 *
 * Every message carries a unique token in its Subject; a collector reads
 * this file's own Maildir (account rsmqueue), counts deliveries per token
 * and compares each delivered body with the SHA-256 of the one sent, so
 * "lost", "duplicate" and "partial" are counted, not guessed.
 *
 * Randomness (sizes, cut points, kill delays) comes from fixed seeds.
 *
 * Run (builds first): `deno task test tests/e2e/queue_test.ts` (root).
 *
 * @module
 */

import assert from "node:assert/strict";
import { frameHeader } from "../../lib/batch.ts";
import { openQueue, type Queue } from "../../lib/queue.ts";
import { newMessageId, type QueueHeader } from "../../lib/queue_entry.ts";
import { type Mailbox, type Relay, run, type RunResult, startPostfix, startRelay } from "./_bed.ts";
import { startProxy } from "./_proxy.ts";

const SSHSENDMAIL = new URL("../../dist/sshsendmail", import.meta.url).pathname;
const RSENDMAIL = new URL("../../dist/rsendmail", import.meta.url).pathname;
const ACCOUNT = "rsmqueue";
const SENDER_ACCOUNT = "rsmqsender";
const RCPT = `${ACCOUNT}@relay.test`;
/** Unique to this run: labels and tokens carry it. */
const RUN = crypto.randomUUID().slice(0, 8);
const LABEL = `rsmqueue-${RUN}`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

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

async function sha256Hex(data: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
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
function message(tok: string, body: string, from = `qsender@relay.test`): Uint8Array {
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

/**
 * Counts deliveries per token in a Maildir, checking each body against the
 * one sent. Removes what it has read.
 */
class Collector {
  readonly expected = new Map<string, string>();
  readonly count = new Map<string, number>();
  readonly partial: string[] = [];
  unknown = 0;
  constructor(readonly box: Mailbox) {}

  /** Registers a message that may be delivered (its whole bytes). */
  async expect(tok: string, msg: Uint8Array): Promise<void> {
    this.expected.set(tok, await sha256Hex(bodyOf(msg)));
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
      const head = decoder.decode(bytes.subarray(0, 4096));
      const tok = /^Subject: q (\S+)$/m.exec(head)?.[1];
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

/** A port nothing listens on (connection refused). */
function deadPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The relay, one forced-command key with this file's label, and a satellite dir. */
interface Bed {
  relay: Relay;
  key: string;
  box: Mailbox;
  senderBox: Mailbox;
  dir: string;
  /** Writes a client config for `port` and queue `queueDir`; returns its path. */
  config(
    name: string,
    port: number,
    queueDir: string,
    extra?: string[],
    key?: string,
  ): Promise<string>;
  stop(): Promise<void>;
}

async function startBed(): Promise<Bed> {
  const postfix = await startPostfix();
  const box = postfix.mailbox(ACCOUNT);
  const senderBox = postfix.mailbox(SENDER_ACCOUNT);
  await clearBox(box);
  await clearBox(senderBox);
  const relay = await startRelay();
  const key = await relay.addKey(`restrict,command="${RSENDMAIL} --label ${LABEL}"`);
  const dir = await Deno.makeTempDir({ prefix: "rsm-queue-" });
  const hostKey = (await Deno.readTextFile(relay.knownHosts)).trim().split(" ").slice(1).join(" ");
  return {
    relay,
    key,
    box,
    senderBox,
    dir,
    async config(name, port, queueDir, extra = [], identity = key) {
      const knownHosts = `${dir}/known_hosts_${port}`;
      await Deno.writeTextFile(knownHosts, `[127.0.0.1]:${port} ${hostKey}\n`);
      const path = `${dir}/${name}.conf`;
      await Deno.writeTextFile(
        path,
        [
          "host = 127.0.0.1",
          `user = ${relay.user}`,
          `port = ${port}`,
          `identity = ${identity}`,
          `known_hosts = ${knownHosts}`,
          `queue_dir = ${queueDir}`,
          "connect_timeout = 5",
          ...extra,
          "",
        ].join("\n"),
      );
      return path;
    },
    async stop() {
      await relay.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs dist/sshsendmail with this config. */
function client(conf: string, args: string[], stdin?: Uint8Array): Promise<RunResult> {
  return run(SSHSENDMAIL, args, {
    env: { SSHSENDMAIL_CONFIG: conf },
    check: false,
    ...(stdin === undefined ? {} : { stdin }),
  });
}

/** Writes a message straight into a queue, as the client would after a failed send. */
async function enqueueDirect(
  queue: Queue,
  msg: Uint8Array,
  created: number,
  sender: string | null = "qsender@relay.test",
): Promise<string> {
  const id = newMessageId(crypto.randomUUID());
  const header: QueueHeader = {
    v: 1,
    id,
    sender,
    recipients: [RCPT],
    extractRecipients: false,
    created,
    size: msg.length,
    sha256: await sha256Hex(msg),
  };
  await queue.enqueue(header, msg);
  return id;
}

/** Names in a queue subdirectory. */
async function namesIn(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/**
 * The queue is sound: every file in new/ parses and its body matches its
 * header's size and SHA-256. Returns the tokens of the queued messages.
 */
async function checkQueue(queue: Queue): Promise<Set<string>> {
  const tokens = new Set<string>();
  for (const name of await namesIn(`${queue.dir}/new`)) {
    const entry = await queue.read(name);
    assert.ok(entry, `corrupt queue file new/${name}`);
    const bytes = (await Deno.readFile(entry.path)).subarray(entry.bodyOffset);
    assert.equal(bytes.length, entry.header.size, `size of new/${name}`);
    assert.equal(await sha256Hex(bytes), entry.header.sha256, `SHA-256 of new/${name}`);
    const tok = /^Subject: q (\S+)$/m.exec(decoder.decode(bytes.subarray(0, 4096)))?.[1];
    if (tok) tokens.add(tok);
  }
  return tokens;
}

/** Flushes directly until the queue is empty (at most `rounds` flushes). */
async function drainQueue(conf: string, queue: Queue, rounds = 5): Promise<number> {
  for (let i = 0; i < rounds; i++) {
    if ((await namesIn(`${queue.dir}/new`)).length === 0) return i;
    const res = await client(conf, ["--flush"]);
    assert.ok(res.code === 0 || res.code === 75, `flush: ${res.code} ${res.stderr}`);
  }
  assert.deepEqual(await namesIn(`${queue.dir}/new`), [], "queue not empty after direct flushes");
  return rounds;
}

/** Waits until no ssh runs with this identity (a killed client's orphan), via pgrep(1). */
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
  const bed = await startBed();
  const collect = new Collector(bed.box);
  const WORKERS = 4;
  const TRIALS = 200;
  const SIZES = [300, 1500, 6000, 66_000, 20_000, 1_000_000, 90_000, 400, 140_000, 3000];
  const fill = SIZES.map((s, i) => filler(s, 1000 + i));
  const proxies = Array.from({ length: WORKERS }, () => startProxy(bed.relay.port));
  const queues: Queue[] = [];
  const viaProxy: string[] = [];
  const direct: string[] = [];
  const relayUid = await uidOfRelay();
  /** Each worker has its own key and label: its own duplicate record, its own relay processes. */
  const labels = Array.from({ length: WORKERS }, (_, w) => `${LABEL}-w${w}`);
  for (let w = 0; w < WORKERS; w++) {
    const qdir = `${bed.dir}/queue${w}`;
    const key = await bed.relay.addKey(`restrict,command="${RSENDMAIL} --label ${labels[w]}"`);
    queues.push(await openQueue(qdir, Deno.uid()!));
    viaProxy.push(await bed.config(`proxy${w}`, proxies[w]!.port, qdir, [], key));
    direct.push(await bed.config(`direct${w}`, bed.relay.port, qdir, [], key));
  }
  const must: string[] = [];
  let base = Date.now() - 60_000;
  const enqueueBatch = async (w: number, trial: number) => {
    const ids: string[] = [];
    for (const [i, body] of fill.entries()) {
      const tok = `fi${RUN}.${trial}.${i}`;
      const msg = message(tok, body);
      await collect.expect(tok, msg);
      ids.push(await enqueueDirect(queues[w]!, msg, base++));
      must.push(tok);
    }
    return ids;
  };
  /** Ids the relay has recorded as delivered for worker w. */
  const recorded = async (w: number, ids: string[]) => {
    const names = new Set(await namesIn(`/var/tmp/rsendmail-${relayUid}/${labels[w]}`));
    return ids.filter((id) => names.has(id)).length;
  };
  try {
    // Calibration: the client → server bytes of a whole batch, uncut.
    await enqueueBatch(0, -1);
    const cal = await client(viaProxy[0]!, ["--flush"]);
    assert.equal(cal.code, 0, cal.stderr);
    const total = proxies[0]!.connections.at(-1)!.up;
    assert.ok(total > 1_300_000, `batch bytes ${total}`);
    const random = rng(4242);
    const cuts = Array.from({ length: TRIALS }, () => Math.floor(random() * total));
    let cutFlushesOk = 0;
    let extraFlushes = 0;
    let unheard = 0;
    let relayStillRunning = 0;
    /** How many trials left k messages of 10 for the direct flush. */
    const leftAfterCut: number[] = [];
    const worker = async (w: number) => {
      for (let trial = w; trial < TRIALS; trial += WORKERS) {
        const ids = await enqueueBatch(w, trial);
        proxies[w]!.setCut(cuts[trial]);
        const res = await client(viaProxy[w]!, ["--flush"]);
        assert.ok(res.code === 0 || res.code === 75, `cut flush: ${res.code} ${res.stderr}`);
        if (res.code === 0) cutFlushesOk++;
        const left = (await namesIn(`${queues[w]!.dir}/new`)).length;
        leftAfterCut[left] = (leftAfterCut[left] ?? 0) + 1;
        // The cut session's rsendmail may still be working through what reached
        // its pipe. Odd trials race it (as a user retrying at once would); even
        // trials wait for it, then count what it delivered that the client never
        // heard of: the direct flush must get "already delivered" for those.
        const pattern = `rsendmail --label ${labels[w]}$`;
        const alive = async () =>
          (await run("/usr/bin/pgrep", ["-f", pattern], { check: false })).code === 0;
        if (trial % 2 === 0) {
          for (let i = 0; i < 250 && await alive(); i++) await sleep(20);
          unheard += (await recorded(w, ids)) - (10 - left);
        } else if (await alive()) {
          relayStillRunning++;
        }
        const flushes = await drainQueue(direct[w]!, queues[w]!);
        extraFlushes += flushes;
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    await collect.settle(must, 120_000);
    const t = collect.tally(must);
    console.log(
      `fault injection: ${TRIALS} trials, ${t.partial} partial, ${t.lost.length} lost, ` +
        `${t.duplicates} duplicates (batch ${total} bytes up; ${cutFlushesOk} cut flushes ` +
        `still completed; in the 100 waited trials ${unheard} messages were delivered by ` +
        `the cut session unheard by the client; in the 100 racing trials the cut session ` +
        `was still running in ${relayStillRunning} when the direct flush began; ` +
        `${extraFlushes} direct flushes; ${collect.unknown} unknown mails; ` +
        `messages left after the cut → trials: ${
          leftAfterCut.map((n, k) => `${k}→${n}`).filter((_, k) => leftAfterCut[k]).join(" ")
        })`,
    );
    assert.equal(t.partial, 0, `partial: ${collect.partial.join(" ")}`);
    assert.deepEqual(t.lost, [], "lost");
    assert.equal(t.duplicates, 0, "duplicates");
  } finally {
    for (const p of proxies) await p.close();
    await bed.stop();
  }
});

Deno.test("queue: kill -9 during enqueue and during flush, 100 trials", async () => {
  const bed = await startBed();
  const collect = new Collector(bed.box);
  const qdir = `${bed.dir}/queue`;
  const queue = await openQueue(qdir, Deno.uid()!);
  const down = await bed.config("down", deadPort(), qdir);
  const direct = await bed.config("direct", bed.relay.port, qdir);
  const random = rng(777);
  const must = new Set<string>();
  let n = 0;
  const newMessage = async (size: number) => {
    const tok = `kill${RUN}.${n++}`;
    const msg = message(tok, filler(size, n));
    await collect.expect(tok, msg);
    return { tok, msg };
  };
  /** Spawns the client, kills it with SIGKILL after `delay` ms; exit code, or undefined if killed. */
  const killAfter = async (conf: string, args: string[], delay: number, stdin?: Uint8Array) => {
    const child = new Deno.Command(SSHSENDMAIL, {
      args,
      env: { SSHSENDMAIL_CONFIG: conf },
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    if (stdin !== undefined) {
      const writer = child.stdin.getWriter();
      writer.write(stdin).then(() => writer.close()).catch(() => {});
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // finished first
      }
    }, delay);
    const status = await child.status;
    clearTimeout(timer);
    return status.signal === "SIGKILL" ? undefined : status.code;
  };
  const timed = async (f: () => Promise<unknown>) => {
    const t0 = performance.now();
    await f();
    return performance.now() - t0;
  };
  try {
    // How long an unkilled enqueue takes (relay down).
    let tEnqueue = 0;
    for (let i = 0; i < 3; i++) {
      const { tok, msg } = await newMessage(100_000);
      tEnqueue = Math.max(
        tEnqueue,
        await timed(async () => {
          const res = await client(down, ["-f", "qsender@relay.test", "--", RCPT], msg);
          assert.equal(res.code, 0, res.stderr);
        }),
      );
      must.add(tok);
    }
    let acked = 0;
    let killed = 0;
    let tmpLeft = 0;
    for (let trial = 0; trial < 50; trial++) {
      const { tok, msg } = await newMessage(1000 + Math.floor(random() * 300_000));
      const delay = random() * tEnqueue * 1.2;
      const code = await killAfter(down, ["-f", "qsender@relay.test", "--", RCPT], delay, msg);
      if (code === 0) {
        acked++;
        must.add(tok);
      } else {
        assert.equal(code, undefined, `enqueue exited ${code}`);
        killed++;
      }
      const queued = await checkQueue(queue);
      for (const t of must) assert.ok(queued.has(t), `acknowledged ${t} not in the queue`);
      const list = await client(down, ["--list"]);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, new RegExp(`-- ${queued.size} messages? in queue`));
    }
    tmpLeft = (await namesIn(`${qdir}/tmp`)).length;
    // Every whole message that reached new/ (acknowledged or not) goes out.
    for (const t of await checkQueue(queue)) must.add(t);
    console.log(
      `kill during enqueue: 50 trials, ${acked} finished first, ${killed} killed; ` +
        `${must.size} queued, ${tmpLeft} left in tmp/ (max ${tEnqueue.toFixed(0)} ms)`,
    );
    await drainQueue(direct, queue);
    await collect.settle(must);
    let t = collect.tally(must);
    assert.equal(t.partial, 0, "partial after enqueue kills");
    assert.deepEqual(t.lost, [], "lost after enqueue kills");
    assert.equal(t.duplicates, 0, "duplicates after enqueue kills");

    // Flush: time an unkilled flush of 3 messages.
    const fill3 = async () => {
      for (let i = 0; i < 3; i++) {
        const { tok, msg } = await newMessage(1000 + Math.floor(random() * 200_000));
        await enqueueDirect(queue, msg, Date.now());
        must.add(tok);
      }
    };
    await fill3();
    const tFlush = await timed(async () => {
      const res = await client(direct, ["--flush"]);
      assert.equal(res.code, 0, res.stderr);
    });
    let flushKilled = 0;
    for (let trial = 0; trial < 50; trial++) {
      await fill3();
      const code = await killAfter(direct, ["--flush"], random() * tFlush * 1.2);
      if (code === undefined) flushKilled++;
      else assert.ok(code === 0 || code === 75, `flush exited ${code}`);
      await waitForSsh(bed.key);
      await checkQueue(queue);
      const list = await client(direct, ["--list"]);
      assert.equal(list.code, 0, list.stderr);
    }
    await collect.settle([], 0, 1000);
    const before = collect.count.size;
    const left = (await namesIn(`${qdir}/new`)).length;
    await drainQueue(direct, queue);
    await collect.settle(must);
    t = collect.tally(must);
    console.log(
      `kill during flush: 50 trials, ${flushKilled} killed (flush ${tFlush.toFixed(0)} ms); ` +
        `${before} delivered before the final flush, ${left} left for it; ` +
        `${must.size} messages: ${t.partial} partial, ${t.lost.length} lost, ` +
        `${t.duplicates} duplicates`,
    );
    assert.equal(t.partial, 0, "partial");
    assert.deepEqual(t.lost, [], "lost");
    assert.equal(t.duplicates, 0, "duplicates");
  } finally {
    await bed.stop();
  }
});

Deno.test("queue: 50 concurrent senders while a flush runs, each delivered once", async () => {
  const bed = await startBed();
  const collect = new Collector(bed.box);
  const qdir = `${bed.dir}/queue`;
  const queue = await openQueue(qdir, Deno.uid()!);
  const direct = await bed.config("direct", bed.relay.port, qdir);
  const random = rng(5150);
  const must: string[] = [];
  try {
    for (let i = 0; i < 100; i++) {
      const tok = `conq${RUN}.${i}`;
      const msg = message(tok, filler(500 + Math.floor(random() * 50_000), i));
      await collect.expect(tok, msg);
      await enqueueDirect(queue, msg, Date.now() - 1000 + i);
      must.push(tok);
    }
    const senders: Promise<RunResult>[] = [];
    const flush = client(direct, ["--flush"]);
    for (let i = 0; i < 50; i++) {
      const tok = `cons${RUN}.${i}`;
      const msg = message(tok, filler(500 + Math.floor(random() * 50_000), 100 + i));
      await collect.expect(tok, msg);
      must.push(tok);
      senders.push(client(direct, ["-f", "qsender@relay.test", "--", RCPT], msg));
    }
    const results = await Promise.all(senders);
    const flushed = await flush;
    assert.equal(flushed.code, 0, flushed.stderr);
    for (const r of results) assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
    // A sender that could not reach the relay queued its message: say so, and send it.
    const queuedBySenders = (await namesIn(`${qdir}/new`)).length;
    await drainQueue(direct, queue);
    await collect.settle(must);
    const t = collect.tally(must);
    console.log(
      `concurrency: 100 queued + 50 senders during a flush: ${t.partial} partial, ` +
        `${t.lost.length} lost, ${t.duplicates} duplicates; ${queuedBySenders} queued by senders`,
    );
    assert.equal(t.partial, 0);
    assert.deepEqual(t.lost, []);
    assert.equal(t.duplicates, 0);
    assert.equal(queuedBySenders, 0, "senders queued although the relay was up");
  } finally {
    await bed.stop();
  }
});

Deno.test("queue: relay down for the whole first phase, then one flush delivers all once", async () => {
  const bed = await startBed();
  const collect = new Collector(bed.box);
  const qdir = `${bed.dir}/queue`;
  const queue = await openQueue(qdir, Deno.uid()!);
  const port = deadPort();
  const conf = await bed.config("later", port, qdir);
  const must: string[] = [];
  let proxy;
  try {
    for (let i = 0; i < 20; i++) {
      const tok = `down${RUN}.${i}`;
      const msg = message(tok, filler(200 + i * 3000, 300 + i));
      await collect.expect(tok, msg);
      must.push(tok);
      const res = await client(conf, ["-f", "qsender@relay.test", "--", RCPT], msg);
      assert.deepEqual([res.code, res.stdout, res.stderr], [0, "", ""], `send ${i}`);
    }
    let list = await client(conf, ["--list"]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /-- 20 messages in queue\n$/);
    // Still down: a flush defers every message and says why.
    const early = await client(conf, ["--flush"]);
    assert.equal(early.code, 75);
    assert.match(early.stderr, /^4\.4\.1 sshsendmail: connection refused/);
    assert.equal((await checkQueue(queue)).size, 20);
    list = await client(conf, ["--list"]);
    // One attempt at send time (recorded when queued), one by the flush.
    assert.equal(list.stdout.match(/\[2x\] 4\.4\.1/g)?.length, 20, list.stdout);
    await collect.settle([], 0, 500);
    assert.equal(collect.count.size, 0, "nothing delivered while down");
    // The relay comes back on the same address.
    proxy = startProxy(bed.relay.port, port);
    const res = await client(conf, ["--flush"]);
    assert.deepEqual([res.code, res.stderr], [0, ""]);
    assert.equal(proxy.connections.length, 1, "one connection for the whole queue");
    assert.deepEqual(await namesIn(`${qdir}/new`), []);
    list = await client(conf, ["--list"]);
    assert.equal(list.stdout, "Mail queue is empty\n");
    await collect.settle(must);
    const t = collect.tally(must);
    assert.equal(t.partial, 0);
    assert.deepEqual(t.lost, []);
    assert.equal(t.duplicates, 0);
  } finally {
    await proxy?.close();
    await bed.stop();
  }
});

Deno.test("queue: a message older than max_age goes to failed/ and its sender is told", async () => {
  const bed = await startBed();
  const qdir = `${bed.dir}/queue`;
  const sender = `${SENDER_ACCOUNT}@relay.test`;
  const downConf = await bed.config("down", deadPort(), qdir, ["max_age = 2s"]);
  const upConf = await bed.config("up", bed.relay.port, qdir, ["max_age = 2s"]);
  const collect = new Collector(bed.box);
  const tok = `age${RUN}`;
  const msg = message(tok, "old news\n", sender);
  await collect.expect(tok, msg);
  try {
    const res = await client(downConf, ["-f", sender, "--", RCPT], msg);
    assert.deepEqual([res.code, res.stdout, res.stderr], [0, "", ""]);
    const [id] = await namesIn(`${qdir}/new`);
    assert.ok(id);
    // Young enough: a flush while the relay is up would deliver; wait it out instead.
    await sleep(2500);
    const flushed = await client(upConf, ["--flush"]);
    assert.deepEqual([flushed.code, flushed.stderr], [0, ""]);
    assert.deepEqual(await namesIn(`${qdir}/new`), [], "new/ after expiry");
    assert.deepEqual(await namesIn(`${qdir}/failed`), [id], "failed/");
    // The notice, through the relay, with the null sender.
    const deadline = Date.now() + 15000;
    let notice: string | undefined;
    while (notice === undefined && Date.now() < deadline) {
      for (const name of await namesIn(`${bed.senderBox.dir}/new`)) {
        const text = await Deno.readTextFile(`${bed.senderBox.dir}/new/${name}`);
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
    // The original itself never went out.
    await collect.settle([], 0, 1000);
    assert.equal(collect.count.size, 0, "expired message delivered");
  } finally {
    await bed.stop();
  }
});

async function uidOfRelay(): Promise<number> {
  const res = await run("/usr/bin/id", ["-u", "rsmrelay"]);
  return Number(res.stdout.trim());
}

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
  const concat = (...parts: Uint8Array[]) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
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
        [a, / 0 2\.0\.0 delivered$/],
        [badRcpt, / 65 5\.1\.3 rsendmail: invalid recipient address$/],
        [b, / 0 2\.0\.0 delivered$/],
        [badSender, / 77 5\.7\.1 rsendmail: sender not allowed for this key$/],
        [c, / 0 2\.0\.0 delivered$/],
        [big, / 65 5\.3\.4 rsendmail: message too big$/],
        [d, / 0 2\.0\.0 delivered$/],
        [badSha, / 65 5\.6\.0 rsendmail: message does not match its SHA-256$/],
        [e, / 0 2\.0\.0 delivered$/],
        [dup, / 0 2\.0\.0 already delivered$/],
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
      assert.match(res.replies[0]!, new RegExp(`^${a.id} 0 2\\.0\\.0 delivered$`));
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
      assert.match(res.replies[0]!, new RegExp(`^${a.id} 0 2\\.0\\.0 delivered$`));
      assert.match(res.replies[1]!, /^- \d+ 5\.5\.2 rsendmail: malformed batch frame$/);
      await collect.settle([a.tok], 15000, 1500);
      assert.equal(collect.count.get(a.tok), 1);
      assert.ok(!collect.count.has(b.tok), "frame after garbage delivered");
    });
  } finally {
    await Deno.remove(state, { recursive: true }).catch(() => {});
  }
});
