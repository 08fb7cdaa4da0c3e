/**
 * A small message held in memory, read like the spool file it stands in
 * for: the relay keeps a message that fits in one read buffer here instead
 * of creating, unlinking, writing and reading back a file. Pure.
 *
 * @module
 */

/** What a spool's readers use of a file: read from a position, seek, close. */
export interface SpoolFile {
  read(p: Uint8Array): Promise<number | null>;
  seek(offset: number | bigint, whence: Deno.SeekMode): Promise<number>;
  close(): void;
}

/**
 * Bytes read like a file (Deno.SeekMode values: 0 start, 1 current, 2 end).
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { MemoryFile } from "./memory_file.ts";
 * const file = new MemoryFile(new TextEncoder().encode("hello"));
 * const p = new Uint8Array(3);
 * deepStrictEqual([await file.read(p), [...p]], [3, [104, 101, 108]]);
 * deepStrictEqual([await file.read(p), await file.read(p)], [2, null]);
 * deepStrictEqual([await file.seek(-1, 2), await file.read(p), p[0]], [4, 1, 111]);
 * ```
 */
export class MemoryFile implements SpoolFile {
  #bytes: Uint8Array;
  #pos = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (p.length === 0) return Promise.resolve(0);
    if (this.#pos >= this.#bytes.length) return Promise.resolve(null);
    const n = Math.min(p.length, this.#bytes.length - this.#pos);
    p.set(this.#bytes.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return Promise.resolve(n);
  }

  seek(offset: number | bigint, whence: Deno.SeekMode): Promise<number> {
    const base = whence === 0 ? 0 : whence === 1 ? this.#pos : this.#bytes.length;
    const to = base + Number(offset);
    if (!Number.isSafeInteger(to) || to < 0) {
      return Promise.reject(new RangeError(`seek before the start (${to})`));
    }
    this.#pos = to;
    return Promise.resolve(to);
  }

  close(): void {
    this.#bytes = new Uint8Array(0);
    this.#pos = 0;
  }
}
