/**
 * The relay's short record of what it delivered, per key label, so that a
 * message retried after a connection cut ("delivered, but the client never
 * heard") is answered "already delivered" instead of being sent twice.
 * Effectful edge module.
 *
 * Layout: `STATE_DIR/rsendmail-<uid>/<label>/<id>` holding the message's
 * SHA-256; the directory is 0700 and must belong to the relay account.
 * Beside the ids, `.lock-00` … `.lock-ff`: the delivery locks, made once and
 * kept (ids never start with a dot).
 *
 * @module
 */

import { privateStateDir } from "./state_dir_io.ts";

/** A per-label record of delivered message ids. */
export interface DeliveryRecord {
  /** True when `id` was delivered with this exact SHA-256. */
  has(id: string, sha256: string): Promise<boolean>;
  /** Records a delivery. */
  add(id: string, sha256: string): Promise<void>;
  /** Forgets deliveries older than the retention. */
  prune(now: number): Promise<void>;
  /**
   * Takes the id's delivery lock, waiting while another relay process holds
   * it (a retry racing the cut session's still-running relay). Returns the
   * release function.
   */
  claim(id: string): Promise<() => Promise<void>>;
}

/** How often a session may scan the record for expired ids. */
const PRUNE_EVERY_MS = 3_600_000;
const PRUNE_MARKER = ".pruned";

/** How many lock files the ids share. */
const LOCK_FILES = 256;

/**
 * The lock file an id's delivery holds (flock(2), exclusive): one of
 * {@link LOCK_FILES}, chosen by a hash of the id (FNV-1a). A lock file is
 * never removed, so no file is made and unlinked per message, and the
 * kernel releases the lock the moment its relay exits, however it ends: a
 * relay that died leaves nothing that holds a retry. Two ids that share a
 * file only wait for each other, and only while one of them is with
 * sendmail: the relay takes the lock once the message is read
 * (lib/relay/session_io.ts's admit).
 */
export function lockFileOf(id: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return `.lock-${(h % LOCK_FILES).toString(16).padStart(2, "0")}`;
}

/**
 * Opens (creating if needed) the record for `label`. Returns undefined when
 * the directory cannot be made private to this account: no record, no
 * duplicate suppression, but deliveries go on.
 */
export async function openDeliveryRecord(
  stateDir: string,
  label: string,
  retentionMs: number,
): Promise<DeliveryRecord | undefined> {
  const dir = await privateStateDir(stateDir, `${label || "_"}`);
  if (dir === undefined) return undefined;
  return {
    async has(id, sha256) {
      try {
        return (await Deno.readTextFile(`${dir}/${id}`)).trim() === sha256;
      } catch {
        return false;
      }
    },
    async add(id, sha256) {
      try {
        await Deno.writeTextFile(`${dir}/${id}`, `${sha256}\n`, { mode: 0o600 });
      } catch {
        // A record we cannot write costs a possible duplicate, never a message.
      }
    },
    async claim(id) {
      // Each claim opens its own description of the file: two claims of one
      // process exclude each other as two processes do. Closing releases.
      // A lock that cannot be taken costs a possible duplicate, never a message.
      let file: Deno.FsFile;
      try {
        file = await Deno.open(`${dir}/${lockFileOf(id)}`, {
          write: true,
          create: true,
          mode: 0o600,
        });
      } catch {
        return async () => {};
      }
      try {
        await file.lock(true);
      } catch {
        file.close();
        return async () => {};
      }
      return () => {
        file.close();
        return Promise.resolve();
      };
    },
    async prune(now) {
      // A full scan costs one lstat per record: at most once per PRUNE_EVERY_MS,
      // told by the mtime of a marker. The marker and the lock files start
      // with a dot, as no id does, and stay.
      const marker = `${dir}/${PRUNE_MARKER}`;
      const last = (await Deno.lstat(marker).catch(() => undefined))?.mtime?.getTime();
      if (last !== undefined && last <= now && now - last < PRUNE_EVERY_MS) return;
      try {
        await Deno.writeTextFile(marker, "", { mode: 0o600 });
        for await (const entry of Deno.readDir(dir)) {
          if (entry.name.startsWith(".")) continue;
          const path = `${dir}/${entry.name}`;
          const info = await Deno.lstat(path);
          if ((info.mtime?.getTime() ?? now) < now - retentionMs) await Deno.remove(path);
        }
      } catch {
        // Best effort.
      }
    },
  };
}
