/**
 * The satellite's drop directory, pure: names, the drop file format, the
 * checks a drop must pass before the service reads it, and the requests
 * (`mailq`, `sendmail -q`) a user sends to the service.
 *
 * Any local user may write into the drop directory (sticky, 1733) but not
 * list or read it. A drop is written as `t<hex>` and renamed to `d<hex>`
 * (a message) or `q<hex>` (a request); the file's owner uid is the only
 * identity the service trusts.
 *
 * @module
 */

import { hexOf } from "../shared/sha256.ts";

/** The random part of every drop name: 128 bits, lower-case hex. */
export const DROP_HEX_REGEXP = /^[0-9a-f]{32}$/;

/** Longest first line (the request words) of a message drop. */
export const MAX_DROP_HEADER = 1 << 16;
/** Largest request drop (`q<hex>`). */
export const MAX_REQUEST_SIZE = 4096;
/** A `t<hex>` drop older than this was abandoned by a killed writer. */
export const STALE_TEMP_MS = 3_600_000;

/** What a name in the drop directory is. */
export type DropName =
  | { kind: "message"; hex: string }
  | { kind: "request"; hex: string }
  | { kind: "temp"; hex: string }
  | { kind: "other" };

/**
 * Classifies a name found in the drop directory.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { classifyDropName } from "./drop.ts";
 * const hex = "0123456789abcdef0123456789abcdef";
 * deepStrictEqual(classifyDropName(`d${hex}`), { kind: "message", hex });
 * deepStrictEqual(classifyDropName("../x"), { kind: "other" });
 * ```
 */
export function classifyDropName(name: string): DropName {
  const hex = name.slice(1);
  if (!DROP_HEX_REGEXP.test(hex)) return { kind: "other" };
  switch (name[0]) {
    case "d":
      return { kind: "message", hex };
    case "q":
      return { kind: "request", hex };
    case "t":
      return { kind: "temp", hex };
    default:
      return { kind: "other" };
  }
}

/** A fresh drop hex from 16 random bytes. */
export function dropHex(random: Uint8Array): string {
  if (random.length !== 16) throw new RangeError("Cannot make a drop name: need 16 random bytes");
  return hexOf(random);
}

/** The fields of a stat result the checks use (Deno.FileInfo has them all). */
export interface DropStat {
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
  nlink: number | null;
  uid: number | null;
  size: number;
  dev: number | null;
  ino: number | null;
}

/** The verdict on a drop. */
export type DropCheck = { kind: "ok"; uid: number } | { kind: "refused"; reason: string };

/** Limits of {@link checkDrop}. */
export interface DropLimits {
  /** The service's own uid: it never takes mail from itself through the drop. */
  serviceUid: number;
  /** Largest drop taken (the message plus its one-line header). */
  maxSize: number;
  /** Requests (`q<hex>`) may come from the service account itself. */
  allowServiceUid?: boolean;
}

/**
 * Decides whether a drop may be read: a regular file with one link, owned
 * by a uid other than the service's, within the size cap.
 *
 * Security: `info` must come from `lstat` of the name after it was moved
 * into the service's private directory (nobody else can swap it there),
 * and again from `stat` of the opened descriptor (see {@link sameFile}).
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { checkDrop } from "./drop.ts";
 * const file = { isFile: true, isDirectory: false, isSymlink: false, nlink: 1, uid: 1000, size: 9, dev: 1, ino: 2 };
 * deepStrictEqual(checkDrop(file, { serviceUid: 999, maxSize: 100 }), { kind: "ok", uid: 1000 });
 * deepStrictEqual(checkDrop({ ...file, nlink: 2 }, { serviceUid: 999, maxSize: 100 }).kind, "refused");
 * ```
 */
export function checkDrop(info: DropStat, limits: DropLimits): DropCheck {
  if (info.isSymlink) return { kind: "refused", reason: "symlink" };
  if (info.isDirectory) return { kind: "refused", reason: "directory" };
  if (!info.isFile) return { kind: "refused", reason: "not a regular file" };
  if (info.nlink !== 1) return { kind: "refused", reason: `${info.nlink ?? "unknown"} links` };
  if (info.uid === null) return { kind: "refused", reason: "no owner" };
  if (info.uid === limits.serviceUid && !limits.allowServiceUid) {
    return { kind: "refused", reason: "owned by the service account" };
  }
  if (info.size > limits.maxSize) return { kind: "refused", reason: "over the size limit" };
  return { kind: "ok", uid: info.uid };
}

/** True when two stat results name the same file (device and inode). */
export function sameFile(a: DropStat, b: DropStat): boolean {
  return a.dev !== null && a.ino !== null && a.dev === b.dev && a.ino === b.ino;
}

/** The first line of a message drop: its sendmail words, as JSON. */
export function encodeDropHeader(words: readonly string[]): string {
  return `${JSON.stringify(words)}\n`;
}

/**
 * Parses the first line of a message drop (without its LF). Undefined when
 * it is not a JSON array of strings; the words still go through the
 * sendmail grammar afterwards.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { parseDropHeader } from "./drop.ts";
 * deepStrictEqual(parseDropHeader('["-oi","--","a@b"]'), ["-oi", "--", "a@b"]);
 * deepStrictEqual(parseDropHeader('{"x":1}'), undefined);
 * ```
 */
export function parseDropHeader(line: string): string[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value.length > 4096) return undefined;
  return value.every((w) => typeof w === "string") ? value as string[] : undefined;
}

/** What a user may ask the service. */
export type ServiceRequest =
  | { op: "list" }
  | { op: "flush" }
  | { op: "remove"; id: string };

/** A queue id as users see it (the service's own ids). */
const ID_REGEXP = /^(m[0-9a-f]{32}|[0-9A-F]{10})$/;

/**
 * Parses a request drop's text.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { parseServiceRequest } from "./drop.ts";
 * deepStrictEqual(parseServiceRequest('{"op":"flush"}'), { op: "flush" });
 * deepStrictEqual(parseServiceRequest('{"op":"rm -rf"}'), undefined);
 * ```
 */
export function parseServiceRequest(text: string): ServiceRequest | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const keys = Object.keys(v).length;
  if ((v.op === "list" || v.op === "flush") && keys === 1) return { op: v.op };
  if (v.op === "remove" && typeof v.id === "string" && ID_REGEXP.test(v.id) && keys === 2) {
    return { op: "remove", id: v.id };
  }
  return undefined;
}

/** One message as `mailq` shows it. */
export interface ListedMessage {
  id: string;
  uid: number | undefined;
  size: number;
  /** Enqueue time, ms since the epoch. */
  created: number;
  sender: string | null;
  recipients: string[];
  extractRecipients: boolean;
  attempts: number;
  lastError: string | undefined;
  /** Next attempt not before, ms since the epoch (undefined: as soon as possible). */
  nextAttempt: number | undefined;
}

/** The service's answer to a request. */
export type ServiceReply =
  | { ok: true; op: "list"; messages: ListedMessage[] }
  | {
    ok: true;
    op: "flush";
    delivered: number;
    deferred: number;
    failed: number;
    expired: number;
    waiting: number;
    lastError?: string | undefined;
  }
  | { ok: true; op: "remove"; removed: boolean }
  | { ok: false; error: string };

/**
 * Whose messages a requester may see or touch: root and the service
 * account see every message, anyone else only their own.
 */
export function mayAccess(requester: number, serviceUid: number, owner: number | undefined) {
  return requester === 0 || requester === serviceUid || requester === owner;
}
