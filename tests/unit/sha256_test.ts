import { strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { Sha256 } from "../../lib/shared/sha256.ts";

const text = new TextEncoder();

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function reference(data: Uint8Array): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
}

/** [name, input, digest]: FIPS 180-4 / NIST CAVP vectors. */
const VECTORS: [string, Uint8Array, string][] = [
  [
    "the empty string",
    text.encode(""),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  ],
  ['"abc"', text.encode("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
  [
    "the 448-bit vector",
    text.encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  ],
  [
    "the 896-bit vector",
    text.encode(
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
    ),
    "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
  ],
  [
    'a million "a"',
    new Uint8Array(1_000_000).fill(0x61),
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
  ],
];

Deno.test("Sha256 matches the FIPS 180-4 vectors", async (t) => {
  for (const [name, input, digest] of VECTORS) {
    await t.step(name, () => strictEqual(new Sha256().update(input).hex(), digest));
  }
});

Deno.test("Sha256 matches Web Crypto at every padding boundary", async (t) => {
  for (const length of [1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129]) {
    await t.step(`${length} bytes`, async () => {
      const data = Uint8Array.from({ length }, (_, i) => (i * 31 + 7) & 0xff);
      strictEqual(new Sha256().update(data).hex(), await reference(data));
    });
  }
});

Deno.test('Sha256 gives the same digest for a million "a" fed in odd chunks', () => {
  const hash = new Sha256();
  const chunk = new Uint8Array(997).fill(0x61);
  let left = 1_000_000;
  while (left > 0) {
    const n = Math.min(left, chunk.length);
    hash.update(chunk.subarray(0, n));
    left -= n;
  }
  strictEqual(hash.hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
});

Deno.test("Sha256 does not depend on how the input is chunked (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 600 }),
      fc.array(fc.nat({ max: 200 }), { maxLength: 12 }),
      async (data, cuts) => {
        const hash = new Sha256();
        let at = 0;
        for (const cut of cuts) {
          const end = Math.min(data.length, at + cut);
          hash.update(data.subarray(at, end));
          at = end;
        }
        hash.update(data.subarray(at));
        strictEqual(hash.hex(), await reference(data));
      },
    ),
    { seed: 0x5a256, numRuns: 1000 },
  );
});
