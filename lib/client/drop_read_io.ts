/**
 * Reads of a checked drop's open file: a request's whole (capped) text, a
 * message drop's first line. Effectful edge module.
 *
 * @module
 */

import { giveChunk, takeChunk } from "../shared/spool_io.ts";

/** Reads at most `cap` bytes as text; undefined when there are more. */
export async function readFileCapped(file: Deno.FsFile, cap: number): Promise<string | undefined> {
  const buffer = new Uint8Array(cap + 1);
  let got = 0;
  for (;;) {
    const n = await file.read(buffer.subarray(got));
    if (n === null) break;
    got += n;
    if (got > cap) return undefined;
  }
  return new TextDecoder().decode(buffer.subarray(0, got));
}

/** Reads the first line (without LF) and the bytes already read after it. */
export async function readHeadLine(
  file: Deno.FsFile,
  cap: number,
): Promise<{ line: string; rest: Uint8Array } | undefined> {
  const pooled = takeChunk();
  let buf = pooled.length <= cap + 1 ? pooled : new Uint8Array(cap + 1);
  let got = 0;
  try {
    return await readLine();
  } finally {
    giveChunk(pooled);
  }
  async function readLine(): Promise<{ line: string; rest: Uint8Array } | undefined> {
    for (;;) {
      if (got === buf.length) {
        if (buf.length > cap) return undefined;
        const bigger = new Uint8Array(Math.min(buf.length * 2, cap + 1));
        bigger.set(buf);
        buf = bigger;
      }
      const n = await file.read(buf.subarray(got));
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
