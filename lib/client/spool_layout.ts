/**
 * The satellite service's spool, as data: who owns each part and its mode.
 * The top directory is root's (0755), so no account but root can replace
 * a part; `sshsendmail --init-spool` (root) makes the layout, the service
 * checks it at start and refuses to run on anything else. Pure.
 *
 * - `drop/`: every local user writes here (sticky, not listable); the
 *   service (its owner) takes the files away.
 * - `root/`: root's own drops (root's, group the service's): root never
 *   works inside a directory another account can write, so its mail and
 *   requests stay in a directory only root can change; the service reads
 *   them and empties each file it took (it may not delete them).
 * - `incoming/`, `queue/`, `hold/`: the service's private directories.
 * - `reply/`: replies to users' requests under unguessable names
 *   (traversable, not listable), and `alive` (the service's pid).
 * - `.cache/`: the account's home is the top, and Deno keeps its caches in
 *   `$HOME/.cache/deno`; without it each program the account runs outside
 *   the unit (the Postfix pipe) parses and compiles its bundle afresh.
 *
 * @module
 */

/** Who owns a part of the spool. */
export type SpoolOwner = "root" | "service";

/** One directory of the spool. */
export interface SpoolPart {
  name: string;
  owner: SpoolOwner;
  /** The group: root's (0) or the service account's. */
  group: SpoolOwner;
  mode: number;
}

/** The top directory's mode (owner root). */
export const SPOOL_TOP_MODE = 0o755;

/** The parts, in the order `--init-spool` makes them. */
export const SPOOL_PARTS: readonly SpoolPart[] = [
  { name: "drop", owner: "service", group: "service", mode: 0o1733 },
  { name: "root", owner: "root", group: "service", mode: 0o750 },
  { name: "incoming", owner: "service", group: "service", mode: 0o700 },
  { name: "queue", owner: "service", group: "service", mode: 0o700 },
  { name: "hold", owner: "service", group: "service", mode: 0o700 },
  { name: "reply", owner: "service", group: "service", mode: 0o711 },
];

/**
 * Deno's cache directory for the account's own runs ({@link SPOOL_PARTS}'
 * companion: `--init-spool` makes it, the service does not require it, so a
 * spool made before it still serves).
 */
export const CACHE_PART: SpoolPart = {
  name: ".cache",
  owner: "service",
  group: "service",
  mode: 0o700,
};

/** The file in `reply/` whose mtime says the service runs (it holds the pid). */
export const ALIVE_FILE = "reply/alive";

/** Mode of a file root drops into `root/` (the service reads it and empties it). */
export const ROOT_DROP_MODE = 0o660;

/** The ids a part's owner and group stand for. */
export interface SpoolIds {
  serviceUid: number;
  serviceGid: number;
}

/** The uid and gid a part must have. */
export function partIds(part: SpoolPart, ids: SpoolIds): { uid: number; gid: number } {
  return {
    uid: part.owner === "root" ? 0 : ids.serviceUid,
    gid: part.group === "root" ? 0 : ids.serviceGid,
  };
}

/** Stat fields the layout check reads. */
export interface PartStat {
  isDirectory: boolean;
  isSymlink: boolean;
  uid: number | null;
  gid: number | null;
  mode: number | null;
}

/**
 * Why a directory is not the part it should be (undefined: it is).
 *
 * @example Usage
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { partProblem, SPOOL_PARTS } from "./spool_layout.ts";
 * const drop = SPOOL_PARTS[0]!;
 * const ids = { serviceUid: 999, serviceGid: 995 };
 * const ok = { isDirectory: true, isSymlink: false, uid: 999, gid: 995, mode: 0o41733 };
 * strictEqual(partProblem(drop, ok, ids), undefined);
 * strictEqual(partProblem(drop, { ...ok, uid: 1000 }, ids), "owned by uid 1000, not 999");
 * ```
 */
export function partProblem(part: SpoolPart, info: PartStat, ids: SpoolIds): string | undefined {
  if (info.isSymlink || !info.isDirectory) return "not a directory";
  const want = partIds(part, ids);
  if (info.uid !== want.uid) return `owned by uid ${info.uid}, not ${want.uid}`;
  if (info.gid !== want.gid) return `group ${info.gid}, not ${want.gid}`;
  const mode = (info.mode ?? 0) & 0o7777;
  if (mode !== part.mode) return `mode ${mode.toString(8)}, not ${part.mode.toString(8)}`;
  return undefined;
}

/** Why the top directory cannot hold the spool (undefined: it can). */
export function topProblem(info: PartStat): string | undefined {
  if (info.isSymlink || !info.isDirectory) return "not a directory";
  if (info.uid !== 0) return `owned by uid ${info.uid}, not root`;
  if (info.mode === null) return "mode unknown";
  if ((info.mode & 0o022) !== 0) return "writable by others than root";
  return undefined;
}
