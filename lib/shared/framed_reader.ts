/**
 * A buffered reader over a byte source for the batch protocol: header lines
 * of bounded length, then exactly N bytes of message. Pure over its source:
 * it performs I/O only through the ByteReader it is given.
 *
 * @module
 */

import type { ByteReader } from "./spool_io.ts";

const CHUNK = 65536;

/** Splits one byte stream into lines and counted bodies. */
export class FramedReader {
  #source: ByteReader;
  #buffer: Uint8Array = new Uint8Array(0);
  #eof = false;

  /** @param source where the bytes come from. */
  constructor(source: ByteReader) {
    this.#source = source;
  }

  #chunk = new Uint8Array(CHUNK);

  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const n = await this.#source.read(this.#chunk);
    if (n === null) {
      this.#eof = true;
      return false;
    }
    if (this.#buffer.length === 0) {
      this.#buffer = this.#chunk.slice(0, n);
      return true;
    }
    const next = new Uint8Array(this.#buffer.length + n);
    next.set(this.#buffer);
    next.set(this.#chunk.subarray(0, n), this.#buffer.length);
    this.#buffer = next;
    return true;
  }

  /**
   * Reads one LF-terminated line (without the LF). Returns null at a clean
   * end of input.
   *
   * @throws {RangeError} When no LF comes within `max` bytes, or the input
   * ends inside a line.
   */
  async readLine(max: number): Promise<string | null> {
    for (;;) {
      const nl = this.#buffer.indexOf(0x0a);
      if (nl >= 0) {
        if (nl > max) throw new RangeError("Cannot read frame header: line too long");
        const line = new TextDecoder().decode(this.#buffer.subarray(0, nl));
        this.#buffer = this.#buffer.subarray(nl + 1);
        return line;
      }
      if (this.#buffer.length > max) {
        throw new RangeError("Cannot read frame header: line too long");
      }
      if (!(await this.#fill())) {
        if (this.#buffer.length === 0) return null;
        throw new RangeError("Cannot read frame header: input ended inside a line");
      }
    }
  }

  /**
   * Reads one raw line without its LF (a CR stays). Returns null at a clean
   * end of input, the rest of the input if it ends without a LF, and
   * "too-long" (after skipping through the LF) for a line over `max` bytes.
   */
  async readRawLine(max: number): Promise<Uint8Array | null | "too-long"> {
    let skipping = false;
    for (;;) {
      const nl = this.#buffer.indexOf(0x0a);
      if (nl >= 0) {
        const line = this.#buffer.subarray(0, nl);
        this.#buffer = this.#buffer.subarray(nl + 1);
        return skipping || nl > max ? "too-long" : line;
      }
      if (this.#buffer.length > max) {
        skipping = true;
        this.#buffer = new Uint8Array(0);
      }
      if (!(await this.#fill())) {
        if (skipping) {
          // The tail of the long line is no line of its own.
          this.#buffer = new Uint8Array(0);
          return "too-long";
        }
        if (this.#buffer.length === 0) return null;
        const rest = this.#buffer;
        this.#buffer = new Uint8Array(0);
        return rest;
      }
    }
  }

  /**
   * A reader that yields at most `n` more bytes (fewer if the input ends);
   * `left` tells how many of the `n` it has not delivered yet.
   */
  limited(n: number): LimitedReader {
    let left = n;
    return {
      get left() {
        return left;
      },
      read: async (p) => {
        if (left === 0) return null;
        if (this.#buffer.length === 0 && !(await this.#fill())) return null;
        const take = Math.min(p.length, left, this.#buffer.length);
        p.set(this.#buffer.subarray(0, take));
        this.#buffer = this.#buffer.subarray(take);
        left -= take;
        return take;
      },
    };
  }
}

/** A ByteReader over a counted stretch of its source. */
export interface LimitedReader extends ByteReader {
  readonly left: number;
}

/** Reads and drops what is left of `reader`. */
export async function drain(reader: ByteReader): Promise<void> {
  const sink = new Uint8Array(CHUNK);
  while ((await reader.read(sink)) !== null) { /* dropped */ }
}
