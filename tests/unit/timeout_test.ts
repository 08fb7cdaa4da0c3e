import assert from "node:assert/strict";
import { fired, startTimeout } from "../../lib/shared/timeout_io.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (const cold of [true, false]) {
  const kind = cold ? "cold" : "warm";

  Deno.test(`startTimeout (${kind}): the signal aborts after its time and fired() resolves`, async () => {
    const timeout = startTimeout(20, cold);
    assert.equal(timeout.signal.aborted, false);
    await fired(timeout);
    assert.equal(timeout.signal.aborted, true);
    await fired(timeout); // already fired: resolves at once
  });

  Deno.test(`startTimeout (${kind}): after clear() the signal never aborts`, async () => {
    const timeout = startTimeout(10, cold);
    let heard = false;
    timeout.signal.addEventListener("abort", () => heard = true);
    timeout.clear();
    // The cold timer itself runs on (it cannot be cleared) but goes unheard.
    await sleep(40);
    assert.equal(timeout.signal.aborted, false);
    assert.equal(heard, false);
  });
}

Deno.test("startTimeout (warm): clear() stops the timer, so nothing keeps the test's event loop (Deno's sanitizer would fail it)", () => {
  startTimeout(60_000, false).clear();
});
