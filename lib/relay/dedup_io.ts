/**
 * The relay's short record of what it delivered, per key label, so that a
 * message retried after a connection cut ("delivered, but the client never
 * heard") is answered "already delivered" instead of being sent twice.
 * Effectful edge module.
 *
 * Layout: `STATE_DIR/rsendmail-<uid>/<label>/<id>` holding the message's
 * SHA-256; the directory is 0700 and must belong to the relay account.
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

/** A lock older than this belongs to a relay that died: it is broken. */
const STALE_LOCK_MS = 15 * 60_000;

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
      const lock = `${dir}/${id}.lock`;
      for (;;) {
        try {
          (await Deno.open(lock, { write: true, createNew: true, mode: 0o600 })).close();
          return async () => {
            await Deno.remove(lock).catch(() => {});
          };
        } catch (err) {
          if (!(err instanceof Deno.errors.AlreadyExists)) return async () => {};
          const info = await Deno.lstat(lock).catch(() => undefined);
          if (info && Date.now() - (info.mtime?.getTime() ?? 0) > STALE_LOCK_MS) {
            await Deno.remove(lock).catch(() => {});
            continue;
          }
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    },
    async prune(now) {
      // A full scan costs one lstat per record: at most once per PRUNE_EVERY_MS,
      // told by the mtime of a marker (ids never start with a dot).
      const marker = `${dir}/${PRUNE_MARKER}`;
      const last = (await Deno.lstat(marker).catch(() => undefined))?.mtime?.getTime();
      if (last !== undefined && last <= now && now - last < PRUNE_EVERY_MS) return;
      try {
        await Deno.writeTextFile(marker, "", { mode: 0o600 });
        for await (const entry of Deno.readDir(dir)) {
          if (entry.name === PRUNE_MARKER) continue;
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
