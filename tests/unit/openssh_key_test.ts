import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  blobOf,
  ed25519Blob,
  fingerprint,
  privateKeyFile,
  publicKeyLine,
  seedFromPkcs8,
} from "../../lib/client/openssh_key.ts";

/*
 * A fixed key pair, made once with OpenSSH's own tool:
 *   ssh-keygen -q -t ed25519 -N "" -C fixture@sat.example -f k
 *   ssh-keygen -l -f k.pub
 * The seed, public key and check value were read out of `k`. The key is a
 * test fixture only: it is authorised nowhere.
 */
const SEED_HEX = "6af41a90ddf9229f30bfcbe0da5eeb0afad9e9c37b4a871b4b2e4ffd2717254e";
const PUBLIC_HEX = "8714b49c62b8ca23eb4a2c703a5655fdc43ba9ce68e7ba9397c0ce50553f16f4";
const CHECK = 0xcc1255bd;
const COMMENT = "fixture@sat.example";
const PRIVATE_FILE = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCHFLScYrjKI+tKLHA6VlX9xDupzmjnupOXwM5QVT8W9AAAAJjMElW9zBJV
vQAAAAtzc2gtZWQyNTUxOQAAACCHFLScYrjKI+tKLHA6VlX9xDupzmjnupOXwM5QVT8W9A
AAAEBq9BqQ3fkinzC/y+DaXusK+tnpw3tKhxtLLk/9JxclTocUtJxiuMoj60oscDpWVf3E
O6nOaOe6k5fAzlBVPxb0AAAAE2ZpeHR1cmVAc2F0LmV4YW1wbGUBAg==
-----END OPENSSH PRIVATE KEY-----
`;
const PUBLIC_LINE =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIcUtJxiuMoj60oscDpWVf3EO6nOaOe6k5fAzlBVPxb0 fixture@sat.example";
const FINGERPRINT = "SHA256:Inq+lFBdQ47FiIZ3BSEDUTxihBaLBFJHE/ImjoPz68A";
const BLOB_BASE64 = "AAAAC3NzaC1lZDI1NTE5AAAAIIcUtJxiuMoj60oscDpWVf3EO6nOaOe6k5fAzlBVPxb0";

/** The DER prefix of an Ed25519 PKCS#8 private key (RFC 8410), before the 32-byte seed. */
const PKCS8_PREFIX = "302e020100300506032b657004220420";

function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(data)));
}

const SEED = fromHex(SEED_HEX);
const PUBLIC = fromHex(PUBLIC_HEX);

/** Reads an openssh-key-v1 file back, field by field (as sshkey.c does). */
function readPrivateKeyFile(text: string) {
  const lines = text.split("\n");
  strictEqual(lines[0], "-----BEGIN OPENSSH PRIVATE KEY-----");
  strictEqual(lines.at(-2), "-----END OPENSSH PRIVATE KEY-----");
  strictEqual(lines.at(-1), "");
  const body = lines.slice(1, -2);
  ok(body.every((l) => l.length > 0 && l.length <= 70), "base64 lines of at most 70");
  ok(body.slice(0, -1).every((l) => l.length === 70), "every line but the last is full");
  const bytes = fromBase64(body.join(""));
  const view = new DataView(bytes.buffer);
  let at = 0;
  const u32 = () => {
    const n = view.getUint32(at);
    at += 4;
    return n;
  };
  const str = () => {
    const n = u32();
    const s = bytes.subarray(at, at + n);
    at += n;
    return s;
  };
  const text8 = (b: Uint8Array) => new TextDecoder().decode(b);
  const magic = text8(bytes.subarray(0, 15));
  at = 15;
  const out = {
    magic,
    cipher: text8(str()),
    kdf: text8(str()),
    kdfOptions: str(),
    keys: u32(),
    blob: str(),
    private: str(),
  };
  strictEqual(at, bytes.length, "nothing after the private section");
  const priv = new DataView(out.private.buffer, out.private.byteOffset, out.private.length);
  let p = 0;
  const pu32 = () => {
    const n = priv.getUint32(p);
    p += 4;
    return n;
  };
  const pstr = () => {
    const n = pu32();
    const s = out.private.subarray(p, p + n);
    p += n;
    return s;
  };
  const section = {
    check1: pu32(),
    check2: pu32(),
    type: text8(pstr()),
    publicKey: pstr(),
    secret: pstr(),
    comment: text8(pstr()),
    padding: out.private.subarray(p),
  };
  return { ...out, section };
}

Deno.test("privateKeyFile() writes the fixture key byte for byte as ssh-keygen did", () => {
  strictEqual(privateKeyFile(SEED, PUBLIC, COMMENT, CHECK), PRIVATE_FILE);
});

Deno.test("publicKeyLine() writes the fixture's authorized_keys line as ssh-keygen did", () => {
  strictEqual(publicKeyLine(PUBLIC, COMMENT), PUBLIC_LINE);
});

Deno.test("ed25519Blob() is the SSH wire blob: string type, string key", () => {
  const blob = ed25519Blob(PUBLIC);
  strictEqual(blob.length, 4 + 11 + 4 + 32);
  deepStrictEqual(blob, fromBase64(BLOB_BASE64));
  deepStrictEqual(blob.subarray(0, 4), new Uint8Array([0, 0, 0, 11]));
  strictEqual(new TextDecoder().decode(blob.subarray(4, 15)), "ssh-ed25519");
  deepStrictEqual(blob.subarray(15, 19), new Uint8Array([0, 0, 0, 32]));
  deepStrictEqual(blob.subarray(19), PUBLIC);
});

Deno.test("fingerprint() of the blob's SHA-256 matches ssh-keygen -l", async () => {
  strictEqual(fingerprint(await sha256(ed25519Blob(PUBLIC))), FINGERPRINT);
  strictEqual(fingerprint(await sha256(blobOf(PUBLIC_LINE)!)), FINGERPRINT);
});

Deno.test("fingerprint() is SHA256: and unpadded base64 of the digest", async (t) => {
  await t.step("an all-zero digest", () => {
    strictEqual(fingerprint(new Uint8Array(32)), `SHA256:${"A".repeat(43)}`);
  });
  await t.step("an all-ones digest uses the standard alphabet (+ and /), not base64url", () => {
    strictEqual(fingerprint(new Uint8Array(32).fill(0xff)), `SHA256:${"/".repeat(42)}8`);
    strictEqual(fingerprint(new Uint8Array(32).fill(0xfb)), `SHA256:${"+/v7".repeat(10)}+/s`);
  });
  await t.step("no '=' padding left", () => {
    ok(!fingerprint(new Uint8Array(32).fill(7)).includes("="));
    strictEqual(fingerprint(new Uint8Array(32).fill(7)).length, 7 + 43);
  });
});

/** [name, line, the blob or undefined] */
const BLOB_OF: [string, string, Uint8Array | undefined][] = [
  ["an authorized_keys line", PUBLIC_LINE, fromBase64(BLOB_BASE64)],
  ["a line without a comment", `ssh-ed25519 ${BLOB_BASE64}`, fromBase64(BLOB_BASE64)],
  [
    "a known_hosts line",
    `relay.example,192.0.2.1 ssh-ed25519 ${BLOB_BASE64}`,
    fromBase64(BLOB_BASE64),
  ],
  [
    "a hashed known_hosts line",
    `|1|c2FsdA==|aGFzaA== ssh-ed25519 ${BLOB_BASE64}`,
    fromBase64(BLOB_BASE64),
  ],
  [
    "an authorized_keys line with options",
    `restrict,command="/usr/bin/rsendmail --allow-sender AAAAx" ssh-ed25519 ${BLOB_BASE64} c`,
    fromBase64(BLOB_BASE64),
  ],
  [
    "surrounding whitespace and tabs",
    `\t ssh-ed25519\t${BLOB_BASE64}  \n`,
    fromBase64(BLOB_BASE64),
  ],
  ["padded base64", "ssh-rsa AAAAAQ== x", new Uint8Array([0, 0, 0, 1])],
  ["no key field", "ssh-ed25519 notakey comment", undefined],
  ["a key field not starting AAAA", "ssh-ed25519 BBBBC3NzaC1l comment", undefined],
  ["base64url characters", "ssh-ed25519 AAAA-_ comment", undefined],
  ["the empty line", "", undefined],
  ["a comment line", "# ssh-ed25519", undefined],
];

Deno.test("blobOf() decodes the key field of a known_hosts or authorized_keys line", async (t) => {
  for (const [name, line, blob] of BLOB_OF) {
    await t.step(name, () => deepStrictEqual(blobOf(line), blob));
  }
});

Deno.test("seedFromPkcs8() takes the seed out of an Ed25519 PKCS#8 export", async (t) => {
  await t.step("the fixture's seed behind the RFC 8410 prefix", () => {
    const pkcs8 = fromHex(PKCS8_PREFIX + SEED_HEX);
    strictEqual(pkcs8.length, 48);
    deepStrictEqual(seedFromPkcs8(pkcs8), SEED);
  });
  for (const length of [0, 32, 47, 49, 83]) {
    await t.step(`refuses ${length} bytes`, () => {
      throws(() => seedFromPkcs8(new Uint8Array(length)), RangeError);
    });
  }
});

Deno.test("seedFromPkcs8() reads Web Crypto's export: the fixture's seed yields its public key", async () => {
  const key = await crypto.subtle.importKey(
    "pkcs8",
    fromHex(PKCS8_PREFIX + SEED_HEX),
    { name: "Ed25519" },
    true,
    ["sign"],
  );
  const jwk = await crypto.subtle.exportKey("jwk", key);
  deepStrictEqual(fromBase64(jwk.x!.replaceAll("-", "+").replaceAll("_", "/") + "="), PUBLIC);
  deepStrictEqual(seedFromPkcs8(new Uint8Array(await crypto.subtle.exportKey("pkcs8", key))), SEED);
});

Deno.test("privateKeyFile() of a fresh Web Crypto key pair signs like the pair (setup's path)", async () => {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const seed = seedFromPkcs8(
    new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey)),
  );
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const file = readPrivateKeyFile(privateKeyFile(seed, pub, "sshsendmail@sat", 1));
  deepStrictEqual(file.section.secret, new Uint8Array([...seed, ...pub]));
  // The seed the file holds, imported again, signs what the public key verifies.
  const again = await crypto.subtle.importKey(
    "pkcs8",
    new Uint8Array([...fromHex(PKCS8_PREFIX), ...file.section.secret.subarray(0, 32)]),
    { name: "Ed25519" },
    false,
    ["sign"],
  );
  const data = new TextEncoder().encode("rsendmail");
  const signature = await crypto.subtle.sign("Ed25519", again, data);
  ok(await crypto.subtle.verify("Ed25519", pair.publicKey, signature, data));
});

Deno.test("privateKeyFile() follows the openssh-key-v1 layout for any key, comment and check (property)", () => {
  const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
  fc.assert(
    fc.property(
      bytes32,
      bytes32,
      fc.string({ unit: "grapheme", maxLength: 20 }),
      fc.nat({ max: 0xffffffff }),
      (seed, pub, comment, check) => {
        const f = readPrivateKeyFile(privateKeyFile(seed, pub, comment, check));
        strictEqual(f.magic, "openssh-key-v1\0");
        strictEqual(f.cipher, "none");
        strictEqual(f.kdf, "none");
        strictEqual(f.kdfOptions.length, 0);
        strictEqual(f.keys, 1);
        deepStrictEqual(f.blob, ed25519Blob(pub));
        strictEqual(f.private.length % 8, 0);
        strictEqual(f.section.check1, check);
        strictEqual(f.section.check2, check);
        strictEqual(f.section.type, "ssh-ed25519");
        deepStrictEqual(f.section.publicKey, pub);
        deepStrictEqual(f.section.secret, new Uint8Array([...seed, ...pub]));
        strictEqual(f.section.comment, comment.toWellFormed());
        ok(f.section.padding.length < 8);
        deepStrictEqual(
          [...f.section.padding],
          Array.from({ length: f.section.padding.length }, (_, i) => i + 1),
        );
        strictEqual(
          publicKeyLine(pub, "c"),
          `ssh-ed25519 ${btoa(String.fromCharCode(...ed25519Blob(pub)))} c`,
        );
        deepStrictEqual(blobOf(publicKeyLine(pub, "c")), ed25519Blob(pub));
      },
    ),
    { seed: 0x55e, numRuns: 500 },
  );
});
