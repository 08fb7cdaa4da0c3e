import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { OrderedPool } from "../../lib/relay/ordered_pool.ts";

/** A task the test finishes by hand. */
function gate<T>(value: T) {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => open = resolve);
  return { task: async () => (await opened, value), open };
}

const turns = async (n = 10) => {
  for (let i = 0; i < n; i++) await Promise.resolve();
};

Deno.test("OrderedPool hands results to the sink in submission order, whatever order tasks end in", async () => {
  const seen: string[] = [];
  const pool = new OrderedPool<string>(3, (v) => (seen.push(v), Promise.resolve()));
  const [a, b, c] = [gate("a"), gate("b"), gate("c")];
  await pool.submit(a.task);
  await pool.submit(b.task);
  await pool.submit(c.task);
  c.open();
  b.open();
  await turns();
  deepStrictEqual(seen, []);
  a.open();
  await pool.drain();
  deepStrictEqual(seen, ["a", "b", "c"]);
});

Deno.test("OrderedPool runs at most `limit` tasks at once", async () => {
  const pool = new OrderedPool<number>(2, () => Promise.resolve());
  let peak = 0;
  const gates = Array.from({ length: 6 }, (_, i) => gate(i));
  const submitting = (async () => {
    for (const g of gates) {
      await pool.submit(g.task);
      peak = Math.max(peak, pool.running);
    }
  })();
  for (const g of gates) {
    await turns();
    ok(pool.running <= 2, `running ${pool.running}`);
    g.open();
  }
  await submitting;
  await pool.drain();
  strictEqual(peak, 2);
  strictEqual(pool.running, 0);
});

Deno.test("OrderedPool with limit 1 runs one task after another (the serial control)", async () => {
  const log: string[] = [];
  const pool = new OrderedPool<number>(1, (n) => (log.push(`sink ${n}`), Promise.resolve()));
  for (const n of [1, 2, 3]) {
    await pool.submit(async () => {
      log.push(`start ${n}`);
      await turns(3);
      log.push(`end ${n}`);
      return n;
    });
  }
  await pool.drain();
  deepStrictEqual(log, [
    "start 1",
    "end 1",
    "sink 1",
    "start 2",
    "end 2",
    "sink 2",
    "start 3",
    "end 3",
    "sink 3",
  ]);
});

Deno.test("OrderedPool stops taking tasks while the sink stalls (a peer that reads no replies)", async () => {
  let release!: () => void;
  const stalled = new Promise<void>((resolve) => release = resolve);
  const pool = new OrderedPool<number>(2, () => stalled);
  let submitted = 0;
  const submitting = (async () => {
    for (let i = 0; i < 10; i++) {
      await pool.submit(() => Promise.resolve(i));
      submitted++;
    }
  })();
  await turns(50);
  strictEqual(submitted, 3); // 2·limit − 1 results wait for the sink
  release();
  await submitting;
  await pool.drain();
  strictEqual(submitted, 10);
});

Deno.test("OrderedPool.drain() throws the sink's first error and drops later results", async () => {
  const seen: number[] = [];
  const pool = new OrderedPool<number>(2, (n) => {
    if (n === 2) return Promise.reject(new Error("stdout closed"));
    seen.push(n);
    return Promise.resolve();
  });
  for (const n of [1, 2, 3]) await pool.submit(() => Promise.resolve(n));
  await rejects(pool.drain(), /stdout closed/);
  deepStrictEqual(seen, [1]);
});

Deno.test("OrderedPool refuses a limit below 1", () => {
  throws(() => new OrderedPool(0, () => Promise.resolve()), RangeError);
  throws(() => new OrderedPool(1.5, () => Promise.resolve()), RangeError);
});
