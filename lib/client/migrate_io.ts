/**
 * Upgrade from the per-user offline queues (`SPOOL/<uid>/`, before the
 * satellite service): run as the queue's owner (never as root), it hands
 * each waiting message to the service through the drop directory, so the
 * owner's uid stays the message's identity, then removes it. Effectful
 * edge module.
 *
 * @module
 */

import { openQueue } from "./queue_io.ts";
import { dropMessage, type DropOptions } from "./submit_io.ts";

/**
 * Migrates `spool/<uid>/` if it is this user's old queue. Returns how many
 * messages went to the service.
 */
export async function migrateOldQueue(spool: string, uid: number, o: DropOptions): Promise<number> {
  const dir = `${spool}/${uid}`;
  const info = await Deno.lstat(dir).catch(() => undefined);
  if (!info || !info.isDirectory || info.uid !== uid) return 0;
  const queue = await openQueue(dir, uid);
  const lock = await queue.lock();
  let moved = 0;
  try {
    for (const entry of await queue.list()) {
      const h = entry.header;
      const words = [
        "-oi",
        ...(h.sender === null ? [] : ["-f", h.sender]),
        ...(h.extractRecipients ? ["-t"] : []),
        "--",
        ...h.recipients,
      ];
      const file = await Deno.open(entry.path, { read: true });
      try {
        await file.seek(entry.bodyOffset, Deno.SeekMode.Start);
        await dropMessage(spool, words, file, o);
      } finally {
        file.close();
      }
      queue.remove(h.id);
      moved++;
    }
  } finally {
    lock.close();
  }
  // Leave nothing but what still holds mail (failed/ is the owner's to read).
  for (const sub of ["new", "tmp", "state"]) await Deno.remove(`${dir}/${sub}`).catch(() => {});
  await Deno.remove(`${dir}/lock`).catch(() => {});
  await Deno.remove(`${dir}/failed`).catch(() => {});
  await Deno.remove(dir).catch(() => {});
  return moved;
}
