/**
 * Section 3 of `deno task bench`, the batch: N queued messages through one
 * relay batch session, driven the way the satellite service drives it
 * (tests/e2e/_service.ts). Issue 15's case, "N queued messages, one
 * `--flush`": the bench writes N drops (as a submitter writes them) while
 * the relay is away (the config names none), so the service queues and
 * defers each; then the relay is configured again, the service restarted,
 * and one `sendmail -q` asks it to run the queue, which it streams over one
 * `rsendmail --batch` session. The relay's key is forced to
 * `rsendmail --label L` (default), or to `rsendmail --parallel P --label L`
 * for P = 1, 2, 4; a relay that does not know `--parallel` refuses the
 * option, which is detected first and shown as n/a. One more row keeps the
 * earlier measure: the drops written while the service is stopped, then
 * the service started, so that it takes them in while it delivers.
 * "Accepted" is the relay's duplicate record of each id
 * (`<state-dir>/rsendmail-<uid>/<label>/<id>`, written once its sendmail
 * exited), timed by each record's mtime: nothing watches the record while
 * the chain runs (bench_spool.ts's RecordTimes); the bench waits for
 * `sendmail -q` to end, and lists the record then (the intake row lists it
 * a few times a second meanwhile). The floor is the relay's
 * sendmail run N times one after another. Every round runs the floor and
 * each variant once, round-robin; medians over the rounds.
 *
 * @module
 */

import {
  type Account,
  account,
  names,
  type ServiceBed,
  startServiceBed,
} from "../tests/e2e/_service.ts";
import { waitFor } from "../tests/e2e/_bed.ts";
import {
  baseEnv,
  BENCH_USER,
  DIST_RSENDMAIL,
  done,
  makeMessage,
  type Options,
  progress,
  type SectionResult,
  SENDER,
  tagOf,
} from "./bench_common.ts";
import { directSendmail, postfixIdle, type Sample, timeOnce } from "./bench_run.ts";
import { busyShare, chainCpu, cpuPerMessage, cpuTicks, processCpuMs } from "./bench_batch_cpu.ts";
import { batchReport, PARALLEL, type Pass, type Run } from "./bench_batch_report.ts";
import { RecordTimes, writeDrop } from "./bench_spool.ts";

/** How a variant's messages reach the queue before the relay gets them. */
type Mode = "flush" | "intake";

/**
 * The relay away: the service's config without its `host` line, so that
 * the service queues what it takes in and defers it ("no relay configured").
 */
async function relayAway(bed: ServiceBed): Promise<void> {
  const text = await Deno.readTextFile(bed.conf);
  await Deno.writeTextFile(
    bed.conf,
    text.split("\n").filter((line) => !line.startsWith("host =")).join("\n"),
  );
}

/**
 * Whether dist/rsendmail knows `--parallel`: an unknown admin option ends
 * the admin options, and a forced command with words left over is refused
 * as a configuration error before the request is read. The same request
 * (no recipients: refused as usage) with and without the option must end
 * alike.
 */
export async function relayHasParallel(): Promise<boolean> {
  const probe = async (args: string[]) =>
    (await timeOnce({
      cmd: DIST_RSENDMAIL,
      args,
      env: baseEnv({ SSH_ORIGINAL_COMMAND: `sendmail -f ${SENDER}` }),
      stdin: new Uint8Array(),
    })).code;
  return (await probe(["--parallel", "2"])) === (await probe([]));
}

export async function benchBatch(
  o: Options,
  runId: string,
  rcpt: string,
): Promise<SectionResult> {
  const n = o.batchN;
  const parallel = await relayHasParallel();
  const label = (v: string) => `bench-${runId}-batch-${v}`;
  const variants: { id: string; admin: string; mode: Mode }[] = [
    { id: "default", admin: "", mode: "flush" },
    ...(parallel
      ? PARALLEL.map((p) => ({ id: `p${p}`, admin: `--parallel ${p} `, mode: "flush" as const }))
      : []),
    { id: "intake", admin: "", mode: "intake" },
  ];
  const bed = await startServiceBed({
    keyOptions: `restrict,command="${DIST_RSENDMAIL} --label ${label("default")}"`,
    deferStart: true,
  });
  const sender: Account = await account(BENCH_USER);
  const keys = new Map<string, string>([["default", bed.key]]);
  const watches = new Map<string, RecordTimes>();
  const runs = new Map<string, Run[]>(variants.map((v) => [v.id, []]));
  const floor: Pass[] = [];
  /** The machine's ceiling: the same sendmail runs, P at once, nothing else (P = 2, 4). */
  const ceiling = new Map<number, Pass[]>(
    PARALLEL.filter((p) => p > 1).map((p) => [p, []]),
  );
  /** A `sendmail -q` that did not end in 0 (the flush rows). */
  const flushFailures: string[] = [];
  /** Drops that could not be written, per variant over the rounds. */
  const unwritten = new Map<string, number>(variants.map((v) => [v.id, 0]));
  try {
    for (const v of variants) {
      if (v.id !== "default") {
        keys.set(
          v.id,
          await bed.relay.addKey(
            `restrict,command="${DIST_RSENDMAIL} ${v.admin}--label ${label(v.id)}"`,
            bed.service.name,
          ),
        );
      }
      watches.set(v.id, await RecordTimes.record(bed.relay, label(v.id)));
    }
    const msg = (id: string, i: number) => makeMessage(1024, tagOf(runId, "batch", id, i), rcpt);
    for (let r = 0; r < o.batchRounds; r++) {
      await progress(`batch: round ${r + 1}/${o.batchRounds}, serial sendmail floor`);
      const samples: Sample[] = [];
      await postfixIdle();
      const c0 = await cpuTicks();
      const f0 = performance.now();
      for (let i = 0; i < n; i++) {
        samples.push(
          await timeOnce(directSendmail(rcpt, msg("floor", r * n + i))),
        );
      }
      floor.push({ wall: performance.now() - f0, samples, busy: busyShare(c0, await cpuTicks()) });
      for (const [p, runs] of ceiling) {
        await progress(`batch: round ${r + 1}/${o.batchRounds}, sendmail ${p} at once`);
        const samples: Sample[] = [];
        let next = 0;
        await postfixIdle();
        const c0 = await cpuTicks();
        const f0 = performance.now();
        await Promise.all(Array.from({ length: p }, async () => {
          for (let i = next++; i < n; i = next++) {
            samples.push(
              await timeOnce(directSendmail(rcpt, msg(`ceiling${p}`, r * n + i))),
            );
          }
        }));
        runs.push({ wall: performance.now() - f0, samples, busy: busyShare(c0, await cpuTicks()) });
      }
      for (const v of variants) {
        await progress(`batch: round ${r + 1}/${o.batchRounds}, ${v.id}`);
        const watch = watches.get(v.id)!;
        if (v.mode === "flush") await relayAway(bed);
        else await bed.writeConfig([`identity = ${keys.get(v.id)}`]);
        let failed = 0;
        for (let i = 0; i < n; i++) {
          await writeDrop(bed, sender, ["-oi", "--", rcpt], msg(v.id, r * n + i))
            .catch(() => failed++);
        }
        let flush: Promise<{ code: number; stderr: string }> | undefined;
        let service0 = 0;
        if (v.mode === "flush") {
          // Queued and deferred while the relay is away; then the relay is
          // back, the service starts again (reading its queue) and one
          // `sendmail -q` runs the queue.
          await bed.start();
          await waitFor(
            "every drop queued and deferred",
            async () =>
              (await names(`${bed.spool}/queue/state`)).filter((x) => !x.startsWith(".")).length >=
                n - failed,
            600_000,
          );
          await bed.stopService();
          await bed.writeConfig([`identity = ${keys.get(v.id)}`]);
          await bed.start();
          service0 = (await processCpuMs(bed.pid()!)) ?? 0;
        }
        const before = await watch.count();
        await postfixIdle();
        const c0 = await cpuTicks();
        const t0 = performance.now();
        if (v.mode === "flush") flush = bed.sendAs(sender, ["-q"]);
        else await bed.start();
        // `sendmail -q` ends once the service's run is over: the bench waits
        // for it and lists the record only then. (The intake row has nothing
        // to wait for: the bench lists the record a few times a second.)
        const flushed = await flush;
        await watch.until(before + n - failed, 600_000);
        const busy = busyShare(c0, await cpuTicks());
        const chain = await chainCpu(bed.pid()!, label(v.id));
        if (chain) chain.service -= service0;
        const at = await watch.times([before + 1, before + n - failed]);
        const [first, last] = [at[0]!, at[1]!];
        if (flushed && flushed.code !== 0) {
          flushFailures.push(
            `${v.id}: \`sendmail -q\` exited ${flushed.code}: ${flushed.stderr.split("\n")[0]}`,
          );
        }
        await bed.stopService();
        runs.get(v.id)!.push({
          wall: last - t0,
          rate: (n - failed - 1) / ((last - first) / 1000),
          accepted: n - failed,
          busy,
          cpuMs: cpuPerMessage(busy, last - t0, n - failed),
          chain,
        });
        unwritten.set(v.id, unwritten.get(v.id)! + failed);
      }
    }
    await done(`batch: ${o.batchRounds} rounds`);
  } finally {
    await bed.stop();
    for (const w of watches.values()) await w.close(true);
  }
  return batchReport(o, { parallel, variants, runs, floor, ceiling, unwritten, flushFailures });
}
