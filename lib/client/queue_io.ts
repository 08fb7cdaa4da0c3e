/**
 * The offline queue on disk, maildir-style: a message is written to `tmp/`,
 * fsynced, and renamed into `new/`, so `new/` only ever holds whole
 * messages. Retry state sits in `state/`, given-up messages in `failed/`.
 * Files are 0600, directories 0700. Effectful edge module.
 *
 * A message's file calls are synchronous, but for the two fsyncs: each is
 * one small file in the service's own directory, and an asynchronous Deno
 * file call hands the work to another thread and back, which cost the
 * service more CPU per message than the calls themselves (docs/benchmarks.md,
 * notes on issue 15). The fsyncs wait for the disk, so they stay
 * asynchronous; so do the scans of a whole directory and the flush lock.
 *
 * @module
 */

import { ConfigError } from "./client_config.ts";
import {
  giveChunk,
  removeQuietly,
  type Spooled,
  takeChunk,
  writeAllSync,
} from "../shared/spool_io.ts";
import {
  MAX_HEADER,
  parseQueueHeader,
  QUEUE_ID_REGEXP,
  type QueueHeader,
  type QueueState,
} from "./queue_entry.ts";
import { writeJoined } from "../shared/write_joined.ts";

/** One message waiting in the queue. */
export interface QueueEntry {
  header: QueueHeader;
  state: QueueState | undefined;
  /** Path of the queue file; the message starts at `bodyOffset`. */
  path: string;
  bodyOffset: number;
}

const SUBDIRS = ["tmp", "new", "failed", "state"] as const;
const CHUNK = 65536;

/** A queue directory. */
export class Queue {
  /** The queue's top directory. */
  readonly dir: string;

  /** @param dir an existing, private queue directory (see openQueue). */
  constructor(dir: string) {
    this.dir = dir;
  }

  /** Writes a message (spooled, or bytes) into the queue, durably; returns its path. */
  async enqueue(header: QueueHeader, body: Spooled | Uint8Array): Promise<string> {
    const tmp = `${this.dir}/tmp/${header.id}`;
    const file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
    try {
      writeAllSync(file, new TextEncoder().encode(`${JSON.stringify(header)}\n`));
      if (body instanceof Uint8Array) {
        writeAllSync(file, body);
      } else {
        await body.file.seek(0, Deno.SeekMode.Start);
        const buffer = takeChunk();
        try {
          for (;;) {
            const n = await body.file.read(buffer);
            if (n === null) break;
            writeAllSync(file, buffer.subarray(0, n));
          }
        } finally {
          giveChunk(buffer);
        }
      }
      await file.syncData();
    } catch (err) {
      file.close();
      removeQuietly(tmp);
      throw err;
    }
    file.close();
    const path = `${this.dir}/new/${header.id}`;
    Deno.renameSync(tmp, path);
    await syncDir(`${this.dir}/new`);
    return path;
  }

  /** Reads one queue file's header; undefined when the file is corrupt or gone. */
  read(id: string): QueueEntry | undefined {
    const path = `${this.dir}/new/${id}`;
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true });
    } catch {
      return undefined;
    }
    try {
      const head = new Uint8Array(Math.min(MAX_HEADER, CHUNK));
      let got = 0;
      let nl = -1;
      let buf = head;
      while (nl < 0) {
        if (got === buf.length) {
          if (buf.length >= MAX_HEADER) return undefined;
          const bigger = new Uint8Array(Math.min(MAX_HEADER, buf.length * 2));
          bigger.set(buf);
          buf = bigger;
        }
        const n = file.readSync(buf.subarray(got));
        if (n === null) return undefined;
        nl = buf.subarray(got, got + n).indexOf(0x0a);
        if (nl >= 0) nl += got;
        got += n;
      }
      const header = parseQueueHeader(new TextDecoder().decode(buf.subarray(0, nl)));
      if (header === undefined || header.id !== id) return undefined;
      const info = file.statSync();
      if (info.size !== nl + 1 + header.size) return undefined;
      return { header, state: this.state(id), path, bodyOffset: nl + 1 };
    } finally {
      file.close();
    }
  }

  /** A message's retry state; undefined before its first failed attempt. */
  state(id: string): QueueState | undefined {
    try {
      return JSON.parse(Deno.readTextFileSync(`${this.dir}/state/${id}`)) as QueueState;
    } catch {
      return undefined;
    }
  }

  /** Every readable entry of `new/`, oldest first. Corrupt files are skipped. */
  async list(): Promise<QueueEntry[]> {
    const out: QueueEntry[] = [];
    for await (const e of Deno.readDir(`${this.dir}/new`)) {
      if (!e.isFile || !QUEUE_ID_REGEXP.test(e.name)) continue;
      const entry = this.read(e.name);
      if (entry) out.push(entry);
    }
    return out.sort((a, b) => a.header.created - b.header.created);
  }

  /** Removes what a killed enqueue left in tmp/ (older than an hour). */
  async sweepTmp(now: number): Promise<void> {
    for await (const e of Deno.readDir(`${this.dir}/tmp`)) {
      const path = `${this.dir}/tmp/${e.name}`;
      const info = await Deno.lstat(path).catch(() => undefined);
      if (info && now - (info.mtime?.getTime() ?? now) > 3_600_000) {
        await Deno.remove(path).catch(() => {});
      }
    }
  }

  /** Records a failed attempt. */
  setState(id: string, state: QueueState): void {
    const tmp = `${this.dir}/state/.${id}.tmp`;
    Deno.writeTextFileSync(tmp, JSON.stringify(state), { mode: 0o600 });
    Deno.renameSync(tmp, `${this.dir}/state/${id}`);
  }

  /**
   * Removes a message (delivered, or by the admin). True when it was there.
   * `hasState: false` (a message never deferred) skips its state file, which
   * a first attempt does not have: no failed lookup per delivered message.
   */
  remove(id: string, o: { hasState?: boolean } = {}): boolean {
    if (o.hasState ?? true) removeQuietly(`${this.dir}/state/${id}`);
    try {
      Deno.removeSync(`${this.dir}/new/${id}`);
      return true;
    } catch {
      return false;
    }
  }

  /** Moves a message to `failed/`. */
  fail(id: string): void {
    try {
      Deno.renameSync(`${this.dir}/new/${id}`, `${this.dir}/failed/${id}`);
    } catch {
      // Gone already: nothing to move.
    }
    removeQuietly(`${this.dir}/state/${id}`);
  }

  /** The message's header section (up to its first empty line, at most 64 KiB). */
  headersOf(entry: QueueEntry): string {
    const file = Deno.openSync(entry.path, { read: true });
    try {
      file.seekSync(entry.bodyOffset, Deno.SeekMode.Start);
      const buffer = new Uint8Array(CHUNK);
      const n = file.readSync(buffer) ?? 0;
      const text = new TextDecoder().decode(buffer.subarray(0, n));
      const end = text.search(/\r?\n\r?\n/);
      return end < 0 ? text : text.slice(0, end);
    } finally {
      file.close();
    }
  }

  /**
   * Streams `head` (a frame's header line), then the queued message's
   * bytes into `sink` (without closing it), joined in as few writes as fit
   * 64 KiB (lib/shared/write_joined.ts).
   */
  async copyBody(
    entry: QueueEntry,
    sink: WritableStreamDefaultWriter<Uint8Array>,
    head: Uint8Array,
  ) {
    const file = Deno.openSync(entry.path, { read: true });
    const buffer = takeChunk();
    try {
      file.seekSync(entry.bodyOffset, Deno.SeekMode.Start);
      const body = { read: (p: Uint8Array) => Promise.resolve(file.readSync(p)) };
      await writeJoined(sink, head, body, new Uint8Array(0), buffer);
    } finally {
      giveChunk(buffer);
      file.close();
    }
  }

  /** Takes the queue's flush lock (waits for another flush to finish). */
  async lock(): Promise<Deno.FsFile> {
    const file = await Deno.open(`${this.dir}/lock`, {
      read: true,
      write: true,
      create: true,
      mode: 0o600,
    });
    await file.lock(true);
    return file;
  }
}

/** fsync a directory so a rename in it survives a crash (best effort). */
async function syncDir(dir: string): Promise<void> {
  try {
    const d = Deno.openSync(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // Not every platform lets a directory be fsynced through Deno.
  }
}

/**
 * Opens (creating if needed) a private queue directory. The directory and
 * its parts must belong to `uid` and be private: a queue another user could
 * read or plant files in is refused.
 */
export async function openQueue(dir: string, uid: number): Promise<Queue> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    for (const sub of SUBDIRS) await Deno.mkdir(`${dir}/${sub}`, { recursive: true, mode: 0o700 });
    for (const d of [dir, ...SUBDIRS.map((s) => `${dir}/${s}`)]) {
      const info = await Deno.lstat(d);
      if (!info.isDirectory || info.uid !== uid || ((info.mode ?? 0) & 0o077) !== 0) {
        throw new ConfigError(`queue directory ${d} is not a private directory of this user`);
      }
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot use queue directory ${dir}`);
  }
  return new Queue(dir);
}
