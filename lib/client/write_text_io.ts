/**
 * Writing text to stdout or stderr, whole.
 *
 * @module
 */

/** Writes all of `text` (a write may take part of it). */
export async function writeText(
  stream: { write(p: Uint8Array): Promise<number> },
  text: string,
): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  for (let done = 0; done < bytes.length;) done += await stream.write(bytes.subarray(done));
}
