/**
 * `--min-rate` (the relay's defence against a peer that trickles a message
 * to hold a session and a sendmail slot: slowloris): after the first
 * minute, a message whose average rate falls under the minimum is cut with
 * 4.4.2. The spool reads a clock of the test's, which each read moves on,
 * so a minute passes in a millisecond. No permission is needed: every
 * message here fits in the in-memory spool.
 */
import assert from "node:assert/strict";
import { TempError } from "../../lib/shared/errors.ts";
import { type ByteReader, spoolMessage } from "../../lib/shared/spool_io.ts";

const OPTIONS = { dir: "/nonexistent", maxSize: 10_000_000, idleTimeoutMs: 5000, inMemory: true };

/**
 * A peer sending `bytes` bytes in reads of `perRead`, one read every
 * `everyMs` of the fake clock.
 */
function trickle(bytes: number, perRead: number, everyMs: number) {
  let now = 1_000_000;
  let sent = 0;
  const reader: ByteReader = {
    read(p) {
      if (sent >= bytes) return Promise.resolve(null);
      now += everyMs;
      const n = Math.min(p.length, perRead, bytes - sent);
      p.fill(0x61, 0, n);
      sent += n;
      return Promise.resolve(n);
    },
  };
  return { reader, clock: () => now, sent: () => sent };
}

const tooSlow = (err: unknown) =>
  err instanceof TempError && err.status === "4.4.2" &&
  err.message === "message arriving too slowly";

Deno.test("slowloris: 100 bytes a second under --min-rate 256 is cut once the first minute is over (4.4.2), not before", async () => {
  const peer = trickle(20_000, 100, 1000);
  await assert.rejects(
    spoolMessage(peer.reader, { ...OPTIONS, minRate: 256, clock: peer.clock }),
    tooSlow,
  );
  // Cut at the first read past 60 s: 61 reads of 100 bytes.
  assert.equal(peer.sent(), 6100);
});

Deno.test("slowloris (control): 300 bytes a second under --min-rate 256 is spooled whole", async () => {
  const peer = trickle(20_000, 300, 1000);
  const spool = await spoolMessage(peer.reader, { ...OPTIONS, minRate: 256, clock: peer.clock });
  assert.equal(spool.size, 20_000);
});

Deno.test("slowloris (control): a slow message that ends within the first minute is not cut (the grace)", async () => {
  const peer = trickle(5_000, 100, 1000); // 50 s at 100 bytes a second
  const spool = await spoolMessage(peer.reader, { ...OPTIONS, minRate: 256, clock: peer.clock });
  assert.equal(spool.size, 5_000);
});

Deno.test("slowloris (control): without --min-rate (0) the same trickle is spooled whole", async () => {
  const peer = trickle(20_000, 100, 1000);
  const spool = await spoolMessage(peer.reader, { ...OPTIONS, minRate: 0, clock: peer.clock });
  assert.equal(spool.size, 20_000);
});

Deno.test("slowloris: a burst after a silent minute does not hide the average (one read of 100 bytes at 61 s)", async () => {
  let now = 0;
  let reads = 0;
  const reader: ByteReader = {
    read(p) {
      if (reads++ > 0) return Promise.resolve(null);
      now += 61_000;
      p.fill(0x61, 0, 100);
      return Promise.resolve(100);
    },
  };
  await assert.rejects(
    spoolMessage(reader, { ...OPTIONS, minRate: 256, clock: () => now }),
    tooSlow,
  );
});
