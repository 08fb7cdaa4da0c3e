/**
 * Making and checking the service's spool on disk (see spool_layout.ts).
 * `initSpool` runs as root (postinst, scripts/install, the test beds): it
 * works only inside the top directory after making it root's 0755, so no
 * other account can change a name under it meanwhile. `checkSpool` runs in
 * the service. Effectful edge module.
 *
 * @module
 */

import { MailError } from "../shared/errors.ts";
import { EX_CONFIG, EX_TEMPFAIL } from "../shared/exit_codes.ts";
import {
  CACHE_PART,
  partIds,
  partProblem,
  SPOOL_PARTS,
  SPOOL_TOP_MODE,
  type SpoolIds,
  topProblem,
} from "./spool_layout.ts";

function spoolError(message: string): MailError {
  return new MailError(message, { exitCode: EX_TEMPFAIL, status: "4.3.5" });
}

/** The parent must not let another account swap the top directory's name. */
async function checkParent(top: string): Promise<void> {
  const parent = top.slice(0, top.lastIndexOf("/")) || "/";
  const info = await Deno.lstat(parent);
  const mode = info.mode ?? 0;
  const sticky = (mode & 0o1000) !== 0;
  if (info.uid !== 0 || (!sticky && (mode & 0o022) !== 0)) {
    throw new MailError(`${parent} is writable by others than root`, {
      exitCode: EX_CONFIG,
      status: "4.3.5",
    });
  }
}

/**
 * Makes the spool: the top root's 0755, then each part with its owner and
 * mode, and the account's Deno cache directory. A part that is something
 * else (a symlink or a directory another account planted while the old
 * layout's top was 1777) is renamed aside first. Returns one line per
 * change.
 */
export async function initSpool(top: string, ids: SpoolIds, now: number): Promise<string[]> {
  const done: string[] = [];
  await checkParent(top);
  let info = await Deno.lstat(top).catch(() => undefined);
  if (!info) {
    await Deno.mkdir(top, { mode: SPOOL_TOP_MODE });
    done.push(`created ${top}`);
    info = await Deno.lstat(top);
  }
  if (info.isSymlink || !info.isDirectory) throw spoolError(`${top} is not a directory`);
  if (info.uid !== 0 || info.gid !== 0) await Deno.chown(top, 0, 0);
  if (((info.mode ?? 0) & 0o7777) !== SPOOL_TOP_MODE) {
    await Deno.chmod(top, SPOOL_TOP_MODE);
    done.push(`${top}: mode ${SPOOL_TOP_MODE.toString(8)}`);
  }
  for (const part of [...SPOOL_PARTS, CACHE_PART]) {
    const path = `${top}/${part.name}`;
    let st = await Deno.lstat(path).catch(() => undefined);
    const owned = partIds(part, ids);
    if (st && (st.isSymlink || !st.isDirectory || st.uid !== owned.uid)) {
      await Deno.rename(path, `${path}.aside-${now}`);
      done.push(`${path}: set aside as ${part.name}.aside-${now}`);
      st = undefined;
    }
    if (!st) {
      await Deno.mkdir(path, { mode: 0o700 });
      done.push(`created ${path}`);
    }
    await Deno.chown(path, owned.uid, owned.gid);
    await Deno.chmod(path, part.mode);
  }
  return done;
}

/** Refuses to serve from a spool that is not exactly the layout. */
export async function checkSpool(top: string, ids: SpoolIds): Promise<void> {
  const hint = "run `sshsendmail --init-spool` as root";
  const info = await Deno.lstat(top).catch(() => undefined);
  if (!info) throw spoolError(`no spool ${top}: ${hint}`);
  const problem = topProblem(info);
  if (problem) throw spoolError(`spool ${top}: ${problem}: ${hint}`);
  for (const part of SPOOL_PARTS) {
    const path = `${top}/${part.name}`;
    const st = await Deno.lstat(path).catch(() => undefined);
    const why = st ? partProblem(part, st, ids) : "missing";
    if (why) throw spoolError(`${path}: ${why}: ${hint}`);
  }
}
