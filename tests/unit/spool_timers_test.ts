/**
 * The spool's idle timer in a process that ends after its message
 * (`shortLived`: the relay's one message, a client's direct send, the
 * nullmailer module): AbortSignal.timeout only, never setTimeout, whose
 * first call costs a fresh Deno process milliseconds (docs/benchmarks.md,
 * section 1's start-up probes). The idle timeout still fires.
 */
import { rejects, strictEqual } from "node:assert/strict";
import { type ByteReader, spoolMessage } from "../../lib/shared/spool_io.ts";

const OPTIONS = { dir: "/nonexistent", maxSize: 1_000_000, inMemory: true as const };

/** A reader that gives `data` once, then never answers (a writer gone silent). */
function stalls(data: Uint8Array): ByteReader {
  let given = false;
  return {
    read(p) {
      if (given) return new Promise(() => {});
      given = true;
      p.set(data);
      return Promise.resolve(data.length);
    },
  };
}

/** Runs `fn` with setTimeout counted; returns how many times it was called. */
async function countingSetTimeout(fn: () => Promise<unknown>): Promise<number> {
  const real = globalThis.setTimeout;
  let calls = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof real>) => {
    calls++;
    return real(...args);
  }) as typeof real;
  try {
    await fn();
  } finally {
    globalThis.setTimeout = real;
  }
  return calls;
}

for (const shortLived of [true, false]) {
  Deno.test(`spool timers: shortLived ${shortLived}: ${shortLived ? "no" : "a"} setTimeout, and a silent writer still times out`, async () => {
    const calls = await countingSetTimeout(() =>
      rejects(
        spoolMessage(stalls(new TextEncoder().encode("Subject: x\n")), {
          ...OPTIONS,
          idleTimeoutMs: 50,
          shortLived,
        }),
        /timed out waiting for the message/,
      )
    );
    // The control (a long-lived process clears a timer per read) shows the count sees them.
    strictEqual(calls === 0, shortLived, `${calls} setTimeout call(s)`);
  });
}
