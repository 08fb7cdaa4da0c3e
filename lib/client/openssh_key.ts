/**
 * OpenSSH key formats, pure: an Ed25519 key pair (from Web Crypto) written
 * as an unencrypted `openssh-key-v1` private key and an authorized_keys
 * public key line, and SHA-256 fingerprints as ssh-keygen prints them. Lets
 * `sshsendmail setup` make its key without running ssh-keygen.
 *
 * @module
 */

const encoder = new TextEncoder();

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** SSH wire `string`: a uint32 length and the bytes. */
function sshString(data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return concat([u32(bytes.length), bytes]);
}

function base64(data: Uint8Array): string {
  let s = "";
  for (const b of data) s += String.fromCharCode(b);
  return btoa(s);
}

/** The public key blob of an Ed25519 key. */
export function ed25519Blob(publicKey: Uint8Array): Uint8Array {
  return concat([sshString("ssh-ed25519"), sshString(publicKey)]);
}

/** `ssh-ed25519 AAAA… comment`. */
export function publicKeyLine(publicKey: Uint8Array, comment: string): string {
  return `ssh-ed25519 ${base64(ed25519Blob(publicKey))} ${comment}`;
}

/**
 * The unencrypted openssh-key-v1 private key file for an Ed25519 key.
 *
 * @param seed the 32-byte private seed (the tail of the PKCS#8 export).
 * @param publicKey the 32-byte public key.
 * @param check a random 32-bit check value.
 */
export function privateKeyFile(
  seed: Uint8Array,
  publicKey: Uint8Array,
  comment: string,
  check: number,
): string {
  const blob = ed25519Blob(publicKey);
  const body = [
    u32(check),
    u32(check),
    sshString("ssh-ed25519"),
    sshString(publicKey),
    sshString(concat([seed, publicKey])),
    sshString(comment),
  ];
  const unpadded = concat(body);
  const pad = new Uint8Array((8 - (unpadded.length % 8)) % 8).map((_, i) => i + 1);
  const key = concat([
    encoder.encode("openssh-key-v1\0"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    u32(1),
    sshString(blob),
    sshString(concat([unpadded, pad])),
  ]);
  const lines = base64(key).match(/.{1,70}/g) ?? [];
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${
    lines.join("\n")
  }\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/** The private seed inside an Ed25519 PKCS#8 export (RFC 8410: its last 32 bytes). */
export function seedFromPkcs8(pkcs8: Uint8Array): Uint8Array {
  if (pkcs8.length !== 48) throw new RangeError("Cannot read Ed25519 PKCS#8: unexpected length");
  return pkcs8.subarray(16);
}

/** Decodes the base64 key field of a known_hosts or authorized_keys line. */
export function blobOf(line: string): Uint8Array | undefined {
  const field = line.trim().split(/\s+/).find((f) => /^AAAA[A-Za-z0-9+/]+=*$/.test(f));
  if (!field) return undefined;
  const raw = atob(field);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

/** `SHA256:…` as ssh-keygen -l prints it, from the SHA-256 of the blob. */
export function fingerprint(digest: Uint8Array): string {
  return `SHA256:${base64(digest).replace(/=+$/, "")}`;
}
