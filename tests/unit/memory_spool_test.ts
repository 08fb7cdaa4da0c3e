/**
 * The relay's in-memory spool (`spoolMessage` with `inMemory`): a message
 * that fits in one read buffer never becomes a file, reads back byte for
 * byte with the same size and SHA-256 a file spool gives, and the first byte
 * past the buffer turns it into a file. These tests run with no permission
 * at all, so any attempt to create a file shows as "cannot spool message".
 */
import { deepStrictEqual, rejects, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { MemoryFile } from "../../lib/shared/memory_file.ts";
import { type ByteReader, type Spooled, spoolMessage } from "../../lib/shared/spool_io.ts";
import { Sha256 } from "../../lib/shared/sha256.ts";

const BUFFER = 65536;
const OPTIONS = { dir: "/nonexistent", maxSize: 10_000_000, idleTimeoutMs: 5000, inMemory: true };

/** A reader yielding `data` in the given chunk sizes (the rest in one). */
function chunked(data: Uint8Array, sizes: number[] = []): ByteReader {
  let at = 0;
  let k = 0;
  return {
    read(p) {
      if (at >= data.length) return Promise.resolve(null);
      const want = Math.max(1, sizes[k++] ?? data.length);
      const n = Math.min(p.length, want, data.length - at);
      p.set(data.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

async function readAll(spool: Spooled): Promise<Uint8Array> {
  await spool.file.seek(0, Deno.SeekMode.Start);
  const parts: number[] = [];
  const p = new Uint8Array(1000);
  for (let n = await spool.file.read(p); n !== null; n = await spool.file.read(p)) {
    parts.push(...p.subarray(0, n));
  }
  return new Uint8Array(parts);
}

function sha256(data: Uint8Array): string {
  const h = new Sha256();
  h.update(data);
  return h.hex();
}

const bytes = (n: number, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * seed) & 0xff);

for (
  const [name, size] of [
    ["an empty message", 0],
    ["a 1 KB message", 1024],
    ["one byte short of the buffer", BUFFER - 1],
  ] as const
) {
  Deno.test(`in-memory spool: ${name} stays in memory and reads back whole`, async () => {
    const data = bytes(size);
    const spool = await spoolMessage(chunked(data, [3, 500, 1]), OPTIONS);
    strictEqual(spool.file instanceof MemoryFile, true);
    deepStrictEqual([spool.size, spool.sha256], [size, sha256(data)]);
    deepStrictEqual(await readAll(spool), data);
    // A second reader (relay failover) starts from the top again.
    deepStrictEqual(await readAll(spool), data);
  });
}

Deno.test("in-memory spool: a message that fills the buffer becomes a file (here: no permission, so refused)", async () => {
  await rejects(
    spoolMessage(chunked(bytes(BUFFER), [BUFFER - 10]), OPTIONS),
    /cannot spool message/,
  );
  // Positive control: without inMemory, even a 1-byte message asks for a file.
  await rejects(
    spoolMessage(chunked(bytes(1)), { ...OPTIONS, inMemory: false }),
    /cannot spool message/,
  );
});

Deno.test('in-memory spool, "whole" (root\'s client): a message past the buffer, 300 KB, stays in memory: no file, however large', async () => {
  const data = bytes(300_000, 13);
  const spool = await spoolMessage(chunked(data, [1000, BUFFER, 70_000]), {
    ...OPTIONS,
    inMemory: "whole",
  });
  strictEqual(spool.file instanceof MemoryFile, true);
  deepStrictEqual([spool.size, spool.sha256], [data.length, sha256(data)]);
  deepStrictEqual(await readAll(spool), data);
  // Its limits hold as a file's do.
  await rejects(
    spoolMessage(chunked(bytes(200_001)), { ...OPTIONS, inMemory: "whole", maxSize: 200_000 }),
    /message too big/,
  );
});

Deno.test("in-memory spool: the size limits hold as for a file", async () => {
  await rejects(spoolMessage(chunked(bytes(101)), { ...OPTIONS, maxSize: 100 }), /message too big/);
  await rejects(
    spoolMessage(chunked(bytes(11)), { ...OPTIONS, declaredSize: 10 }),
    /longer than its declared size/,
  );
  strictEqual((await spoolMessage(chunked(bytes(100)), { ...OPTIONS, maxSize: 100 })).size, 100);
});

Deno.test("in-memory spool: any bytes in any chunking read back with the file spool's SHA-256", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 3000 }),
      fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 20 }),
      async (data, sizes) => {
        const spool = await spoolMessage(chunked(data, sizes), OPTIONS);
        deepStrictEqual([spool.size, spool.sha256], [data.length, sha256(data)]);
        deepStrictEqual(await readAll(spool), data);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("MemoryFile: seek from start, current and end; before the start is an error", async () => {
  const file = new MemoryFile(new Uint8Array([1, 2, 3, 4]));
  const p = new Uint8Array(2);
  deepStrictEqual(await file.seek(1, Deno.SeekMode.Start), 1);
  deepStrictEqual(await file.seek(1, Deno.SeekMode.Current), 2);
  deepStrictEqual([await file.read(p), [...p]], [2, [3, 4]]);
  deepStrictEqual(await file.seek(-3, Deno.SeekMode.End), 1);
  deepStrictEqual([await file.read(p), [...p]], [2, [2, 3]]);
  await rejects(file.seek(-5, Deno.SeekMode.End), RangeError);
  deepStrictEqual(await file.read(new Uint8Array(0)), 0);
});

Deno.test("in-memory spool with memoryMax: a message of 1 MiB stays in memory and hashes the same", async () => {
  const data = bytes(1 << 20, 13);
  const spool = await spoolMessage(chunked(data, [BUFFER, 17, 300_000]), {
    ...OPTIONS,
    memoryMax: 4 << 20,
  });
  strictEqual(spool.file instanceof MemoryFile, true);
  deepStrictEqual([spool.size, spool.sha256], [data.length, sha256(data)]);
  deepStrictEqual(await readAll(spool), data);
});

Deno.test("in-memory spool with memoryMax: a message that reaches it becomes a file (here: refused)", async () => {
  await rejects(
    spoolMessage(chunked(bytes(1 << 20)), { ...OPTIONS, memoryMax: 1 << 19 }),
    /cannot spool message/,
  );
  // The default is one buffer: 64 KiB and more asks for a file.
  await rejects(spoolMessage(chunked(bytes(BUFFER)), OPTIONS), /cannot spool message/);
});
