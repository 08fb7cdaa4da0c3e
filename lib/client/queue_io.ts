/**
 * The offline queue on disk, maildir-style: a message is written to `tmp/`,
 * fsynced, and renamed into `new/`, so `new/` only ever holds whole
 * messages. Retry state sits in `state/`, given-up messages in `failed/`.
 * Files are 0600, directories 0700. Effectful edge module.
 *
 * @module
 */

import { ConfigError } from "./client_config.ts";
import { giveChunk, type Spooled, takeChunk, writeAll } from "../shared/spool_io.ts";
import {
  MAX_HEADER,
  parseQueueHeader,
  QUEUE_ID_REGEXP,
  type QueueHeader,
  type QueueState,
} from "./queue_entry.ts";

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
    const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
    try {
      await writeAll(file, new TextEncoder().encode(`${JSON.stringify(header)}\n`));
      if (body instanceof Uint8Array) {
        await writeAll(file, body);
      } else {
        await body.file.seek(0, Deno.SeekMode.Start);
        const buffer = takeChunk();
        try {
          for (;;) {
            const n = await body.file.read(buffer);
            if (n === null) break;
            await writeAll(file, buffer.subarray(0, n));
          }
        } finally {
          giveChunk(buffer);
        }
      }
      await file.syncData();
    } catch (err) {
      file.close();
      await Deno.remove(tmp).catch(() => {});
      throw err;
    }
    file.close();
    const path = `${this.dir}/new/${header.id}`;
    await Deno.rename(tmp, path);
    await syncDir(`${this.dir}/new`);
    return path;
  }

  /** Reads one queue file's header; undefined when the file is corrupt or gone. */
  async read(id: string): Promise<QueueEntry | undefined> {
    const path = `${this.dir}/new/${id}`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
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
        const n = await file.read(buf.subarray(got));
        if (n === null) return undefined;
        nl = buf.subarray(got, got + n).indexOf(0x0a);
        if (nl >= 0) nl += got;
        got += n;
      }
      const header = parseQueueHeader(new TextDecoder().decode(buf.subarray(0, nl)));
      if (header === undefined || header.id !== id) return undefined;
      const info = await file.stat();
      if (info.size !== nl + 1 + header.size) return undefined;
      return { header, state: await this.state(id), path, bodyOffset: nl + 1 };
    } finally {
      file.close();
    }
  }

  async state(id: string): Promise<QueueState | undefined> {
    try {
      return JSON.parse(await Deno.readTextFile(`${this.dir}/state/${id}`)) as QueueState;
    } catch {
      return undefined;
    }
  }

  /** Every readable entry of `new/`, oldest first. Corrupt files are skipped. */
  async list(): Promise<QueueEntry[]> {
    const out: QueueEntry[] = [];
    for await (const e of Deno.readDir(`${this.dir}/new`)) {
      if (!e.isFile || !QUEUE_ID_REGEXP.test(e.name)) continue;
      const entry = await this.read(e.name);
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
  async setState(id: string, state: QueueState): Promise<void> {
    const tmp = `${this.dir}/state/.${id}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(state), { mode: 0o600 });
    await Deno.rename(tmp, `${this.dir}/state/${id}`);
  }

  /**
   * Removes a message (delivered, or by the admin). True when it was there.
   * `hasState: false` (a message never deferred) skips its state file, which
   * a first attempt does not have: no failed lookup per delivered message.
   */
  async remove(id: string, o: { hasState?: boolean } = {}): Promise<boolean> {
    if (o.hasState ?? true) await Deno.remove(`${this.dir}/state/${id}`).catch(() => {});
    try {
      await Deno.remove(`${this.dir}/new/${id}`);
      return true;
    } catch {
      return false;
    }
  }

  /** Moves a message to `failed/`. */
  async fail(id: string): Promise<void> {
    await Deno.rename(`${this.dir}/new/${id}`, `${this.dir}/failed/${id}`).catch(() => {});
    await Deno.remove(`${this.dir}/state/${id}`).catch(() => {});
  }

  /** The message's header section (up to its first empty line, at most 64 KiB). */
  async headersOf(entry: QueueEntry): Promise<string> {
    const file = await Deno.open(entry.path, { read: true });
    try {
      await file.seek(entry.bodyOffset, Deno.SeekMode.Start);
      const buffer = new Uint8Array(CHUNK);
      const n = (await file.read(buffer)) ?? 0;
      const text = new TextDecoder().decode(buffer.subarray(0, n));
      const end = text.search(/\r?\n\r?\n/);
      return end < 0 ? text : text.slice(0, end);
    } finally {
      file.close();
    }
  }

  /** Streams a queued message's bytes into `sink` (without closing it). */
  async copyBody(entry: QueueEntry, sink: WritableStreamDefaultWriter<Uint8Array>) {
    const file = await Deno.open(entry.path, { read: true });
    try {
      await file.seek(entry.bodyOffset, Deno.SeekMode.Start);
      const buffer = takeChunk();
      try {
        for (;;) {
          const n = await file.read(buffer);
          if (n === null) break;
          await sink.write(buffer.subarray(0, n));
        }
      } finally {
        giveChunk(buffer);
      }
    } finally {
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
    const d = await Deno.open(dir, { read: true });
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
