/**
 * Reads of a checked drop's open file: a request's whole (capped) text, a
 * message drop's first line. Effectful edge module.
 *
 * Synchronous reads: a drop is a small local file the service has opened
 * and checked, and Deno's asynchronous reads hand each one to another
 * thread and back (docs/benchmarks.md, notes on issue 15).
 *
 * @module
 */

import { type ByteReader, giveChunk, takeChunk } from "../shared/spool_io.ts";

/** A checked drop's open file as the spool's reader, read synchronously. */
export function syncReader(file: Deno.FsFile): ByteReader {
  return {
    read(p) {
      try {
        return Promise.resolve(file.readSync(p));
      } catch (err) {
        return Promise.reject(err);
      }
    },
  };
}

/** Reads at most `cap` bytes as text; undefined when there are more. */
export function readFileCapped(file: Deno.FsFile, cap: number): string | undefined {
  const buffer = new Uint8Array(cap + 1);
  let got = 0;
  for (;;) {
    const n = file.readSync(buffer.subarray(got));
    if (n === null) break;
    got += n;
    if (got > cap) return undefined;
  }
  return new TextDecoder().decode(buffer.subarray(0, got));
}

/** Reads the first line (without LF) and the bytes already read after it. */
export function readHeadLine(
  file: Deno.FsFile,
  cap: number,
): { line: string; rest: Uint8Array } | undefined {
  const pooled = takeChunk();
  let buf = pooled.length <= cap + 1 ? pooled : new Uint8Array(cap + 1);
  let got = 0;
  try {
    return readLine();
  } finally {
    giveChunk(pooled);
  }
  function readLine(): { line: string; rest: Uint8Array } | undefined {
    for (;;) {
      if (got === buf.length) {
        if (buf.length > cap) return undefined;
        const bigger = new Uint8Array(Math.min(buf.length * 2, cap + 1));
        bigger.set(buf);
        buf = bigger;
      }
      const n = file.readSync(buf.subarray(got));
      if (n === null) return undefined;
      const nl = buf.subarray(got, got + n).indexOf(0x0a);
      got += n;
      if (nl >= 0) {
        const end = got - n + nl;
        return {
          line: new TextDecoder().decode(buf.subarray(0, end)),
          rest: buf.slice(end + 1, got),
        };
      }
    }
  }
}
