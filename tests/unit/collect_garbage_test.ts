import assert from "node:assert/strict";
import { collectGarbage, exposeGc } from "../../lib/shared/collect_garbage_io.ts";

const g = globalThis as { gc?: unknown };

Deno.test("collectGarbage: calls V8's gc when it is exposed", () => {
  let calls = 0;
  g.gc = () => calls++;
  try {
    assert.equal(collectGarbage(), true);
    assert.equal(calls, 1);
  } finally {
    delete g.gc;
  }
});

Deno.test("collectGarbage: does nothing without --expose-gc (and with a gc that is no function)", () => {
  assert.equal(collectGarbage(), false);
  g.gc = 1;
  try {
    assert.equal(collectGarbage(), false);
  } finally {
    delete g.gc;
  }
});

// Last: once found, gc stays found for this process.
Deno.test("exposeGc: finds V8's gc at run time (node:v8, then a node:vm context); collectGarbage then collects", async () => {
  assert.equal(collectGarbage(), false);
  assert.equal(await exposeGc(), true);
  assert.equal(collectGarbage(), true);
  assert.equal(await exposeGc(), true, "a second call finds it again");
});
