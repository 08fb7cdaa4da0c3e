/**
 * Where a client process (a direct send, `-bs`, nullmailer's module, the
 * setup test) keeps the message it reads. Pure.
 *
 * @module
 */

import { MEMORY_SPOOL_MAX, SPOOL_DIR } from "../shared/layout.ts";

/** The spool options of a client running as `uid` (see {@link localSpool}). */
export interface LocalSpool {
  dir: string;
  inMemory: true | "whole";
  /** With `inMemory: true`: the most held in memory before a file (default 64 KiB). */
  memoryMax?: number;
}

/**
 * A message under 4 MiB stays in memory; a larger one goes to an unlinked
 * file in `/tmp`, except for root, which keeps it all in memory: no process
 * of ours that runs as root creates a path in a directory every account
 * writes (an `O_EXCL` name there is safe, but the rule has no exceptions).
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { localSpool } from "./local_spool.ts";
 * deepStrictEqual(localSpool(1000), { dir: "/tmp", inMemory: true, memoryMax: 4194304 });
 * deepStrictEqual(localSpool(0).inMemory, "whole");
 * ```
 */
export function localSpool(uid: number): LocalSpool {
  return { dir: SPOOL_DIR, inMemory: uid === 0 ? "whole" : true, memoryMax: MEMORY_SPOOL_MAX };
}
