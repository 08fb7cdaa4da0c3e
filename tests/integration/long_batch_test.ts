/**
 * A long batch through the BUILT dist/rsendmail, under its own first line's
 * flags and permissions: past its 200th frame the relay loads Deno's Node
 * layer to find V8's gc (lib/shared/collect_garbage_io.ts) and collects
 * every 100 frames. Every frame must still be answered, in order, each
 * message handed to sendmail whole, and nothing said on stderr.
 *
 * Frames are built here by hand (the tier imports no product module).
 *
 * @module
 */

import assert from "node:assert/strict";
import { assertOutcome, Bed, type Case } from "./_harness.ts";

const FRAMES = 320;

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test(`relay: a batch of ${FRAMES} frames is answered in full, in order, silently (gc found mid-batch)`, async () => {
  const bodies = Array.from({ length: FRAMES }, (_, i) => `Subject: frame ${i}\n\nbody ${i}\n`);
  const ids = bodies.map((_, i) => `mlongbatch${String(i).padStart(6, "0")}`);
  let stdin = "";
  for (const [i, body] of bodies.entries()) {
    const size = new TextEncoder().encode(body).length;
    stdin += `MSG -oi --size=${size} --sha256=${await sha256Hex(body)} --id=${ids[i]} -- ` +
      `b@example.org\n${body}`;
  }
  stdin += "END\n";
  const row: Case = {
    request: "sendmail --batch",
    // One sendmail at a time: the recording fake numbers its calls by what it finds.
    relay: ["--label", "long", "--parallel", "1"],
    stdin,
    exitCode: 0,
    stdout: ids.map((id) => `${id} 0 2.0.0 delivered, label long\n`).join(""),
    stderr: "",
    sendmail: bodies.map((body) => ({ stdin: body })),
  };
  const bed = await Bed.open();
  try {
    const { c, outcome } = await bed.run(row);
    assert.equal(outcome.sendmail.length, FRAMES);
    assertOutcome(c, outcome);
  } finally {
    await bed.close();
  }
});
