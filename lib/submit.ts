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
import { DataError, TempError } from "./errors.ts";
import { type ByteReader, writeAll } from "./pipeline.ts";

/** A service whose `alive` file is older than this is not running. */
export const ALIVE_STALE_MS = 20_000;
const CHUNK = 65536;

function newHex(): string {
  return dropHex(crypto.getRandomValues(new Uint8Array(16)));
}

/** Refuses a spool whose drop directory is not a sticky directory (no service set up). */
async function checkDropDir(spool: string): Promise<string> {
  const dir = `${spool}/drop`;
  const info = await Deno.lstat(dir).catch(() => undefined);
  if (!info || !info.isDirectory || ((info.mode ?? 0) & 0o1000) === 0) {
    throw new TempError(`the sshsendmail service is not set up (no ${dir})`, "4.3.5");
  }
  return dir;
}

/** Creates `t<hex>` in the drop directory, readable by the service whatever the umask. */
async function createTemp(dir: string): Promise<{ hex: string; path: string; file: Deno.FsFile }> {
  for (let tries = 0;; tries++) {
    const hex = newHex();
    const path = `${dir}/t${hex}`;
    try {
      const file = await Deno.open(path, { write: true, createNew: true, mode: 0o644 });
      await Deno.chmod(path, 0o644);
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
  const dir = await checkDropDir(spool);
  const { hex, path, file } = await createTemp(dir);
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
  const info = await Deno.stat(`${spool}/alive`).catch(() => undefined);
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
  const dir = await checkDropDir(spool);
  const { hex, path, file } = await createTemp(dir);
  try {
    const text = new TextEncoder().encode(JSON.stringify(request));
    if (text.length > MAX_REQUEST_SIZE) throw new RangeError("Cannot send a request: too long");
    await writeAll(file, text);
  } finally {
    file.close();
  }
  await publish(dir, path, `q${hex}`);
  const reply = `${spool}/reply/${hex}`;
  let wait = 2;
  let checked = Date.now();
  for (;;) {
    const text = await Deno.readTextFile(reply).catch(() => undefined);
    if (text !== undefined) {
      try {
        return JSON.parse(text) as ServiceReply;
      } catch {
        throw new TempError("the sshsendmail service answered garbage", "4.3.0");
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
