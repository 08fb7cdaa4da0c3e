/**
 * What the sections on the satellite service share (bench_batch.ts,
 * bench_service.ts, bench_memory.ts): watching a directory for the names
 * that appear in it (the relay's duplicate record: one id per accepted
 * message), writing a drop as a submitter writes it, and reading a
 * process's memory from /proc.
 *
 * @module
 */

import { type Relay, relayStatePath, run, runAsAccount } from "../tests/e2e/_bed.ts";
import type { Account, ServiceBed } from "../tests/e2e/_service.ts";
import { dropHex, encodeDropHeader } from "../lib/client/drop.ts";
import { encoder, sleep } from "./bench_common.ts";
import type { Sample, Spec } from "./bench_run.ts";
import { quantile } from "./bench_report.ts";
import type { MailGroup } from "./bench_delivery.ts";

/** A message id of the batch protocol: the names of the relay's duplicate record. */
export const ID_RE = /^m[0-9a-f]{32}$/;

/**
 * The relay's record of `label` in the bed relay's state, made as the relay
 * makes it: by the relay account, 0700 (the bed made its private top).
 */
async function recordDir(relay: Relay, label: string): Promise<string> {
  const dir = await relayStatePath(relay, label);
  if (!(await Deno.lstat(dir).then(() => true, () => false))) {
    const made = await runAsAccount(relay.user, ["/bin/mkdir", "-m", "700", "--", dir]);
    if (made.code !== 0) throw new Error(`mkdir ${dir} as ${relay.user}: ${made.stderr}`);
  }
  return dir;
}

/**
 * A directory watched (inotify): the time (performance.now()) each name
 * matching `re` first appears, in order. On the relay's duplicate record of
 * one key label, that is when the relay accepted each message id.
 */
export class DirWatch {
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

  /** Makes the record's directory as the relay would ({@link recordDir}) and watches it. */
  static async record(relay: Relay, label: string): Promise<DirWatch> {
    return new DirWatch(await recordDir(relay, label), ID_RE);
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

  /** Stops watching (again is harmless); with `remove`, removes the directory. */
  async close(remove: boolean): Promise<void> {
    try {
      this.#watcher.close();
    } catch {
      // closed before
    }
    await this.#loop;
    if (remove) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * The relay's record of one key label, read without watching it: when the
 * n-th id was recorded is the n-th oldest record's mtime (the relay writes
 * each once), on performance.now()'s clock. For the throughput runs: an
 * inotify watch wakes the bench for every event of every message, and on a
 * machine of 2 CPUs that is CPU the chain being measured goes without
 * (section 3's ceiling rows have no watcher). It lists the directory a few
 * times a second while it waits, and stats the records once at the end.
 */
export class RecordTimes {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Makes the record's directory as the relay would ({@link recordDir}); watches nothing. */
  static async record(relay: Relay, label: string): Promise<RecordTimes> {
    return new RecordTimes(await recordDir(relay, label));
  }

  async #names(): Promise<string[]> {
    const names: string[] = [];
    for await (const e of Deno.readDir(this.dir)) if (ID_RE.test(e.name)) names.push(e.name);
    return names;
  }

  async count(): Promise<number> {
    return (await this.#names()).length;
  }

  /** Waits until at least `n` ids are recorded, listing the record every `pollMs`. */
  async until(n: number, timeoutMs: number, pollMs = 100): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let got = await this.count(); got < n; got = await this.count()) {
      if (Date.now() > deadline) {
        throw new Error(`relay recorded ${got} of ${n} within ${timeoutMs} ms`);
      }
      await sleep(pollMs);
    }
  }

  /** When the `nths` ids (1-based) were recorded: one lstat per record, so call it after the run. */
  async times(nths: number[]): Promise<number[]> {
    const mtimes = await Promise.all(
      (await this.#names()).map(async (name) =>
        (await Deno.lstat(`${this.dir}/${name}`)).mtime!.getTime()
      ),
    );
    mtimes.sort((a, b) => a - b);
    return nths.map((k) => mtimes[k - 1]! - performance.timeOrigin);
  }

  async close(remove: boolean): Promise<void> {
    if (remove) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** VmRSS, VmHWM and RssAnon of a process in KiB, and its open fds (Deno wants --allow-all for /proc: ask cat). */
export async function memoryOf(
  pid: number,
): Promise<{ rss: number; hwm: number; anon: number; fds: number }> {
  const text = (await run("/bin/cat", [`/proc/${pid}/status`], { check: false })).stdout;
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s*(\\d+) kB`, "m").exec(text)?.[1]);
  const fds = (await run("/bin/ls", [`/proc/${pid}/fd`], { check: false })).stdout.split("\n")
    .filter((l) => l !== "").length;
  return { rss: kib("VmRSS"), hwm: kib("VmHWM"), anon: kib("RssAnon"), fds };
}

/**
 * The pid of the relay's rsendmail forced by a key with `--label <label>`
 * (a label unique to the run), or undefined while none runs. The forced
 * command's shebang execs deno, so the process's command line names both;
 * the lowest such pid is the relay itself (a child it forks has its command
 * line until it execs sendmail or logger).
 */
export async function relayPidOf(label: string): Promise<number | undefined> {
  const out = await run("/usr/bin/pgrep", ["-f", `deno .*rsendmail .*--label ${label}( |$)`], {
    check: false,
  });
  const pids = out.stdout.split("\n").filter((l) => /^\d+$/.test(l)).map(Number);
  return pids.length === 0 ? undefined : Math.min(...pids);
}

/** Writes one drop as `u` would (JSON words line + message), then renames it into place. */
export async function writeDrop(
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

/** The five submitting users of the burst. */
export const USERS = ["rsmbsvc1", "rsmbsvc2", "rsmbsvc3", "rsmbsvc4", "rsmbsvc5"];

/** What the service section's parts share. */
export interface ServiceCtx {
  bed: ServiceBed;
  bench: Account;
  users: Account[];
  /** The relay's record of the service's key label. */
  watch: DirWatch;
  rcpt: string;
  /** An empty script under sshsendmail's shebang, readable by every account. */
  emptyClient: string;
  msg(id: string, i: number): Uint8Array;
  /** `sendmail rcpt` as `u` through the service (root: no setpriv). */
  sendAs(u: Account, id: string, i: number): Spec;
}

export interface Dist {
  n: number;
  median: number;
  p95: number;
}

export function dist(xs: number[]): Dist {
  const s = xs.slice().sort((a, b) => a - b);
  return { n: s.length, median: quantile(s, 0.5), p95: quantile(s, 0.95) };
}

/** A group of the delivery check from timed sends (non-zero exits must not arrive). */
export function sendGroup(id: string, label: string, samples: Sample[]): MailGroup {
  return {
    id: `service.${id}`,
    label: `service.${label}`,
    sent: samples.length,
    failed: samples.filter((s) => s.code !== 0).length,
  };
}
