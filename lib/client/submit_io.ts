/**
 * The submitting side of the satellite service, run by any local user:
 * writes a message (or a request such as `mailq`) into the service's drop
 * directory under an unguessable name, written then renamed into place,
 * and reads the service's replies. Effectful edge module.
 *
 * Security: the drop directory is sticky and not listable (1733), so a
 * user can neither see nor replace another user's drop; the service trusts
 * only the owner uid of the file it finds.
 *
 * @module
 */

import {
  dropHex,
  encodeDropHeader,
  MAX_REQUEST_SIZE,
  type ServiceReply,
  type ServiceRequest,
} from "./drop.ts";
import { DataError, TempError } from "../shared/errors.ts";
import { type ByteReader, writeAll } from "../shared/spool_io.ts";
import { ALIVE_FILE, ROOT_DROP_MODE, topProblem } from "./spool_layout.ts";

/** A service whose `alive` file is older than this is not running. */
export const ALIVE_STALE_MS = 20_000;
const CHUNK = 65536;

function newHex(): string {
  return dropHex(crypto.getRandomValues(new Uint8Array(16)));
}

/**
 * The directory this process drops into: `drop/` (sticky, the service's)
 * for a user, `root/` (root's own, group the service's) for root, which
 * never works inside a directory another account can write.
 */
async function checkDropDir(spool: string): Promise<{ dir: string; gid: number | undefined }> {
  const uid = Deno.uid();
  const notSetUp = () =>
    new TempError(`the sshsendmail service is not set up (no usable ${spool})`, "4.3.5");
  if (uid === 0) {
    const top = await Deno.lstat(spool).catch(() => undefined);
    const dir = `${spool}/root`;
    const info = await Deno.lstat(dir).catch(() => undefined);
    if (!top || topProblem(top) || !info || info.isSymlink || !info.isDirectory) throw notSetUp();
    if (info.uid !== 0 || ((info.mode ?? 0) & 0o022) !== 0) throw notSetUp();
    await sweepRootDir(dir);
    return { dir, gid: info.gid ?? undefined };
  }
  const dir = `${spool}/drop`;
  const info = await Deno.lstat(dir).catch(() => undefined);
  if (!info || !info.isDirectory || ((info.mode ?? 0) & 0o1000) === 0) throw notSetUp();
  if (info.uid === uid) {
    throw new TempError(
      "the sshsendmail account does not submit through the drop: use the Postfix pipe or queue = no",
      "4.3.5",
    );
  }
  return { dir, gid: undefined };
}

/** Removes what the service took (emptied) or nobody answered from root's directory. */
async function sweepRootDir(dir: string): Promise<void> {
  const now = Date.now();
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    const info = await Deno.lstat(path).catch(() => undefined);
    if (!info || !info.isFile) continue;
    const age = now - (info.mtime?.getTime() ?? now);
    const taken = e.name.startsWith("d") && info.size === 0;
    if (taken || (e.name.startsWith("q") && age > 600_000) || age > 86_400_000) {
      await Deno.remove(path).catch(() => {});
    }
  }
}

/**
 * Creates `t<hex>` in the drop directory, readable by the service whatever
 * the umask (in root's directory: group the service's, which may empty it).
 */
async function createTemp(
  where: { dir: string; gid: number | undefined },
): Promise<{ hex: string; path: string; file: Deno.FsFile }> {
  const dir = where.dir;
  for (let tries = 0;; tries++) {
    const hex = newHex();
    const path = `${dir}/t${hex}`;
    try {
      const mode = where.gid === undefined ? 0o644 : ROOT_DROP_MODE;
      const file = await Deno.open(path, { write: true, createNew: true, mode });
      if (where.gid !== undefined) await Deno.chown(path, 0, where.gid);
      await Deno.chmod(path, mode);
      return { hex, path, file };
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists && tries < 3) continue;
      throw new TempError("cannot write into the sshsendmail drop directory", "4.3.0", String(err));
    }
  }
}

/** Renames a finished drop into place (a name another user squats makes the rename fail). */
async function publish(dir: string, from: string, to: string): Promise<void> {
  try {
    await Deno.rename(from, `${dir}/${to}`);
  } catch (err) {
    await Deno.remove(from).catch(() => {});
    throw new TempError("cannot hand the message to the sshsendmail service", "4.3.0", String(err));
  }
}

/** Options of {@link dropMessage}. */
export interface DropOptions {
  /** The largest message the service takes (it sets aside bigger drops). */
  maxSize: number;
  /** Give up on a sender that stops writing for this long. */
  idleTimeoutMs: number;
}

/**
 * Writes one message for the service: its sendmail words on the first
 * line, then the message bytes; fsynced, then renamed to `d<hex>`.
 *
 * @returns The drop's hex (the submission id the service logs).
 * @throws {DataError} The message is over `maxSize` (5.3.4): nothing is left behind.
 * @throws {TempError} No drop directory, or it cannot be written.
 */
export async function dropMessage(
  spool: string,
  words: readonly string[],
  body: ByteReader,
  o: DropOptions,
): Promise<string> {
  const where = await checkDropDir(spool);
  const dir = where.dir;
  const { hex, path, file } = await createTemp(where);
  try {
    const head = new TextEncoder().encode(encodeDropHeader(words));
    await writeAll(file, head);
    const buffer = new Uint8Array(CHUNK);
    let size = 0;
    for (;;) {
      const n = await Promise.race([
        body.read(buffer),
        new Promise<"idle">((resolve) =>
          AbortSignal.timeout(o.idleTimeoutMs).addEventListener("abort", () => resolve("idle"))
        ),
      ]);
      if (n === "idle") throw new TempError("timed out waiting for the message", "4.4.2");
      if (n === null) break;
      size += n;
      if (size > o.maxSize) throw new DataError("message too big", "5.3.4");
      await writeAll(file, buffer.subarray(0, n));
    }
    await file.syncData();
  } catch (err) {
    file.close();
    await Deno.remove(path).catch(() => {});
    if (err instanceof DataError || err instanceof TempError) throw err;
    throw new TempError("cannot write into the sshsendmail drop directory", "4.3.0", String(err));
  }
  file.close();
  await publish(dir, path, `d${hex}`);
  return hex;
}

/** True when the service refreshed its `alive` file lately. */
export async function serviceRunning(spool: string, now: number): Promise<boolean> {
  const info = await Deno.lstat(`${spool}/${ALIVE_FILE}`).catch(() => undefined);
  return info?.mtime !== null && info?.mtime !== undefined &&
    now - info.mtime.getTime() < ALIVE_STALE_MS;
}

/**
 * Sends a request (`mailq`, `-q`, `--remove`) and waits for the service's
 * reply, for as long as the service stays alive.
 *
 * @throws {TempError} The service is not running, or it stopped meanwhile.
 */
export async function askService(spool: string, request: ServiceRequest): Promise<ServiceReply> {
  if (!await serviceRunning(spool, Date.now())) {
    throw new TempError("the sshsendmail service is not running", "4.3.0");
  }
  const where = await checkDropDir(spool);
  const dir = where.dir;
  const { hex, path, file } = await createTemp(where);
  try {
    const text = new TextEncoder().encode(JSON.stringify(request));
    if (text.length > MAX_REQUEST_SIZE) throw new RangeError("Cannot send a request: too long");
    await writeAll(file, text);
  } finally {
    file.close();
  }
  await publish(dir, path, `q${hex}`);
  // root's reply comes in its own file; a user's in reply/, under the same hex.
  const own = where.gid !== undefined;
  const reply = own ? `${dir}/q${hex}` : `${spool}/reply/${hex}`;
  let wait = 2;
  let garbled = 0;
  let checked = Date.now();
  for (;;) {
    const text = await Deno.readTextFile(reply).catch(() => undefined);
    if (text !== undefined && (!own || text.includes('"reply"'))) {
      let parsed;
      try {
        parsed = JSON.parse(text);
      } catch {
        // root's reply is written in place: a read may catch it half-written.
        if (!own || ++garbled > 50) {
          throw new TempError("the sshsendmail service answered garbage", "4.3.0");
        }
      }
      if (parsed !== undefined) {
        if (own) await Deno.remove(reply).catch(() => {});
        return (own ? parsed.reply : parsed) as ServiceReply;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 100);
    if (Date.now() - checked > 5000) {
      checked = Date.now();
      if (!await serviceRunning(spool, checked)) {
        throw new TempError("the sshsendmail service stopped before it answered", "4.3.0");
      }
    }
  }
}
