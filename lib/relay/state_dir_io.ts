/**
 * The relay's private state directories (`<state>/rsendmail-<uid>/<name>`):
 * the duplicate record and the per-key limits each keep one per label.
 * Effectful.
 *
 * The state directory is shared (`/var/tmp` by default, where any local
 * account may create `rsendmail-<uid>` first, as a directory of its own or
 * a symlink). Each level is made without following anything and checked
 * before the next is made in it: nothing is created inside a directory
 * another account holds.
 *
 * @module
 */

/**
 * Makes (if needed) and checks `<stateDir>/rsendmail-<uid>/<name>`: both
 * levels must be directories of this uid that no other account can use.
 * Undefined when they are not (the caller decides what that costs).
 *
 * Each level is looked at first and made only when missing: a relay whose
 * directories exist (every session after the first) pays two lstats, no
 * mkdir and no AlreadyExists error.
 */
export async function privateStateDir(stateDir: string, name: string): Promise<string | undefined> {
  const uid = Deno.uid();
  const top = `${stateDir}/rsendmail-${uid}`;
  const dir = `${top}/${name}`;
  try {
    for (const d of [top, dir]) {
      let info = await Deno.lstat(d).catch(() => undefined);
      if (info === undefined) {
        // The admin's --state-dir itself, if it is missing (as before: made whole).
        if (d === top) await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
        // mkdir creates no parent and follows no symlink: a name made meanwhile stays as it is.
        await Deno.mkdir(d, { mode: 0o700 }).catch((err) => {
          if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
        });
        info = await Deno.lstat(d);
      }
      if (!info.isDirectory || info.uid !== uid || ((info.mode ?? 0) & 0o077) !== 0) {
        return undefined;
      }
    }
  } catch {
    return undefined;
  }
  return dir;
}
