/**
 * The relay's private state directories (`<state>/rsendmail-<uid>/<name>`):
 * the duplicate record and the per-key limits each keep one per label.
 * Effectful.
 *
 * @module
 */

/**
 * Makes (if needed) and checks `<stateDir>/rsendmail-<uid>/<name>`: both
 * levels must be directories of this uid that no other account can use.
 * Undefined when they are not (the caller decides what that costs).
 */
export async function privateStateDir(stateDir: string, name: string): Promise<string | undefined> {
  const uid = Deno.uid();
  const top = `${stateDir}/rsendmail-${uid}`;
  const dir = `${top}/${name}`;
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    for (const d of [top, dir]) {
      const info = await Deno.lstat(d);
      if (!info.isDirectory || info.uid !== uid || ((info.mode ?? 0) & 0o077) !== 0) {
        return undefined;
      }
    }
  } catch {
    return undefined;
  }
  return dir;
}
