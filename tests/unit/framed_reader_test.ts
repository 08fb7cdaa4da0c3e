import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { drain, FramedReader } from "../../lib/shared/framed_reader.ts";
import type { ByteReader } from "../../lib/shared/spool_io.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An in-memory source that hands out its chunks one read at a time, and counts the reads. */
class ChunkSource implements ByteReader {
  #chunks: Iterator<Uint8Array>;
  #rest: Uint8Array = new Uint8Array(0);
  reads = 0;
  bytes = 0;

  constructor(chunks: Iterable<Uint8Array | string>) {
    const it = chunks[Symbol.iterator]();
    this.#chunks = {
      next: () => {
        const r = it.next();
        return r.done
          ? r
          : { value: typeof r.value === "string" ? encoder.encode(r.value) : r.value };
      },
    };
  }

  read(p: Uint8Array): Promise<number | null> {
    this.reads++;
    while (this.#rest.length === 0) {
      const next = this.#chunks.next();
      if (next.done) return Promise.resolve(null);
      this.#rest = next.value;
    }
    const n = Math.min(p.length, this.#rest.length);
    p.set(this.#rest.subarray(0, n));
    this.#rest = this.#rest.subarray(n);
    this.bytes += n;
    return Promise.resolve(n);
  }
}

function reader(...chunks: (Uint8Array | string)[]): FramedReader {
  return new FramedReader(new ChunkSource(chunks));
}

/** Reads all of `r` with reads of at most `size` bytes. */
async function readAll(r: ByteReader, size = 7): Promise<Uint8Array> {
  const out: number[] = [];
  const p = new Uint8Array(size);
  for (;;) {
    const n = await r.read(p);
    if (n === null) return new Uint8Array(out);
    out.push(...p.subarray(0, n));
  }
}

/** `count` chunks of `size` bytes of `byte`, made lazily. */
function* repeated(byte: number, size: number, count: number): Generator<Uint8Array> {
  for (let i = 0; i < count; i++) yield new Uint8Array(size).fill(byte);
}

/** [name, chunks, lines] */
const LINES: [string, string[], string[]][] = [
  ["two lines", ["a\nb\n"], ["a", "b"]],
  ["an empty line", ["\n\n"], ["", ""]],
  ["a line split across chunks", ["MSG -o", "i -- a@x", ".example\n"], ["MSG -oi -- a@x.example"]],
  ["one byte a chunk", [..."ab\ncd\n"], ["ab", "cd"]],
  ["many lines in one chunk", ["1\n2\n3\n4\n"], ["1", "2", "3", "4"]],
  ["the CR of CRLF stays (the tokenizer refuses it)", ["a\r\n"], ["a\r"]],
  ["UTF-8 letters", ["jörg 用户\n"], ["jörg 用户"]],
];

Deno.test("FramedReader.readLine() splits the input into LF-terminated lines", async (t) => {
  for (const [name, chunks, lines] of LINES) {
    await t.step(name, async () => {
      const r = reader(...chunks);
      for (const line of lines) strictEqual(await r.readLine(100), line);
      strictEqual(await r.readLine(100), null);
      strictEqual(await r.readLine(100), null);
    });
  }
  await t.step("the empty input is a clean end", async () => {
    strictEqual(await reader().readLine(100), null);
  });
  await t.step("a UTF-8 character split across chunks", async () => {
    const bytes = encoder.encode("é\n");
    strictEqual(await reader(bytes.subarray(0, 1), bytes.subarray(1)).readLine(100), "é");
  });
  await t.step("bytes that are not UTF-8 become U+FFFD (which the tokenizer refuses)", async () => {
    strictEqual(await reader(new Uint8Array([0x61, 0xff, 0x62, 0x0a])).readLine(100), "a\ufffdb");
  });
});

Deno.test("FramedReader.readLine() refuses a line over max and a line cut short", async (t) => {
  await t.step("positive control: a line of exactly max bytes", async () => {
    strictEqual(await reader(`${"x".repeat(64)}\n`).readLine(64), "x".repeat(64));
  });
  await t.step("refuses a line of max + 1 bytes", async () => {
    await rejects(() => reader(`${"x".repeat(65)}\n`).readLine(64), {
      name: "RangeError",
      message: "Cannot read frame header: line too long",
    });
  });
  await t.step("max counts bytes, not characters", async () => {
    strictEqual(await reader("éé\n").readLine(4), "éé");
    await rejects(() => reader("ééé\n").readLine(5), RangeError);
  });
  await t.step("refuses a line without LF over max before reading the rest", async () => {
    const source = new ChunkSource(repeated(0x61, 1000, 1_000_000));
    await rejects(() => new FramedReader(source).readLine(4096), {
      name: "RangeError",
      message: "Cannot read frame header: line too long",
    });
    ok(source.bytes <= 4096 + 65536, `read ${source.bytes} bytes`);
  });
  await t.step("refuses an input that ends inside a line", async () => {
    await rejects(() => reader("MSG -oi").readLine(100), {
      name: "RangeError",
      message: "Cannot read frame header: input ended inside a line",
    });
  });
  await t.step("refuses an input that ends inside its second line", async () => {
    const r = reader("a\nb");
    strictEqual(await r.readLine(100), "a");
    await rejects(() => r.readLine(100), RangeError);
  });
});

/** [name, chunks, max, results] */
const RAW_LINES: [string, (string | Uint8Array)[], number, (string | null | "too-long")[]][] = [
  ["lines with their CR kept", ["a\r\nb\n"], 100, ["a\r", "b", null]],
  ["the rest without LF at the end", ["a\nbc"], 100, ["a", "bc", null]],
  ["a line of exactly max", ["abcd\nx\n"], 4, ["abcd", "x", null]],
  ["a line of max + 1, then the next line", ["abcde\nx\n"], 4, ["too-long", "x", null]],
  ["a long line across chunks is skipped through its LF", ["abc", "defgh", "ijk\nx", "y\n"], 4, [
    "too-long",
    "xy",
    null,
  ]],
  ["a long line that never ends", ["abcdefgh", "ijk"], 4, ["too-long", null]],
  ["an empty line", ["\n"], 0, ["", null]],
];

Deno.test("FramedReader.readRawLine() reads bytes and skips over long lines", async (t) => {
  for (const [name, chunks, max, results] of RAW_LINES) {
    await t.step(name, async () => {
      const r = reader(...chunks);
      for (const expected of results) {
        const got = await r.readRawLine(max);
        deepStrictEqual(
          typeof got === "string" || got === null ? got : decoder.decode(got),
          expected,
        );
      }
    });
  }
  await t.step("a 64 MB line is skipped without holding it", async () => {
    const r = new FramedReader(new ChunkSource([...repeated(0x61, 65536, 1024), "\nnext\n"]));
    strictEqual(await r.readRawLine(1000), "too-long");
    deepStrictEqual(await r.readRawLine(1000), encoder.encode("next"));
  });
});

Deno.test("FramedReader.limited() yields exactly n bytes, then the lines go on", async (t) => {
  await t.step("a frame: header, body, next header", async () => {
    const r = reader("MSG a\nHELLO", "WORLDMSG b\n", "END\n");
    strictEqual(await r.readLine(100), "MSG a");
    const body = r.limited(10);
    strictEqual(body.left, 10);
    deepStrictEqual(await readAll(body, 3), encoder.encode("HELLOWORLD"));
    strictEqual(body.left, 0);
    strictEqual(await body.read(new Uint8Array(8)), null);
    strictEqual(await r.readLine(100), "MSG b");
    strictEqual(await r.readLine(100), "END");
    strictEqual(await r.readLine(100), null);
  });
  await t.step("left counts down with each read", async () => {
    const body = reader("abcdef").limited(5);
    strictEqual(await body.read(new Uint8Array(2)), 2);
    strictEqual(body.left, 3);
    strictEqual(await body.read(new Uint8Array(2)), 2);
    strictEqual(body.left, 1);
    strictEqual(await body.read(new Uint8Array(2)), 1);
    strictEqual(body.left, 0);
  });
  await t.step(
    "an input shorter than n: what there is, then null, left > 0 (cut short)",
    async () => {
      const body = reader("abc").limited(10);
      deepStrictEqual(await readAll(body), encoder.encode("abc"));
      strictEqual(body.left, 7);
    },
  );
  await t.step("limited(0) reads nothing, not even from the source", async () => {
    const source = new ChunkSource(["abc\n"]);
    const r = new FramedReader(source);
    strictEqual(await r.limited(0).read(new Uint8Array(8)), null);
    strictEqual(source.reads, 0);
    strictEqual(await r.readLine(100), "abc");
  });
  await t.step("a body holding LFs and a fake frame header is data", async () => {
    const r = reader("MSG a\nline\nMSG b\nEND\nMSG c\n");
    strictEqual(await r.readLine(100), "MSG a");
    deepStrictEqual(decoder.decode(await readAll(r.limited(15))), "line\nMSG b\nEND\n");
    strictEqual(await r.readLine(100), "MSG c");
  });
  await t.step("binary bodies pass unchanged", async () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const r = reader(bytes, "\n");
    deepStrictEqual(await readAll(r.limited(256), 64), bytes);
    strictEqual(await r.readLine(10), "");
  });
});

Deno.test("drain() drops what is left of a body, and the next frame follows", async (t) => {
  await t.step("the rest of a body read halfway", async () => {
    const r = reader("MSG a\n", "0123456789", "MSG b\n");
    strictEqual(await r.readLine(100), "MSG a");
    const body = r.limited(10);
    strictEqual(await body.read(new Uint8Array(4)), 4);
    await drain(body);
    strictEqual(body.left, 0);
    strictEqual(await r.readLine(100), "MSG b");
  });
  await t.step("a body of 1 MB across chunks", async () => {
    const r = new FramedReader(new ChunkSource([...repeated(0x62, 1000, 1024), "END\n"]));
    const body = r.limited(1_024_000);
    await drain(body);
    strictEqual(body.left, 0);
    strictEqual(await r.readLine(10), "END");
  });
  await t.step("a plain source to its end", async () => {
    const source = new ChunkSource(["abc", "def"]);
    await drain(source);
    strictEqual(await source.read(new Uint8Array(1)), null);
    strictEqual(source.bytes, 6);
  });
});

Deno.test("FramedReader reads back any frames however the input is chunked (property)", async () => {
  const frame = fc.tuple(
    fc.string({ unit: "grapheme", maxLength: 40 }).filter((h) => !h.includes("\n")),
    fc.uint8Array({ maxLength: 300 }),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(frame, { maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
      async (frames, sizes) => {
        const parts: number[] = [];
        for (const [header, body] of frames) parts.push(...encoder.encode(`${header}\n`), ...body);
        const all = new Uint8Array(parts);
        const chunks: Uint8Array[] = [];
        let at = 0;
        for (let i = 0; at < all.length; i++) {
          const size = sizes[i % sizes.length]!;
          chunks.push(all.subarray(at, at + size));
          at += size;
        }
        const r = new FramedReader(new ChunkSource(chunks));
        for (const [header, body] of frames) {
          strictEqual(await r.readLine(1000), header);
          const limited = r.limited(body.length);
          deepStrictEqual(await readAll(limited, sizes[0]!), body);
          strictEqual(limited.left, 0);
        }
        strictEqual(await r.readLine(1000), null);
      },
    ),
    { seed: 0xf4a3, numRuns: 500 },
  );
});
