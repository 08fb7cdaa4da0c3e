/**
 * One batch frame into a stream in as few writes as a 64 KiB buffer allows:
 * its header, its body from a reader, and what follows (`END`). A small
 * message is one write, so one ssh packet and one read at the relay,
 * instead of one for each part. Pure (promises only: the I/O is the reader's
 * and the writer's).
 *
 * @module
 */

import type { ByteReader } from "./spool_io.ts";

/** Where the bytes go: a stream writer, or anything that writes alike. */
export interface ChunkSink {
  write(chunk: Uint8Array): Promise<void>;
}

/**
 * Writes `head`, then everything `body` yields, then `tail`, into `sink`,
 * joined in `buffer` (a 64 KiB one from the caller's pool, so a long
 * session allocates none per message): each write at most the buffer's
 * length (or `head` or `tail` alone, when larger), awaited before the
 * buffer is filled again.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { writeJoined } from "./write_joined.ts";
 * const writes: string[] = [];
 * const sink = { write: (c: Uint8Array) => { writes.push(new TextDecoder().decode(c)); return Promise.resolve(); } };
 * let done = false;
 * const body = { read: (p: Uint8Array) => {
 *   if (done) return Promise.resolve(null);
 *   done = true;
 *   p.set(new TextEncoder().encode("Subject: hi\n\nbody\n"));
 *   return Promise.resolve(18);
 * } };
 * const enc = new TextEncoder();
 * await writeJoined(sink, enc.encode("MSG -oi -- b@x\n"), body, enc.encode("END\n"), new Uint8Array(65536));
 * deepStrictEqual(writes, ["MSG -oi -- b@x\nSubject: hi\n\nbody\nEND\n"]);
 * ```
 */
export async function writeJoined(
  sink: ChunkSink,
  head: Uint8Array,
  body: ByteReader,
  tail: Uint8Array,
  buffer: Uint8Array,
): Promise<void> {
  const room = buffer.length;
  let held = 0;
  if (head.length >= room) await sink.write(head);
  else {
    buffer.set(head);
    held = head.length;
  }
  for (;;) {
    if (held === room) {
      await sink.write(buffer);
      held = 0;
    }
    const n = await body.read(buffer.subarray(held));
    if (n === null) break;
    held += n;
  }
  if (held + tail.length > room) {
    await sink.write(buffer.subarray(0, held));
    held = 0;
    if (tail.length >= room) {
      await sink.write(tail);
      return;
    }
  }
  buffer.set(tail, held);
  held += tail.length;
  if (held > 0) await sink.write(buffer.subarray(0, held));
}
