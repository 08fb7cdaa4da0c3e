/**
 * How a batch frame goes into ssh (`writeJoined`, used by the client's
 * `writeFrame` and the service's queue): header, body and `END` in as few
 * writes as a 64 KiB buffer allows. A small message is one write (one ssh
 * packet, one read at the relay); a large one is cut into writes of at most
 * 64 KiB whose bytes, end to end, are exactly the frame. Runs with no
 * permission at all (the spool is in memory).
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { type BatchSession, writeFrame } from "../../lib/client/batch_session_io.ts";
import { frameHeader } from "../../lib/shared/batch.ts";
import { MemoryFile } from "../../lib/shared/memory_file.ts";
import { writeJoined } from "../../lib/shared/write_joined.ts";

const BUFFER = 65536;
const WORDS = ["-oi", "-f", "a@relay.test", "--size=0", "--id=frame0001", "--", "b@relay.test"];

/** A session whose writer records a copy of every write (the buffer is reused). */
function recorder(): { session: BatchSession; writes: Uint8Array[]; closed: () => boolean } {
  const writes: Uint8Array[] = [];
  let closed = false;
  const stream = new WritableStream<Uint8Array>({
    write(chunk) {
      writes.push(chunk.slice());
    },
    close() {
      closed = true;
    },
  });
  const session = { writer: stream.getWriter() } as unknown as BatchSession;
  return { session, writes, closed: () => closed };
}

/** The parts end to end (a Blob joins them). */
async function concat(parts: Uint8Array[]): Promise<Uint8Array> {
  return new Uint8Array(await new Blob(parts as BlobPart[]).arrayBuffer());
}

const head = new TextEncoder().encode(`${frameHeader(WORDS)}\n`);
const END = new TextEncoder().encode("END\n");

const CASES: { name: string; size: number; last: boolean; writes: number }[] = [
  { name: "1 KiB, more frames to come: one write", size: 1024, last: false, writes: 1 },
  { name: "1 KiB, the last frame: one write, END included", size: 1024, last: true, writes: 1 },
  { name: "empty body, last: one write", size: 0, last: true, writes: 1 },
  {
    name: "header and body fill the buffer exactly: one write",
    size: BUFFER - head.length,
    last: false,
    writes: 1,
  },
  {
    name: "exactly full and last: END in a second write",
    size: BUFFER - head.length,
    last: true,
    writes: 2,
  },
  { name: "200 KiB, last: four writes of at most 64 KiB", size: 200 * 1024, last: true, writes: 4 },
];

for (const c of CASES) {
  Deno.test(`writeFrame: ${c.name}`, async () => {
    const body = new Uint8Array(c.size).map((_, i) => (i * 7 + 3) & 0xff);
    const { session, writes, closed } = recorder();
    const spool = { file: new MemoryFile(body), size: c.size, sha256: "" };
    strictEqual(await writeFrame(session, WORDS, spool, c.last), true);
    strictEqual(writes.length, c.writes);
    ok(writes.every((w) => w.length > 0 && w.length <= BUFFER));
    deepStrictEqual(await concat(writes), await concat([head, body, ...(c.last ? [END] : [])]));
    strictEqual(closed(), c.last);
  });
}

Deno.test("writeFrame: a session that is gone is false, not a throw", async () => {
  const stream = new WritableStream<Uint8Array>({
    write() {
      throw new Error("broken pipe");
    },
  });
  const session = { writer: stream.getWriter() } as unknown as BatchSession;
  const spool = { file: new MemoryFile(new Uint8Array(10)), size: 10, sha256: "" };
  strictEqual(await writeFrame(session, WORDS, spool, true), false);
});

/** writeJoined's edges: a header or a tail larger than the buffer goes alone. */
const JOINED: { name: string; head: number; body: number; tail: number; writes: number }[] = [
  { name: "nothing at all: no write", head: 0, body: 0, tail: 0, writes: 0 },
  {
    name: "a header larger than the buffer, then the body",
    head: 70_000,
    body: 10,
    tail: 4,
    writes: 2,
  },
  {
    name: "a tail that does not fit goes in a second write",
    head: 10,
    body: BUFFER - 12,
    tail: 4,
    writes: 2,
  },
  { name: "a tail larger than the buffer goes alone", head: 10, body: 10, tail: 70_000, writes: 2 },
  {
    name: "a body read one byte at a time is still one write",
    head: 10,
    body: 500,
    tail: 4,
    writes: 1,
  },
];

for (const c of JOINED) {
  Deno.test(`writeJoined: ${c.name}`, async () => {
    const fill = (n: number, k: number) => new Uint8Array(n).map((_, i) => (i * k + 1) & 0xff);
    const [h, b, t] = [fill(c.head, 3), fill(c.body, 5), fill(c.tail, 11)];
    const writes: Uint8Array[] = [];
    const sink = {
      write(chunk: Uint8Array) {
        writes.push(chunk.slice());
        return Promise.resolve();
      },
    };
    let at = 0;
    const oneByte = { // the last case's reader gives one byte per read
      read(p: Uint8Array) {
        if (at >= b.length) return Promise.resolve(null);
        p[0] = b[at++]!;
        return Promise.resolve(1);
      },
    };
    const body = c.name.includes("one byte") ? oneByte : new MemoryFile(b);
    await writeJoined(sink, h, body, t, new Uint8Array(BUFFER));
    strictEqual(writes.length, c.writes);
    ok(writes.every((w) => w.length > 0));
    deepStrictEqual(await concat(writes), await concat([h, b, t]));
  });
}
